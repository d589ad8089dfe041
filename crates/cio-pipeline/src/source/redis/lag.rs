//! [`RedisStreamLag`]: the group's backlog, from `XINFO GROUPS`.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};
use redis::AsyncCommands;

use super::redis_error;
use crate::source::{LagProbe, SourceError};

/// Entries counted one by one when Redis cannot say how many are undelivered.
const COUNT_LIMIT: usize = 10_000;

/// The group's backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamBacklog {
    /// Entries no member of the group has read yet (`XINFO GROUPS` `lag`).
    pub undelivered: u64,
    /// Whether `undelivered` is exact. Redis loses track of the lag after some deletions
    /// (`XDEL`, trimming past unread entries); then the entries after the group's last
    /// delivered id are counted, up to 10,000.
    pub exact: bool,
    /// Entries delivered to a member and not acknowledged yet, dead members' included.
    pub pending: u64,
}

impl StreamBacklog {
    /// `undelivered + pending`: what is left to process.
    pub fn total(&self) -> u64 {
        self.undelivered + self.pending
    }
}

/// Reports the backlog of a [`RedisStreamSource`](super::RedisStreamSource)'s group: entries
/// not delivered yet plus entries delivered and not acknowledged (one `XINFO GROUPS` round trip,
/// on the connection the acks use). The group's figure, the same from every member: scale on
/// it once, not summed over replicas.
#[derive(Clone)]
pub struct RedisStreamLag {
    pub(crate) conn: ConnectionManager,
    pub(crate) stream: Arc<str>,
    pub(crate) group: Arc<str>,
}

impl std::fmt::Debug for RedisStreamLag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamLag")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .finish()
    }
}

impl RedisStreamLag {
    /// Undelivered and pending entries of the group.
    pub async fn backlog(&self) -> Result<StreamBacklog, SourceError> {
        let mut conn = self.conn.clone();
        let info: StreamInfoGroupsReply = conn
            .xinfo_groups(&*self.stream)
            .await
            .map_err(redis_error)?;
        let group = info
            .groups
            .into_iter()
            .find(|g| *g.name == *self.group)
            .ok_or_else(|| {
                SourceError::Config(format!(
                    "stream {} has no group {}",
                    self.stream, self.group
                ))
            })?;
        let (undelivered, exact) = match group.lag {
            Some(lag) => (lag as u64, true),
            None => {
                let after = format!("({}", group.last_delivered_id);
                let range: StreamRangeReply = conn
                    .xrange_count(&*self.stream, &after, "+", COUNT_LIMIT)
                    .await
                    .map_err(redis_error)?;
                (range.ids.len() as u64, false)
            }
        };
        Ok(StreamBacklog {
            undelivered,
            exact,
            pending: group.pending as u64,
        })
    }
}

impl LagProbe for RedisStreamLag {
    async fn lag(&self) -> Result<u64, SourceError> {
        Ok(self.backlog().await?.total())
    }
}
