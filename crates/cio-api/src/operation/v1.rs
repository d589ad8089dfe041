//! The Track v1 request for an operation, exactly as the official Node SDK sends it.

use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use super::*;
use crate::error::Error;

/// JavaScript's `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is encoded,
/// so `+` becomes `%2B` and `@` becomes `%40`, as the Node SDK sends them.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes one path segment like `encodeURIComponent`.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// A Track v1 request: method, path below `/api/v1` (percent-encoded, with any query) and body.
#[derive(Clone, Debug, PartialEq)]
pub struct V1Request {
    /// HTTP method (`PUT` for identify, never `POST`).
    pub method: Method,
    /// Path below `/api/v1`, e.g. `/customers/a%2Bb%40example.com`.
    pub path: String,
    /// JSON body, or `None` for requests without one (`DELETE`).
    pub body: Option<Value>,
}

fn unsupported(op: &Operation, reason: &str) -> Error {
    Error::Unsupported {
        operation: op.stat_name(),
        reason: reason.to_owned(),
    }
}

fn customer_path(op: &Operation, p: &PersonIdentifier) -> Result<String, Error> {
    let v = p.v1_path_value().ok_or_else(|| {
        unsupported(
            op,
            "a phone number cannot address a person in Track v1 (it would be taken as an id); \
             send it through the v2 BatchClient",
        )
    })?;
    Ok(format!("/customers/{}", encode_segment(&v)))
}

impl Operation {
    /// The v1 request for this operation, or [`Error::Unsupported`] for operations that only
    /// v2 has (objects, relationships, phone identifiers).
    pub fn to_v1(&self) -> Result<V1Request, Error> {
        let req = |method, path, body| V1Request { method, path, body };
        Ok(match self {
            Operation::Identify(i) => {
                let mut body = i.attributes.clone();
                if let Some(ts) = i.timestamp {
                    body.insert("_timestamp".into(), ts.into());
                }
                if !i.relationships.is_empty() {
                    // v1 wraps the list, unlike v2's bare array:
                    // `{"action":"add_relationships","relationships":[...]}`.
                    let relationships =
                        serde_json::to_value(&i.relationships).unwrap_or(Value::Null);
                    body.insert(
                        "cio_relationships".into(),
                        json!({ "action": "add_relationships", "relationships": relationships }),
                    );
                }
                req(
                    Method::PUT,
                    customer_path(self, &i.identifier)?,
                    Some(Value::Object(body)),
                )
            }
            Operation::Delete(p) => req(Method::DELETE, customer_path(self, p)?, None),
            Operation::Suppress(p) => req(
                Method::POST,
                format!("{}/suppress", customer_path(self, p)?),
                Some(json!({})),
            ),
            Operation::Unsuppress(p) => req(
                Method::POST,
                format!("{}/unsuppress", customer_path(self, p)?),
                Some(json!({})),
            ),
            Operation::Event(e) => {
                let mut body = Map::new();
                if e.kind != EventKind::Event {
                    body.insert("type".into(), e.kind.as_str().into());
                }
                body.insert("name".into(), e.name.clone().into());
                if let Some(id) = &e.id {
                    body.insert("id".into(), id.clone().into());
                }
                if let Some(ts) = e.timestamp {
                    body.insert("timestamp".into(), ts.into());
                }
                if !e.data.is_empty() {
                    body.insert("data".into(), Value::Object(e.data.clone()));
                }
                match &e.subject {
                    EventSubject::Person(p) => req(
                        Method::POST,
                        format!("{}/events", customer_path(self, p)?),
                        Some(Value::Object(body)),
                    ),
                    EventSubject::Anonymous(a) => {
                        // The SDK leaves `anonymous_id` out for an invite (empty id).
                        if !a.is_empty() {
                            body.insert("anonymous_id".into(), a.clone().into());
                        }
                        req(Method::POST, "/events".into(), Some(Value::Object(body)))
                    }
                }
            }
            Operation::AddDevice(d) => {
                let mut device = Map::new();
                device.insert("id".into(), d.device.token.clone().into());
                if let Some(p) = &d.device.platform {
                    device.insert("platform".into(), p.clone().into());
                }
                if let Some(l) = d.device.last_used {
                    device.insert("last_used".into(), l.into());
                }
                if !d.device.attributes.is_empty() {
                    device.insert(
                        "attributes".into(),
                        Value::Object(d.device.attributes.clone()),
                    );
                }
                req(
                    Method::PUT,
                    format!("{}/devices", customer_path(self, &d.identifier)?),
                    Some(json!({ "device": device })),
                )
            }
            Operation::DeleteDevice(d) => req(
                Method::DELETE,
                format!(
                    "{}/devices/{}",
                    customer_path(self, &d.identifier)?,
                    encode_segment(&d.token)
                ),
                None,
            ),
            Operation::Merge(m) => req(
                Method::POST,
                "/merge_customers".into(),
                Some(json!({ "primary": m.primary, "secondary": m.secondary })),
            ),
            Operation::DeliveryEvent(d) => match &d.device_token {
                Some(token) => {
                    let mut body = Map::new();
                    body.insert("delivery_id".into(), d.delivery_id.clone().into());
                    body.insert("device_id".into(), token.clone().into());
                    body.insert("event".into(), d.metric.clone().into());
                    if let Some(ts) = d.timestamp {
                        body.insert("timestamp".into(), ts.into());
                    }
                    req(
                        Method::POST,
                        "/push/events".into(),
                        Some(Value::Object(body)),
                    )
                }
                None => {
                    let mut body = Map::new();
                    body.insert("delivery_id".into(), d.delivery_id.clone().into());
                    body.insert("metric".into(), d.metric.clone().into());
                    if let Some(ts) = d.timestamp {
                        body.insert("timestamp".into(), ts.into());
                    }
                    for (k, v) in &d.attributes {
                        body.insert(k.clone(), v.clone());
                    }
                    req(Method::POST, "/metrics".into(), Some(Value::Object(body)))
                }
            },
            Operation::SegmentMembership(s) => {
                let verb = match s.change {
                    SegmentChange::Add => "add_customers",
                    SegmentChange::Remove => "remove_customers",
                };
                let query = s
                    .id_type
                    .map(|t| format!("?id_type={}", t.as_str()))
                    .unwrap_or_default();
                req(
                    Method::POST,
                    format!("/segments/{}/{verb}{query}", s.segment_id),
                    Some(json!({ "ids": s.ids })),
                )
            }
            Operation::FormSubmit(f) => req(
                Method::POST,
                format!("/forms/{}/submit", encode_segment(&f.form_id)),
                Some(json!({ "data": f.data })),
            ),
            Operation::AddRelationships(_)
            | Operation::DeleteRelationships(_)
            | Operation::ObjectIdentify(_)
            | Operation::ObjectDelete(_)
            | Operation::ObjectAddRelationships(_)
            | Operation::ObjectDeleteRelationships(_) => {
                return Err(unsupported(
                    self,
                    "objects and relationships exist only in Track v2; send them through the BatchClient",
                ))
            }
        })
    }
}
