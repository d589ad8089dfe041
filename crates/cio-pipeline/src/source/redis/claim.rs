//! Reclaiming entries left idle in the pending list, and moving poison entries to the
//! dead-letter stream.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamPendingCountReply,
};
use redis::{AsyncCommands, Value};

use super::{redis_error, Entry, RedisStreamSource};
use crate::source::SourceError;

/// Removes, in one atomic step on the server, the group's members other than `ARGV[3]` that
/// have nothing pending and have been idle longer than `ARGV[2]` ms; returns their names and
/// idle times. Atomic, so no member can read an entry between the check and the removal (a
/// removed member's pending entries could never be claimed again).
const PRUNE: &str = r#"
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[3] and tonumber(f['pending']) == 0
      and tonumber(f['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    table.insert(removed, f['name'])
    table.insert(removed, f['idle'])
  end
end
return removed
"#;

impl RedisStreamSource {
    /// After a sweep of the pending list: removes the members that are gone, idle past
    /// [`prune_idle`](super::RedisStreamSourceBuilder::prune_idle) with nothing pending (the
    /// sweep has claimed what they held once it was idle past `claim_idle`).
    pub(super) async fn prune(&mut self) -> Result<(), SourceError> {
        let Some(idle) = self.prune_idle else {
            return Ok(());
        };
        let removed: Vec<Value> = redis::Script::new(PRUNE)
            .key(&*self.stream)
            .arg(&*self.group)
            .arg(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX))
            .arg(&self.consumer)
            .invoke_async(&mut self.writer)
            .await
            .map_err(redis_error)?;
        for pair in removed.chunks(2) {
            let name = String::from_utf8_lossy(pair.first().map(field_bytes).unwrap_or_default());
            let idle_ms = match pair.get(1) {
                Some(Value::Int(ms)) => *ms,
                _ => 0,
            };
            self.stats.pruned.fetch_add(1, Ordering::Relaxed);
            tracing::info!(stream = %self.stream, group = %self.group, consumer = %name, idle_s = idle_ms / 1000,
                "removed a group member that is gone (idle, nothing pending)");
        }
        Ok(())
    }

    /// One `XAUTOCLAIM` step from the cursor, then `XPENDING` for the delivery counts of what
    /// was claimed; poison entries go to the dead-letter stream, the rest into the buffer.
    /// Returns whether the sweep of the pending list has more to look at.
    pub(super) async fn claim(&mut self) -> Result<bool, SourceError> {
        let idle: usize = self.claim_idle.as_millis().try_into().unwrap_or(usize::MAX);
        let reply: StreamAutoClaimReply = self
            .writer
            .xautoclaim_options(
                &*self.stream,
                &*self.group,
                &self.consumer,
                idle,
                &self.claim_cursor,
                StreamAutoClaimOptions::default().count(self.batch),
            )
            .await
            .map_err(redis_error)?;
        self.claim_cursor = reply.next_stream_id;
        let more = self.claim_cursor != "0-0";
        let (Some(first), Some(last)) = (reply.claimed.first(), reply.claimed.last()) else {
            return Ok(more);
        };
        // Claimed entries are now ours; others of ours may lie in the same id range.
        let pending: StreamPendingCountReply = self
            .writer
            .xpending_consumer_count(
                &*self.stream,
                &*self.group,
                &first.id,
                &last.id,
                reply.claimed.len() + 1000,
                &self.consumer,
            )
            .await
            .map_err(redis_error)?;
        let counts: HashMap<&str, u64> = pending
            .ids
            .iter()
            .map(|p| (p.id.as_str(), p.times_delivered as u64))
            .collect();
        let mut poison = Vec::new();
        for StreamId { id, map } in reply.claimed {
            // Not found only if acked meanwhile by nobody but us: count it as a first delivery.
            let deliveries = counts.get(id.as_str()).copied().unwrap_or(1);
            let entry = Entry {
                id,
                fields: map,
                deliveries,
            };
            self.stats.claimed.fetch_add(1, Ordering::Relaxed);
            if deliveries > self.max_deliveries {
                poison.push(entry);
            } else {
                self.buffer.push_back(entry);
            }
        }
        for entry in poison {
            let reason = format!(
                "delivered {} times without an acknowledgement (the limit is {})",
                entry.deliveries, self.max_deliveries
            );
            self.dead_letter(&entry, &reason).await?;
        }
        Ok(more)
    }

    /// Copies the entry to the dead-letter stream with the reason, and acks it, atomically.
    pub(super) async fn dead_letter(
        &mut self,
        entry: &Entry,
        reason: &str,
    ) -> Result<(), SourceError> {
        let mut fields: Vec<(String, Vec<u8>)> = entry
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), field_bytes(v).to_vec()))
            .collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        fields.extend([
            ("dead_letter_reason".to_owned(), reason.as_bytes().to_vec()),
            (
                "dead_letter_stream".to_owned(),
                self.stream.as_bytes().to_vec(),
            ),
            (
                "dead_letter_group".to_owned(),
                self.group.as_bytes().to_vec(),
            ),
            ("dead_letter_id".to_owned(), entry.id.as_bytes().to_vec()),
            (
                "dead_letter_deliveries".to_owned(),
                entry.deliveries.to_string().into_bytes(),
            ),
        ]);
        let () = redis::pipe()
            .atomic()
            .xadd(&self.dead_letters, "*", &fields)
            .ignore()
            .xack(&*self.stream, &*self.group, &[&entry.id])
            .ignore()
            .query_async(&mut self.writer)
            .await
            .map_err(redis_error)?;
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(stream = %self.stream, id = %entry.id, dead_letters = %self.dead_letters, reason, "entry moved to the dead-letter stream");
        Ok(())
    }
}

/// The bytes of a field value (a bulk string, as `XADD` stores every value).
pub(super) fn field_bytes(v: &Value) -> &[u8] {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.as_bytes(),
        _ => &[],
    }
}
