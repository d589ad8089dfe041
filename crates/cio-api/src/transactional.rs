//! App API requests: transactional messages and API-triggered broadcasts.
//!
//! A transactional send is not idempotent: retrying after a timeout can send a second email.
//! [`crate::AppClient`] marks its errors retryable only when the caller opted in
//! ([`crate::AppClient::retry_sends`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::ValidationError;
use crate::Attributes;

/// The channel of a transactional message; each has its own endpoint `/v1/send/{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// `/send/email`.
    Email,
    /// `/send/push`.
    Push,
    /// `/send/sms`.
    Sms,
    /// `/send/whatsapp`.
    Whatsapp,
    /// `/send/inbox_message`.
    InboxMessage,
    /// `/send/in_app`.
    InApp,
}

impl MessageKind {
    /// Every kind.
    pub const ALL: [MessageKind; 6] = [
        MessageKind::Email,
        MessageKind::Push,
        MessageKind::Sms,
        MessageKind::Whatsapp,
        MessageKind::InboxMessage,
        MessageKind::InApp,
    ];

    /// The path segment after `/send/`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Email => "email",
            MessageKind::Push => "push",
            MessageKind::Sms => "sms",
            MessageKind::Whatsapp => "whatsapp",
            MessageKind::InboxMessage => "inbox_message",
            MessageKind::InApp => "in_app",
        }
    }

    /// Parses a path segment.
    pub fn parse(s: &str) -> Option<Self> {
        MessageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Who receives a transactional message: exactly one of `id`, `email`, `cio_id`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageIdentifiers {
    /// Your id for the person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The person's email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Customer.io's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cio_id: Option<String>,
}

/// The body of `POST /v1/send/{kind}`. Channel-specific fields (push `title`, `custom_device`,
/// ...) go in `extra` and are sent as they are.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct TransactionalMessage {
    /// The template (a number or its trigger name); absent when the message gives its own content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactional_message_id: Option<Value>,
    /// The recipient person.
    pub identifiers: MessageIdentifiers,
    /// Liquid data for the template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_data: Option<Attributes>,
    /// The address (email, phone, or `all`/`last_used` for push).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Sender, without a template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Subject, without a template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Body, without a template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Copy recipients, comma-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<String>,
    /// Blind copy recipients, comma-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bcc: Option<String>,
    /// Attachments: file name to base64 content, under 2 MB in total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<std::collections::BTreeMap<String, String>>,
    /// Unix seconds to send at, at most 90 days ahead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<i64>,
    /// Everything else (`reply_to`, `headers`, `tracked`, `language`, push fields, ...).
    #[serde(flatten)]
    pub extra: Attributes,
}

/// Recipients plus total attachment size caps.
pub const MAX_RECIPIENTS: usize = 15;
/// Attachments must stay under 2 MB in total (base64 bytes as sent).
pub const MAX_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;
/// `send_at` may be at most 90 days ahead.
pub const MAX_SEND_AHEAD: Duration = Duration::from_secs(90 * 24 * 3600);

fn count_addresses(s: &Option<String>) -> usize {
    s.as_deref()
        .map(|s| s.split(',').filter(|a| !a.trim().is_empty()).count())
        .unwrap_or(0)
}

impl TransactionalMessage {
    /// Checks the App API's rules for a send of this `kind`.
    pub fn validate(&self, kind: MessageKind) -> Result<(), ValidationError> {
        let ids = &self.identifiers;
        let found: Vec<String> = [
            ("id", ids.id.is_some()),
            ("email", ids.email.is_some()),
            ("cio_id", ids.cio_id.is_some()),
        ]
        .iter()
        .filter(|(_, present)| *present)
        .map(|(k, _)| (*k).to_owned())
        .collect();
        if found.len() != 1 {
            return Err(ValidationError::IdentifierCount {
                field: "identifiers".into(),
                expected: "one of id, email, cio_id",
                found,
            });
        }
        if self.transactional_message_id.is_none() {
            let required: &[(&str, bool)] = match kind {
                MessageKind::Email => &[
                    ("to", self.to.is_some()),
                    ("from", self.from.is_some()),
                    ("subject", self.subject.is_some()),
                    ("body", self.body.is_some()),
                ],
                _ => &[("transactional_message_id", false)],
            };
            if let Some((field, _)) = required.iter().find(|(_, present)| !present) {
                return Err(ValidationError::Missing {
                    field: (*field).to_owned(),
                });
            }
        }
        let recipients =
            count_addresses(&self.to) + count_addresses(&self.cc) + count_addresses(&self.bcc);
        if kind == MessageKind::Email && recipients > MAX_RECIPIENTS {
            return Err(ValidationError::TooMany {
                field: "to, cc and bcc".into(),
                what: "recipients",
                limit: MAX_RECIPIENTS,
                actual: recipients,
            });
        }
        if let Some(att) = &self.attachments {
            let actual: usize = att.values().map(String::len).sum();
            if actual > MAX_ATTACHMENT_BYTES {
                return Err(ValidationError::TooLarge {
                    field: "attachments".into(),
                    limit: MAX_ATTACHMENT_BYTES,
                    actual,
                });
            }
        }
        if let Some(at) = self.send_at {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            if at > now + MAX_SEND_AHEAD.as_secs() as i64 {
                return Err(ValidationError::Invalid {
                    field: "send_at".into(),
                    reason: format!(
                        "{at} is more than 90 days ahead (latest allowed {})",
                        now + MAX_SEND_AHEAD.as_secs() as i64
                    ),
                });
            }
        }
        Ok(())
    }
}

/// `POST /v1/campaigns/{campaign_id}/triggers`: start an API-triggered broadcast. The body is
/// sent as given (`data`, `recipients`, or `ids` / `emails` / `per_user_data` / `data_file_url`
/// with their flags), as the Node SDK builds it.
#[derive(Clone, Debug, PartialEq)]
pub struct BroadcastTrigger {
    /// The broadcast's id.
    pub campaign_id: u64,
    /// The request body.
    pub body: Attributes,
}

/// The fields of a broadcast trigger that choose its audience; at most one may be given.
pub const BROADCAST_AUDIENCES: [&str; 5] = [
    "recipients",
    "emails",
    "ids",
    "per_user_data",
    "data_file_url",
];

impl BroadcastTrigger {
    /// Checks what Customer.io checks: at most one audience field ([`BROADCAST_AUDIENCES`];
    /// with none, the broadcast goes to the audience set up for it in Customer.io), and that
    /// the one given is not empty (an empty `recipients` filter is a 422 there).
    pub fn validate(&self) -> Result<(), ValidationError> {
        let given: Vec<&str> = BROADCAST_AUDIENCES
            .iter()
            .copied()
            .filter(|f| self.body.contains_key(*f))
            .collect();
        if given.len() > 1 {
            return Err(ValidationError::Invalid {
                field: given.join(", "),
                reason: format!(
                    "a broadcast takes one audience, got {}: keep one of them",
                    given.len()
                ),
            });
        }
        let Some(field) = given.first() else {
            return Ok(());
        };
        let empty = match &self.body[*field] {
            serde_json::Value::Object(m) => m.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::String(s) => s.trim().is_empty(),
            serde_json::Value::Null => true,
            _ => false,
        };
        if empty {
            return Err(ValidationError::Empty {
                field: (*field).to_owned(),
            });
        }
        Ok(())
    }
}

/// One App API request.
// One request per HTTP call: its size on the stack is irrelevant next to the request itself,
// and boxing would only make it clumsier to build.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum AppRequest {
    /// A transactional message.
    Send(MessageKind, TransactionalMessage),
    /// A broadcast trigger.
    TriggerBroadcast(BroadcastTrigger),
}

impl AppRequest {
    /// The path below the App API base, e.g. `/send/email`.
    pub fn path(&self) -> String {
        match self {
            AppRequest::Send(kind, _) => format!("/send/{}", kind.as_str()),
            AppRequest::TriggerBroadcast(t) => format!("/campaigns/{}/triggers", t.campaign_id),
        }
    }
}
