//! Encoding: validated v2 entries and batch bodies, each encoded once.

use crate::limits::{Limits, ValidationError};
use crate::operation::Operation;

impl Operation {
    /// Checks this operation as a Track v2 entry: it has a v2 form, passes
    /// [`Operation::validate`], and a delivery entry is opened, converted or delivered (v2 takes
    /// only those; v1 `/metrics` takes more). The size is checked when it is encoded.
    pub fn validate_entry(&self, limits: &Limits) -> Result<(), ValidationError> {
        if !self.has_v2_form() {
            return Err(ValidationError::Invalid {
                field: "type".into(),
                reason: format!(
                    "{} has no Track v2 form; send it through the v1 TrackClient",
                    self.stat_name()
                ),
            });
        }
        self.validate(limits)?;
        if let Operation::DeliveryEvent(d) = self {
            if !["opened", "converted", "delivered"].contains(&d.metric.as_str()) {
                return Err(ValidationError::Invalid {
                    field: "name".into(),
                    reason: format!(
                        "{:?}: a v2 delivery entry is opened, converted or delivered",
                        d.metric
                    ),
                });
            }
        }
        Ok(())
    }

    /// Validates this operation as a v2 entry ([`Operation::validate_entry`]) and appends its
    /// JSON to `out`. On error `out` is left as it was.
    pub fn encode_entry(&self, limits: &Limits, out: &mut Vec<u8>) -> Result<(), ValidationError> {
        self.validate_entry(limits)?;
        let start = out.len();
        self.write_json(out);
        let actual = out.len() - start;
        if actual > limits.entry_bytes {
            out.truncate(start);
            return Err(ValidationError::TooLarge {
                field: "entry".into(),
                limit: limits.entry_bytes,
                actual,
            });
        }
        Ok(())
    }
}

/// A v2 batch body, validated and encoded in one pass.
#[derive(Debug)]
pub struct EncodedBatch {
    /// `{"batch":[...]}` with the valid entries, or empty when none was valid.
    pub body: Vec<u8>,
    /// For each entry in `body`, its index in the caller's slice.
    pub sent: Vec<usize>,
    /// Entries refused before sending, with their index in the caller's slice.
    pub rejected: Vec<(usize, ValidationError)>,
}

/// Validates every entry, encodes the valid ones into one `{"batch":[...]}` body, and checks the
/// body against `limits.batch_bytes`. Invalid entries are reported, not sent; a body over the
/// batch limit is an error for the whole batch (split it: the batch layer does).
pub fn encode_batch(ops: &[Operation], limits: &Limits) -> Result<EncodedBatch, ValidationError> {
    const OPEN: &[u8] = b"{\"batch\":[";
    let mut body = Vec::with_capacity(ops.len() * 256 + 16);
    body.extend_from_slice(OPEN);
    let mut sent = Vec::with_capacity(ops.len());
    let mut rejected = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if !sent.is_empty() {
            body.push(b',');
        }
        match op.encode_entry(limits, &mut body) {
            Ok(()) => sent.push(i),
            Err(e) => {
                if !sent.is_empty() {
                    body.pop();
                }
                rejected.push((i, e.within(&format!("batch[{i}]"))));
            }
        }
    }
    body.extend_from_slice(b"]}");
    if body.len() > limits.batch_bytes {
        return Err(ValidationError::TooLarge {
            field: "batch".into(),
            limit: limits.batch_bytes,
            actual: body.len(),
        });
    }
    if sent.is_empty() {
        body.clear();
    }
    Ok(EncodedBatch {
        body,
        sent,
        rejected,
    })
}

/// A v2 entry checked against the [`Limits`] and encoded, once: what the batch path carries.
///
/// Built where the operation comes in (a decoded line, a caller's operation); from then on
/// nothing validates or serializes it again. Its weight in a batch is its length plus a
/// comma, a batch body is the entries' bytes joined ([`PreparedBatch`]), and a retry sends the
/// same `Bytes` again.
///
/// ```
/// use cio_api::{encode::Entry, Limits, Operation};
///
/// let op = Operation::from_json(br#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"signup","id":"01J0000000000000000000000"}"#).unwrap();
/// let entry = Entry::new(&op, &Limits::default()).unwrap();
/// assert!(entry.wire().starts_with(b"{") && entry.is_idempotent());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    wire: bytes::Bytes,
    idempotent: bool,
    kind: &'static str,
}

impl Entry {
    /// Validates `op` as a v2 entry and encodes it (one pass over the operation for the
    /// checks, one serialization).
    pub fn new(op: &Operation, limits: &Limits) -> Result<Entry, ValidationError> {
        let mut wire = Vec::with_capacity(256);
        op.encode_entry(limits, &mut wire)?;
        Ok(Entry {
            wire: bytes::Bytes::from(wire),
            idempotent: op.is_idempotent(),
            kind: op.stat_name(),
        })
    }

    /// The entry `wire` as it is, when [`crate::raw::vouch`] can vouch for its bytes: no parse,
    /// no copy (the entry shares `wire`'s buffer). An event without an `id` gets
    /// `event_id(timestamp)` as its id, appended (the only bytes written). `None` when the
    /// bytes must go through [`Entry::new`] (which also words the error of a bad entry), or the
    /// entry would be over [`Limits::entry_bytes`].
    ///
    /// ```
    /// use cio_api::{encode::Entry, Limits};
    ///
    /// let line = bytes::Bytes::from_static(br#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"signup"}"#);
    /// let entry = Entry::from_wire(line, &Limits::default(), |_| "01J0000000000000000000000".into()).unwrap();
    /// assert!(entry.wire().ends_with(br#""name":"signup","id":"01J0000000000000000000000"}"#));
    /// ```
    pub fn from_wire(
        wire: bytes::Bytes,
        limits: &Limits,
        event_id: impl FnOnce(Option<i64>) -> String,
    ) -> Option<Entry> {
        let vouched = crate::raw::vouch(&wire, limits)?;
        let (kind, needs_id) = (vouched.kind, vouched.needs_id());
        let wire = if needs_id {
            let id = event_id(vouched.timestamp);
            if id.is_empty() || crate::size::escaped_len(&id) > limits.identifier_bytes {
                return None;
            }
            // `...}` becomes `...,"id":"<id>"}`; the id is escaped as serde_json would.
            let mut out = Vec::with_capacity(wire.len() + id.len() + 8);
            out.extend_from_slice(&wire[..wire.len() - 1]);
            out.extend_from_slice(b",\"id\":");
            let _ = serde_json::to_writer(&mut out, &id);
            out.push(b'}');
            bytes::Bytes::from(out)
        } else {
            wire
        };
        if wire.len() > limits.entry_bytes {
            return None;
        }
        Some(Entry {
            wire,
            idempotent: true,
            kind,
        })
    }

    /// The entry's JSON, as it goes into the batch body.
    pub fn wire(&self) -> &bytes::Bytes {
        &self.wire
    }

    /// Whether sending it twice acts once (an identify, an event with an id, ...).
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// The operation's kind (`identify`, `event`, ...), for metrics.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// A v2 batch body joined from [`Entry`]s once, cheap to clone: a retry of the batch sends the
/// same bytes again.
#[derive(Clone, Debug)]
pub struct PreparedBatch {
    body: bytes::Bytes,
    entries: usize,
    idempotent: bool,
}

impl PreparedBatch {
    /// `{"batch":[e1,e2,...]}`. The size is checked when it is sent (the batch layer's weight
    /// keeps it within [`Limits::batch_weight`]).
    pub fn from_entries(entries: &[Entry]) -> PreparedBatch {
        const OPEN: &[u8] = b"{\"batch\":[";
        let len = OPEN.len() + 2 + entries.iter().map(|e| e.wire.len() + 1).sum::<usize>();
        let mut body = Vec::with_capacity(len);
        body.extend_from_slice(OPEN);
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&e.wire);
        }
        body.extend_from_slice(b"]}");
        PreparedBatch {
            body: bytes::Bytes::from(body),
            entries: entries.len(),
            idempotent: entries.iter().all(Entry::is_idempotent),
        }
    }

    /// The request body.
    pub fn body(&self) -> &bytes::Bytes {
        &self.body
    }

    /// Entries in it.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// No entry at all.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Whether every entry is idempotent (so the transport may send it again after a broken
    /// connection).
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

impl cio_layers::batch::Weigh for Entry {
    /// Its length plus its comma in the batch array: batches built on this weight stay within
    /// [`Limits::batch_weight`].
    fn weight(&self) -> usize {
        self.wire.len() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_batch_is_the_encode_batch_body_of_the_same_entries() {
        let limits = Limits::default();
        let ops: Vec<Operation> = [
            r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"plan":"pro","n":1}}"#,
            r#"{"type":"person","identifiers":{"email":"a@b.c"},"action":"event","name":"x","id":"01J0000000000000000000000","attributes":{"q":"\"quoted\" é"}}"#,
            r#"{"type":"person","identifiers":{"id":"2"},"action":"event","name":"y"}"#,
        ]
        .iter()
        .map(|l| Operation::from_json(l.as_bytes()).unwrap())
        .collect();
        let entries: Vec<Entry> = ops
            .iter()
            .map(|o| Entry::new(o, &limits).unwrap())
            .collect();
        let prepared = PreparedBatch::from_entries(&entries);
        let encoded = encode_batch(&ops, &limits).unwrap();
        assert_eq!(prepared.body().as_ref(), encoded.body.as_slice());
        assert_eq!(prepared.len(), 3);
        assert!(
            !prepared.is_idempotent(),
            "an event without an id is not idempotent"
        );
        // The weights add up to the body less the envelope, plus one (no comma after the last).
        let weight: usize = entries.iter().map(cio_layers::batch::Weigh::weight).sum();
        assert_eq!(weight, prepared.body().len() - br#"{"batch":[]}"#.len() + 1);
        // An invalid operation never becomes an entry.
        let bad = Operation::from_json(
            br#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"x"}"#,
        )
        .unwrap();
        let long = Limits {
            event_name_bytes: 0,
            ..Limits::default()
        };
        assert!(Entry::new(&bad, &long).is_err());
    }
}
