//! Customer.io glue: lines become [`cio_api::Operation`]s, and events get deterministic ids.
//!
//! [`OperationDecoder`] reads one v2 entry per line (the format of
//! [`Operation::from_json`]), refuses what is not UTF-8, not JSON, or not a valid entry, and checks
//! Customer.io's limits ([`Limits`]), so a bad line is dead-lettered at decode time with its
//! line number instead of failing later inside a batch. [`PipelinesDecoder`] does the same for
//! Pipelines (Segment-spec) calls, and gives each call without a `messageId` one derived from
//! its position, as events get their ids below.
//!
//! # Deterministic event ids
//!
//! An event line without an `id` gets one derived from where the line is ([`event_id`]): a ULID
//! whose 80 random bits are the top bits of [`Position::stable_hash`] (xxh3-128 of the file's
//! canonical path and the line's byte offset), and whose 48-bit time is the event's own
//! `timestamp` in milliseconds (zero when it has none). A line read again after a crash is at the
//! same path and offset, so it carries the same id, and Customer.io (and the mock) keep only the
//! first copy. An event that has an `id` keeps it.
//!
//! # Which duplicates can still happen, and why
//!
//! At-least-once delivery resends whatever was in flight, or acknowledged but not yet in the
//! checkpoint on disk, when the process died (at most the file source's
//! [`max_unpersisted`](crate::source::FileSourceBuilder::max_unpersisted) lines). Customer.io
//! discards the resent *events*, because their ids repeat. These still reach it twice:
//!
//! 1. **Operations that are not events** carry no id: `identify`, `delete`, devices,
//!    relationships, `merge`, `suppress`/`unsuppress`, objects, delivery metrics, segment
//!    membership and form submissions. A resent one is applied again. Most are idempotent (an
//!    identify sets the same attributes; lines are resent in file order, so a later update still
//!    lands last); a second `merge` fails because the secondary person is gone (and is then
//!    dead-lettered); a second form submission is a second submission.
//! 2. **The same event at another position.** The id depends on the path and byte offset, not on
//!    the content: a copy or a renamed file (another canonical path), lines that moved because the
//!    file was rewritten, or the same events piped through stdin in two runs (stdin has no
//!    identity across runs, so each run's origin is unique) get new ids, and Customer.io keeps
//!    both copies. Replaying a dead-letter file is *not* such a case:
//!    [`crate::dead_letter::Replay`] restores the original position, hence the original id.
//! 3. **Channel sources** number messages per run under an origin unique to the channel: the same
//!    payload sent again (after a nack, or in another run) has another position, hence another
//!    id. Producers that can resend should put an `id` in their events.
//! 4. **Events whose own ids differ** although they are the same event (the producer's choice).
//! 5. **After Customer.io forgets an id.** Its de-duplication window is not documented; a line
//!    resent long after its first delivery may be accepted again. (The mock remembers forever.)
//!
//! The converse hazard: a *different* event at a position already used gets an id already seen,
//! and Customer.io drops it as a duplicate. For a file, that is a path whose content was replaced
//! (a log rotated by renaming the old file away and starting a new one under the same name):
//! give each file its own name (rotate to new names, never rewrite in place), or put ids in the
//! events. The file source refuses to resume when a file became shorter than its checkpoint,
//! which catches truncation but not a rewrite. A [`MemorySource`](crate::source::MemorySource)
//! reuses its origin (`memory`) on purpose, for reproducible tests: give it a unique origin before
//! sending real events through it. Stdin and channels get a unique origin per run, so they never
//! collide.

use bytes::Bytes;
use cio_api::encode::Entry;
use cio_api::pipelines::{PipelinesCall, PipelinesRequest};
use cio_api::{Limits, Operation};

use crate::decode::{Decode, DecodeError};
use crate::source::Position;

/// The id an event without one gets at `position` (see the [module docs](self)): a ULID of 26
/// Crockford base32 characters, the same for the same position and timestamp in every run.
///
/// ```
/// use cio_pipeline::{cio::event_id, source::Position};
///
/// let at = |offset| Position::Line { origin: "/data/events.jsonl".into(), line: 1, offset };
/// assert_eq!(event_id(&at(0), None), event_id(&at(0), None)); // redelivered: same id
/// assert_ne!(event_id(&at(0), None), event_id(&at(81), None));
/// assert_eq!(event_id(&at(0), None).len(), 26);
/// assert!(event_id(&at(0), Some(1_700_000_000)).starts_with("01HF"));
/// ```
pub fn event_id(position: &Position, timestamp: Option<i64>) -> String {
    let time_ms = timestamp
        .and_then(|s| u64::try_from(s).ok())
        .and_then(|s| s.checked_mul(1000))
        .filter(|ms| *ms < 1 << 48)
        .unwrap_or(0);
    let random = position.stable_hash() >> 48;
    let mut buf = [0u8; ulid::ULID_LEN];
    ulid::Ulid::from_parts(time_ms, random)
        .array_to_str(&mut buf)
        .to_owned()
}

/// Decodes lines into [`Operation`]s, gives id-less events their deterministic id, and checks
/// Customer.io's limits.
///
/// ```
/// use cio_pipeline::{cio::OperationDecoder, Decode, source::Position};
///
/// let at = Position::Line { origin: "/data/events.jsonl".into(), line: 3, offset: 240 };
/// let line = br#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"signup"}"#;
/// let op = OperationDecoder::new().decode(line, &at).unwrap();
/// assert_eq!(op.event_id(), Some(cio_pipeline::cio::event_id(&at, None).as_str()));
///
/// let err = OperationDecoder::new().decode(br#"{"type":"person","action":"delete"}"#, &at).unwrap_err();
/// assert!(err.reason().contains("identifiers"), "{err}");
/// ```
#[derive(Clone, Debug)]
pub struct OperationDecoder {
    limits: Option<Limits>,
}

impl Default for OperationDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl OperationDecoder {
    /// Checks Customer.io's documented limits ([`Limits::default`]).
    pub fn new() -> Self {
        OperationDecoder {
            limits: Some(Limits::default()),
        }
    }

    /// Checks these limits (keep them equal to the client's).
    pub fn with_limits(limits: Limits) -> Self {
        OperationDecoder {
            limits: Some(limits),
        }
    }

    /// Checks only the shape, not the limits (the client still checks them before sending).
    pub fn without_limits() -> Self {
        OperationDecoder { limits: None }
    }
}

/// A line as an operation, with an id-less event given its deterministic id.
fn operation(payload: &[u8], position: &Position) -> Result<Operation, DecodeError> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        DecodeError::new(format!(
            "not valid UTF-8 (invalid byte at column {})",
            e.valid_up_to() + 1
        ))
    })?;
    let mut op = Operation::from_json_str(text).map_err(|e| DecodeError::new(e.to_string()))?;
    if let Operation::Event(event) = &mut op {
        if event.id.is_none() {
            event.id = Some(event_id(position, event.timestamp));
        }
    }
    Ok(op)
}

/// Decodes lines into v2 [`Entry`]s for the batch path: checked against the limits, given an id
/// when an event has none, and encoded, once. A line already in the form Customer.io gets (what
/// `cio demo --generate-only` writes, and any compact serde_json output) is checked in one pass
/// and kept as it is, sharing the source's buffer; only an added id is written
/// ([`Entry::from_wire`]). Any other line is parsed, validated and encoded ([`Entry::new`]),
/// which also words the reason a bad line is refused. The batch after it only joins the
/// entries' bytes (`cio_api::stack::BatchedStack::entries`); nothing validates or serializes
/// them again, and a retry sends the same bytes.
///
/// ```
/// use cio_pipeline::{cio::EntryDecoder, Decode, source::Position};
///
/// let at = Position::Line { origin: "/data/events.jsonl".into(), line: 3, offset: 240 };
/// let line = br#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"signup"}"#;
/// let entry = EntryDecoder::new().decode(line, &at).unwrap();
/// let id = cio_pipeline::cio::event_id(&at, None);
/// assert!(std::str::from_utf8(entry.wire()).unwrap().contains(&id));
/// ```
#[derive(Clone, Debug, Default)]
pub struct EntryDecoder {
    limits: Limits,
}

impl EntryDecoder {
    /// Checks Customer.io's documented limits ([`Limits::default`]).
    pub fn new() -> Self {
        EntryDecoder::default()
    }

    /// Checks these limits (keep them equal to the client's).
    pub fn with_limits(limits: Limits) -> Self {
        EntryDecoder { limits }
    }
}

impl Decode for EntryDecoder {
    type Item = Entry;

    fn decode(&self, payload: &[u8], position: &Position) -> Result<Entry, DecodeError> {
        self.decode_bytes(&Bytes::copy_from_slice(payload), position)
    }

    fn decode_bytes(&self, payload: &Bytes, position: &Position) -> Result<Entry, DecodeError> {
        if let Some(entry) = Entry::from_wire(payload.clone(), &self.limits, |timestamp| {
            event_id(position, timestamp)
        }) {
            return Ok(entry);
        }
        let op = operation(payload, position)?;
        Entry::new(&op, &self.limits).map_err(|e| DecodeError::new(e.to_string()))
    }
}

impl Decode for OperationDecoder {
    type Item = Operation;

    fn decode(&self, payload: &[u8], position: &Position) -> Result<Operation, DecodeError> {
        let op = operation(payload, position)?;
        if let Some(limits) = &self.limits {
            op.validate(limits)
                .map_err(|e| DecodeError::new(e.to_string()))?;
        }
        Ok(op)
    }
}

/// Reads one Pipelines (Segment-spec) call per line, `{"type":"track","userId":...}`, into a
/// [`PipelinesRequest`] for [`cio_api::PipelinesClient`]: `type` names the call; the required
/// fields and the 32 KB limit are checked here, so a bad line is dead-lettered with its
/// position. A call without a `messageId` gets one from its position
/// ([`cio_api::pipelines::message_id_from`] of [`Position::stable_hash`]): a line delivered
/// again after a crash, or replayed from the dead letters, carries the id of its first
/// delivery, and Customer.io can de-duplicate it.
///
/// ```
/// use cio_pipeline::cio::PipelinesDecoder;
/// use cio_pipeline::source::Position;
/// use cio_pipeline::Decode;
///
/// let at = Position::Line { origin: "/data/calls.jsonl".into(), line: 1, offset: 0 };
/// let line = br#"{"type":"track","userId":"42","event":"signup"}"#;
/// let a = PipelinesDecoder::new().decode(line, &at).unwrap();
/// let b = PipelinesDecoder::new().decode(line, &at).unwrap();
/// assert_eq!(a, b, "the same line at the same place: the same messageId");
/// ```
#[derive(Clone, Debug, Default)]
pub struct PipelinesDecoder {
    limits: Limits,
}

impl PipelinesDecoder {
    /// Checks Customer.io's documented limits ([`Limits::default`]).
    pub fn new() -> Self {
        PipelinesDecoder::default()
    }

    /// Checks these limits (keep them equal to the client's).
    pub fn with_limits(limits: Limits) -> Self {
        PipelinesDecoder { limits }
    }
}

impl Decode for PipelinesDecoder {
    type Item = PipelinesRequest;

    fn decode(&self, payload: &[u8], position: &Position) -> Result<PipelinesRequest, DecodeError> {
        let mut call: PipelinesCall = serde_json::from_slice(payload)
            .map_err(|e| DecodeError::new(format!("not a Pipelines call: {e}")))?;
        let kind = call.kind.take().ok_or_else(|| {
            DecodeError::new("missing `type`: identify, track, page, screen, group or alias")
        })?;
        if call.message_id.is_none() {
            call.message_id = Some(cio_api::pipelines::message_id_from(position.stable_hash()));
        }
        let request = PipelinesRequest::Call(kind, call);
        request
            .encode(&self.limits)
            .map_err(|e| DecodeError::new(e.to_string()))?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipelines_calls_get_message_ids_from_their_position_and_bad_ones_say_why() {
        use cio_api::pipelines::PipelinesRequest;
        let decoder = super::PipelinesDecoder::new();
        let at = |offset| super::Position::Line {
            origin: "/data/calls.jsonl".into(),
            line: 1,
            offset,
        };
        let id = |r: PipelinesRequest| match r {
            PipelinesRequest::Call(_, c) => c.message_id.unwrap(),
            other => panic!("{other:?}"),
        };
        let line = br#"{"type":"track","userId":"42","event":"signup"}"#;
        let first = id(decoder.decode(line, &at(0)).unwrap());
        assert_eq!(first, id(decoder.decode(line, &at(0)).unwrap()));
        assert_ne!(first, id(decoder.decode(line, &at(48)).unwrap()));
        let own = br#"{"type":"track","userId":"42","event":"signup","messageId":"m-1"}"#;
        assert_eq!(id(decoder.decode(own, &at(0)).unwrap()), "m-1");
        let no_type = br#"{"userId":"42","event":"signup"}"#;
        assert!(decoder
            .decode(no_type, &at(0))
            .unwrap_err()
            .reason()
            .contains("`type`"));
        let no_event = br#"{"type":"track","userId":"42"}"#;
        assert!(decoder
            .decode(no_event, &at(0))
            .unwrap_err()
            .reason()
            .contains("event"));
    }
    use super::*;

    fn at(offset: u64) -> Position {
        Position::Line {
            origin: "/data/events.jsonl".into(),
            line: 1,
            offset,
        }
    }

    #[test]
    fn ids_are_ulids_stable_per_position_and_kept_when_given() {
        let id = event_id(&at(0), None);
        assert_eq!(id.len(), 26);
        assert!(ulid::Ulid::from_string(&id).is_ok());
        // Pinned: the derivation must not change between versions, or lines redelivered after
        // an upgrade would get new ids.
        let pinned = ulid::Ulid::from_string(&event_id(&at(0), Some(1_700_000_000))).unwrap();
        assert_eq!(pinned.timestamp_ms(), 1_700_000_000_000);
        assert_eq!(pinned.random(), at(0).stable_hash() >> 48);

        let d = OperationDecoder::new();
        let with_id = br#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"x","id":"01HZY3J5K3V1X0SJQ2Q0CE7A9N"}"#;
        assert_eq!(
            d.decode(with_id, &at(0)).unwrap().event_id(),
            Some("01HZY3J5K3V1X0SJQ2Q0CE7A9N")
        );
        let without = br#"{"type":"person","identifiers":{"id":"1"},"action":"page","name":"/home","timestamp":1700000000}"#;
        assert_eq!(
            d.decode(without, &at(7)).unwrap().event_id(),
            Some(event_id(&at(7), Some(1_700_000_000)).as_str())
        );
        // Not an event: no id is invented.
        let identify =
            br#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{}}"#;
        assert_eq!(d.decode(identify, &at(0)).unwrap().event_id(), None);
    }

    #[test]
    fn bad_lines_say_why() {
        let d = OperationDecoder::new();
        let reason = |line: &[u8]| d.decode(line, &at(0)).unwrap_err().reason().to_owned();
        assert!(reason(b"{\"type\":").contains("invalid JSON"));
        assert!(reason(b"{\"type\":\"person\",\"action\":\"delete\"}").contains("identifiers"));
        assert!(reason(b"\"ok\xff\"").contains("not valid UTF-8 (invalid byte at column 4)"));
        let big = format!(
            r#"{{"type":"person","identifiers":{{"id":"1"}},"action":"identify","attributes":{{"bio":"{}"}}}}"#,
            "x".repeat(2000)
        );
        let r = reason(big.as_bytes());
        assert!(r.contains("attributes.bio") && r.contains("1000"), "{r}");
        assert!(OperationDecoder::without_limits()
            .decode(big.as_bytes(), &at(0))
            .is_ok());
    }
}
