//! Pipelines (CDP) calls: Segment-compatible `identify`, `track`, `page`, `screen`, `group`,
//! `alias` and `batch`.
//!
//! Customer.io answers an over-size Pipelines request with 200 and drops it, so the size checks
//! here are the only protection: [`PipelinesRequest::encode`] refuses a call over 32 KB or a
//! batch over 500 KB before anything is sent.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::{Limits, ValidationError};
use crate::Attributes;

/// The kind of a Pipelines call (`type` in a batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// `/identify`.
    Identify,
    /// `/track`.
    Track,
    /// `/page`.
    Page,
    /// `/screen`.
    Screen,
    /// `/group`.
    Group,
    /// `/alias`.
    Alias,
}

impl CallKind {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Identify => "identify",
            CallKind::Track => "track",
            CallKind::Page => "page",
            CallKind::Screen => "screen",
            CallKind::Group => "group",
            CallKind::Alias => "alias",
        }
    }

    /// Parses a path segment.
    pub fn parse(s: &str) -> Option<Self> {
        [
            CallKind::Identify,
            CallKind::Track,
            CallKind::Page,
            CallKind::Screen,
            CallKind::Group,
            CallKind::Alias,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One Pipelines call, in Segment's spec (camelCase keys). Fields a kind does not use stay
/// `None`; anything else goes in `extra`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelinesCall {
    /// The call's kind; sent as `type` inside a batch, implied by the path otherwise.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CallKind>,
    /// Your id for the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// An anonymous id (cookie, device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// `track`: the event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// `page` / `screen`: the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `group`: the group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// `alias`: the previous id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// `identify` / `group`: traits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traits: Option<Attributes>,
    /// `track` / `page` / `screen`: properties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Attributes>,
    /// Segment context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Attributes>,
    /// ISO-8601 timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// A unique id for de-duplication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Anything else (`integrations`, ...).
    #[serde(flatten)]
    pub extra: Attributes,
}

/// The `context.library.name` this crate puts on the calls it sends.
pub const LIBRARY_NAME: &str = "cio-rs";

/// A `messageId` in UUID form from a 128-bit value: the same value, the same id. A pipeline
/// gives the stable hash of the message's source position, so a redelivered message carries
/// the id of its first delivery and Customer.io can de-duplicate it.
pub fn message_id_from(value: u128) -> String {
    let h = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A `messageId` no other call of this process (or, with overwhelming odds, of another) had:
/// a counter and the time, mixed by a hasher keyed at random for the process.
fn fresh_message_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(Default::default);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let half = |salt: u64| {
        let mut h = keys.build_hasher();
        h.write_u64(salt);
        h.write_u64(n);
        h.write_u64(nanos);
        h.finish()
    };
    let value = (u128::from(half(1)) << 64) | u128::from(half(2));
    // Shaped as a UUID version 4 (random), variant 1.
    let value = (value & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    message_id_from(value)
}

impl PipelinesCall {
    /// Fills in, where missing, what Customer.io needs to de-duplicate and order a call and to
    /// say where it came from: `messageId` (from `message_id`, called only then), `timestamp`
    /// (`now`, RFC 3339 with milliseconds) and `context.library` (this crate's name and
    /// version). A retry of the filled call carries the same id.
    pub fn fill_defaults(&mut self, message_id: impl FnOnce() -> String, now: SystemTime) {
        if self.message_id.is_none() {
            self.message_id = Some(message_id());
        }
        if self.timestamp.is_none() {
            self.timestamp = Some(humantime::format_rfc3339_millis(now).to_string());
        }
        let context = self.context.get_or_insert_with(Attributes::new);
        context.entry("library").or_insert_with(
            || serde_json::json!({"name": LIBRARY_NAME, "version": env!("CARGO_PKG_VERSION")}),
        );
    }

    /// Checks the required fields of a call of `kind`.
    pub fn validate(&self, kind: CallKind, field: &str) -> Result<(), ValidationError> {
        let missing = |f: &str| ValidationError::Missing {
            field: format!("{field}{f}"),
        };
        if kind == CallKind::Alias {
            if self.previous_id.is_none() {
                return Err(missing("previousId"));
            }
            if self.user_id.is_none() {
                return Err(missing("userId"));
            }
            return Ok(());
        }
        if self.user_id.is_none() && self.anonymous_id.is_none() {
            return Err(ValidationError::Missing {
                field: format!("{field}userId or {field}anonymousId"),
            });
        }
        match kind {
            CallKind::Track if self.event.is_none() => Err(missing("event")),
            CallKind::Group if self.group_id.is_none() => Err(missing("groupId")),
            _ => Ok(()),
        }
    }
}

/// One request to the Pipelines API.
// One request per HTTP call: its size on the stack is irrelevant next to the request itself,
// and boxing would only make it clumsier to build.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum PipelinesRequest {
    /// A single call to `/{kind}`.
    Call(CallKind, PipelinesCall),
    /// `/batch`: each call carries its `type`; `context` and `integrations` apply to all.
    Batch {
        /// The calls.
        batch: Vec<PipelinesCall>,
        /// Batch-level context.
        context: Option<Attributes>,
        /// Batch-level integrations.
        integrations: Option<Value>,
    },
}

impl PipelinesRequest {
    /// [`PipelinesCall::fill_defaults`] on every call, with a fresh `messageId` where one is
    /// missing. [`crate::PipelinesClient`] does this once per request before sending.
    pub fn fill_defaults(&mut self, now: SystemTime) {
        match self {
            PipelinesRequest::Call(_, call) => call.fill_defaults(fresh_message_id, now),
            PipelinesRequest::Batch { batch, .. } => {
                for call in batch {
                    call.fill_defaults(fresh_message_id, now);
                }
            }
        }
    }

    /// The path below the Pipelines base (`/identify`, ..., `/batch`).
    pub fn path(&self) -> String {
        match self {
            PipelinesRequest::Call(kind, _) => format!("/{}", kind.as_str()),
            PipelinesRequest::Batch { .. } => "/batch".into(),
        }
    }

    /// Validates and encodes the body: required fields, 32 KB per call, 500 KB per batch.
    pub fn encode(&self, limits: &Limits) -> Result<Vec<u8>, ValidationError> {
        match self {
            PipelinesRequest::Call(kind, call) => {
                call.validate(*kind, "")?;
                let body = serde_json::to_vec(call).map_err(|e| ValidationError::Invalid {
                    field: "body".into(),
                    reason: e.to_string(),
                })?;
                if body.len() > limits.entry_bytes {
                    return Err(ValidationError::TooLarge {
                        field: "body".into(),
                        limit: limits.entry_bytes,
                        actual: body.len(),
                    });
                }
                Ok(body)
            }
            PipelinesRequest::Batch {
                batch,
                context,
                integrations,
            } => {
                if batch.is_empty() {
                    return Err(ValidationError::Empty {
                        field: "batch".into(),
                    });
                }
                for (i, call) in batch.iter().enumerate() {
                    let field = format!("batch[{i}].");
                    let kind = call.kind.ok_or_else(|| ValidationError::Missing {
                        field: format!("{field}type"),
                    })?;
                    call.validate(kind, &field)?;
                    let size = serde_json::to_vec(call).map(|v| v.len()).unwrap_or(0);
                    if size > limits.entry_bytes {
                        return Err(ValidationError::TooLarge {
                            field: format!("batch[{i}]"),
                            limit: limits.entry_bytes,
                            actual: size,
                        });
                    }
                }
                let mut body = serde_json::Map::new();
                body.insert(
                    "batch".into(),
                    serde_json::to_value(batch).unwrap_or(Value::Null),
                );
                if let Some(c) = context {
                    body.insert("context".into(), Value::Object(c.clone()));
                }
                if let Some(i) = integrations {
                    body.insert("integrations".into(), i.clone());
                }
                let body = serde_json::to_vec(&body).unwrap_or_default();
                if body.len() > limits.batch_bytes {
                    return Err(ValidationError::TooLarge {
                        field: "batch".into(),
                        limit: limits.batch_bytes,
                        actual: body.len(),
                    });
                }
                Ok(body)
            }
        }
    }
}
