//! The Track v1 request for an operation, exactly as the official Node SDK sends it.

use bytes::Bytes;
use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
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

/// A v1 request ready to send: method, full URL and serialized body. What
/// [`TrackClient`](crate::TrackClient) sends; the same bytes as [`Operation::to_v1`]'s request
/// serialized, built without copying the operation into a `serde_json::Value` first.
pub(crate) struct V1Wire {
    pub method: Method,
    pub url: String,
    pub body: Option<Bytes>,
}

/// A v1 event body borrowed from the [`Event`]. Fields in the order of `serde_json::Map` (sorted
/// keys), so the bytes equal those of [`Operation::to_v1`]'s body.
#[derive(Serialize)]
struct V1EventBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    anonymous_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    data: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// Appends `/customers/{id}` (percent-encoded) to `url`.
fn push_customer_path(url: &mut String, op: &Operation, p: &PersonIdentifier) -> Result<(), Error> {
    match p {
        PersonIdentifier::Id(v) | PersonIdentifier::Email(v) => {
            url.push_str("/customers/");
            url.extend(utf8_percent_encode(v, COMPONENT));
        }
        _ => url.push_str(&customer_path(op, p)?),
    }
    Ok(())
}

fn json_bytes<T: Serialize + ?Sized>(value: &T, capacity: usize) -> Bytes {
    let mut out = Vec::with_capacity(capacity);
    // Serializing maps with string keys and plain values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    Bytes::from(out)
}

impl Operation {
    /// The v1 request to send below `base` (`https://track.customer.io/api/v1`). Events, and
    /// identifies without a timestamp or relationships (the operations sent at volume), are
    /// serialized straight from the operation; the rest through [`Operation::to_v1`].
    pub(crate) fn to_v1_wire(&self, base: &str) -> Result<V1Wire, Error> {
        let mut url = String::with_capacity(base.len() + 64);
        url.push_str(base);
        match self {
            Operation::Event(e) => {
                let anonymous_id = match &e.subject {
                    EventSubject::Person(p) => {
                        push_customer_path(&mut url, self, p)?;
                        url.push_str("/events");
                        None
                    }
                    EventSubject::Anonymous(a) => {
                        url.push_str("/events");
                        Some(a.as_str()).filter(|a| !a.is_empty())
                    }
                };
                let body = V1EventBody {
                    anonymous_id,
                    data: &e.data,
                    id: e.id.as_deref(),
                    name: &e.name,
                    timestamp: e.timestamp,
                    kind: (e.kind != EventKind::Event).then(|| e.kind.as_str()),
                };
                Ok(V1Wire {
                    method: Method::POST,
                    url,
                    body: Some(json_bytes(&body, 256)),
                })
            }
            Operation::Identify(i) if i.timestamp.is_none() && i.relationships.is_empty() => {
                push_customer_path(&mut url, self, &i.identifier)?;
                Ok(V1Wire {
                    method: Method::PUT,
                    url,
                    body: Some(json_bytes(&i.attributes, 256)),
                })
            }
            _ => {
                let req = self.to_v1()?;
                url.push_str(&req.path);
                Ok(V1Wire {
                    method: req.method,
                    url,
                    body: req
                        .body
                        .as_ref()
                        .map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default())),
                })
            }
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `TrackClient` sends is byte for byte what `to_v1` describes.
    #[test]
    fn the_wire_request_is_to_v1_serialized() {
        let entries: &[&str] = &[
            r#"{"type":"person","identifiers":{"id":"a+b@x"},"action":"event","name":"buy","id":"01HZY3J5K3V1X0SJQ2Q0CE7A9N","timestamp":1700000000,"attributes":{"price":23.45,"sku":"s\"1","nested":{"z":1,"a":[1,2]}}}"#,
            r#"{"type":"person","identifiers":{"email":"jane@example.com"},"action":"event","name":"signup"}"#,
            r#"{"type":"person","identifiers":{"cio_id":"f000"},"action":"screen","name":"home","attributes":{"x":"y"}}"#,
            r#"{"type":"person","identifiers":{"id":"7"},"action":"page","name":"/pricing","timestamp":1700000001}"#,
            r#"{"type":"person","anonymous_id":"anon-1","action":"event","name":"visit","attributes":{"k":"v"}}"#,
            r#"{"type":"person","identifiers":{"id":"42"},"action":"identify","attributes":{"plan":"pro","email":"j@x.com","n":3}}"#,
            r#"{"type":"person","identifiers":{"id":"42"},"action":"identify","timestamp":1700000000,"attributes":{"plan":"pro"}}"#,
            r#"{"type":"person","identifiers":{"cio_id":"f001"},"action":"identify","attributes":{}}"#,
            r#"{"type":"person","identifiers":{"id":"42"},"action":"delete"}"#,
        ];
        let base = "https://track.customer.io/api/v1";
        for entry in entries {
            let op = Operation::from_json(entry.as_bytes()).expect(entry);
            let expected = op.to_v1().expect(entry);
            let wire = op.to_v1_wire(base).expect(entry);
            assert_eq!(wire.method, expected.method, "{entry}");
            assert_eq!(wire.url, format!("{base}{}", expected.path), "{entry}");
            let body = expected.body.map(|b| serde_json::to_vec(&b).unwrap());
            assert_eq!(wire.body.as_deref(), body.as_deref(), "{entry}");
        }
        let phone = Operation::from_json(
            br#"{"type":"person","identifiers":{"phone":"+15551234567"},"action":"event","name":"x"}"#,
        );
        if let Ok(op) = phone {
            assert!(op.to_v1_wire(base).is_err());
        }
    }
}
