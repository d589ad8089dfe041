//! [`RedisStreamAck`]: `XACK` of one entry.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::source::{AckError, Acknowledge};

/// The acknowledgement handle of a [`RedisStreamSource`](super::RedisStreamSource) entry.
///
/// [`ack`](Acknowledge::ack) is `XACK`: the entry leaves the group's pending list for good.
/// [`nack`](Acknowledge::nack) (or a drop) does nothing: the entry stays pending, and once it
/// has been idle longer than [`claim_idle`](super::RedisStreamSourceBuilder::claim_idle), a
/// member of the group (this one or another) claims it with `XAUTOCLAIM` and delivers it again,
/// until it has been delivered [`max_deliveries`](super::RedisStreamSourceBuilder::max_deliveries)
/// times and goes to the dead-letter stream. Acks need no order.
pub struct RedisStreamAck {
    pub(crate) conn: ConnectionManager,
    pub(crate) stream: Arc<str>,
    pub(crate) group: Arc<str>,
    pub(crate) id: String,
    pub(crate) deliveries: u64,
}

impl RedisStreamAck {
    /// The entry's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many times the group has delivered the entry, this time included.
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }
}

impl std::fmt::Debug for RedisStreamAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamAck")
            .field("stream", &self.stream)
            .field("id", &self.id)
            .field("deliveries", &self.deliveries)
            .finish()
    }
}

impl Acknowledge for RedisStreamAck {
    /// One `XACK` round trip. On failure the entry stays pending and comes again after the
    /// claim idle time (the processor counts an ack error).
    async fn ack(mut self) -> Result<(), AckError> {
        let _: usize = self
            .conn
            .xack(&*self.stream, &*self.group, &[&self.id])
            .await
            .map_err(AckError::new)?;
        Ok(())
    }

    async fn nack(self) -> Result<(), AckError> {
        Ok(())
    }
}
