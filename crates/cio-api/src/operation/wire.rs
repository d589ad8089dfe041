//! Decoding a v2 entry (JSON) into an [`Operation`], with errors that name the field.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::*;
use crate::identifier::RelationshipTarget;
use crate::limits::ValidationError;

/// Why a line or entry could not become an [`Operation`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape (the message says where).
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Well-formed JSON that is not a valid entry (a missing field, two identifiers, ...).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl DecodeError {
    /// The field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::Json(_) => None,
            DecodeError::Invalid(v) => Some(v.field()),
        }
    }
}

/// The flat shape every entry type shares. Unknown fields are refused: a misspelt field (or
/// v1's `data` on a v2 event) would otherwise be dropped without a word.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEntry<'a> {
    // Borrowed from the input when it has no escapes: no allocation for these two per line.
    #[serde(rename = "type", borrow)]
    entry_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    identifiers: Option<Map<String, Value>>,
    anonymous_id: Option<String>,
    attributes: Option<Value>,
    cio_relationships: Option<Vec<WireRelationship>>,
    name: Option<String>,
    id: Option<String>,
    timestamp: Option<i64>,
    device: Option<WireDevice>,
    primary: Option<Map<String, Value>>,
    secondary: Option<Map<String, Value>>,
    segment_id: Option<u64>,
    id_type: Option<String>,
    ids: Option<Vec<Value>>,
    form_id: Option<String>,
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRelationship {
    identifiers: Map<String, Value>,
    relationship_attributes: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDevice {
    token: Option<String>,
    id: Option<String>,
    platform: Option<String>,
    last_used: Option<i64>,
    attributes: Option<Map<String, Value>>,
}

pub(super) fn decode(bytes: &[u8]) -> Result<Operation, DecodeError> {
    let wire: WireEntry = serde_json::from_slice(bytes)?;
    Ok(convert(wire)?)
}

pub(super) fn decode_str(text: &str) -> Result<Operation, DecodeError> {
    let wire: WireEntry = serde_json::from_str(text)?;
    Ok(convert(wire)?)
}

pub(super) fn decode_value(value: Value) -> Result<Operation, DecodeError> {
    let wire = WireEntry::deserialize(&value)?;
    Ok(convert(wire)?)
}

fn missing(field: &str) -> ValidationError {
    ValidationError::Missing {
        field: field.to_owned(),
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ValidationError {
    ValidationError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn convert(mut w: WireEntry<'_>) -> Result<Operation, ValidationError> {
    let entry_type = w.entry_type.clone().ok_or_else(|| missing("type"))?;
    let action = w.action.take().ok_or_else(|| missing("action"))?;
    match &*entry_type {
        "person" => person(&action, w),
        "object" => object(&action, w),
        "delivery" => delivery(&action, w),
        "segment" => segment(&action, w),
        "form" => form(&action, w),
        other => Err(invalid(
            "type",
            format!(
                "unknown entry type {other:?}; expected person, object, delivery, segment or form"
            ),
        )),
    }
}

fn person(action: &str, mut w: WireEntry<'_>) -> Result<Operation, ValidationError> {
    refuse_data(&w, action)?;
    let op = match action {
        "identify" => Operation::Identify(Identify {
            identifier: person_id("identifiers", w.identifiers.take())?,
            attributes: object_or_empty("attributes", w.attributes.take())?,
            relationships: relationships(w.cio_relationships.take(), Side::Object)?,
            timestamp: w.timestamp,
        }),
        "delete" => Operation::Delete(person_id("identifiers", w.identifiers.take())?),
        "suppress" => Operation::Suppress(person_id("identifiers", w.identifiers.take())?),
        "unsuppress" => Operation::Unsuppress(person_id("identifiers", w.identifiers.take())?),
        "event" | "page" | "screen" => {
            let subject = match (w.identifiers.take(), w.anonymous_id.take()) {
                (Some(ids), None) => EventSubject::Person(person_id("identifiers", Some(ids))?),
                (None, Some(anon)) => EventSubject::Anonymous(anon),
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "identifiers",
                        "give either identifiers or anonymous_id, not both",
                    ))
                }
                (None, None) => {
                    return Err(invalid(
                        "identifiers",
                        "an event needs identifiers (or anonymous_id for an anonymous event)",
                    ))
                }
            };
            Operation::Event(Event {
                subject,
                kind: match action {
                    "page" => EventKind::Page,
                    "screen" => EventKind::Screen,
                    _ => EventKind::Event,
                },
                name: w.name.take().ok_or_else(|| missing("name"))?,
                id: w.id.take(),
                timestamp: w.timestamp,
                data: object_or_empty("attributes", w.attributes.take())?,
            })
        }
        "add_relationships" | "delete_relationships" => {
            let r = PersonRelationships {
                identifier: person_id("identifiers", w.identifiers.take())?,
                relationships: relationships(
                    Some(
                        w.cio_relationships
                            .take()
                            .ok_or_else(|| missing("cio_relationships"))?,
                    ),
                    Side::Object,
                )?,
            };
            if action == "add_relationships" {
                Operation::AddRelationships(r)
            } else {
                Operation::DeleteRelationships(r)
            }
        }
        "add_device" | "delete_device" => {
            let identifier = person_id("identifiers", w.identifiers.take())?;
            let d = w.device.take().ok_or_else(|| missing("device"))?;
            if d.id.is_some() {
                return Err(invalid(
                    "device.id",
                    "the v2 entry names the device token `device.token` (v1 called it `id`)",
                ));
            }
            let token = d.token.ok_or_else(|| missing("device.token"))?;
            if action == "add_device" {
                Operation::AddDevice(AddDevice {
                    identifier,
                    device: Device {
                        token,
                        platform: d.platform,
                        last_used: d.last_used,
                        attributes: d.attributes.unwrap_or_default(),
                    },
                })
            } else {
                Operation::DeleteDevice(DeleteDevice { identifier, token })
            }
        }
        "merge" => {
            if w.identifiers.is_some() {
                return Err(invalid(
                    "identifiers",
                    "a merge names `primary` and `secondary`, not `identifiers`",
                ));
            }
            let primary = merge_side("primary", w.primary.take())?;
            let secondary = merge_side("secondary", w.secondary.take())?;
            Operation::Merge(Merge { primary, secondary })
        }
        other => {
            return Err(invalid(
                "action",
                format!(
                "unknown person action {other:?}; expected identify, delete, event, page, screen, \
                     add_relationships, delete_relationships, add_device, delete_device, merge, \
                     suppress or unsuppress"
            ),
            ))
        }
    };
    refuse_leftovers(&w, action)?;
    Ok(op)
}

fn object(action: &str, mut w: WireEntry<'_>) -> Result<Operation, ValidationError> {
    let identifier = object_id("identifiers", w.identifiers.take())?;
    let op = match action {
        "identify" => Operation::ObjectIdentify(ObjectIdentify {
            identifier,
            attributes: object_or_empty("attributes", w.attributes.take())?,
            relationships: relationships(w.cio_relationships.take(), Side::Person)?,
        }),
        "delete" => Operation::ObjectDelete(identifier),
        "add_relationships" | "delete_relationships" => {
            let r = ObjectRelationships {
                identifier,
                relationships: relationships(
                    Some(
                        w.cio_relationships
                            .take()
                            .ok_or_else(|| missing("cio_relationships"))?,
                    ),
                    Side::Person,
                )?,
            };
            if action == "add_relationships" {
                Operation::ObjectAddRelationships(r)
            } else {
                Operation::ObjectDeleteRelationships(r)
            }
        }
        other => {
            return Err(invalid(
                "action",
                format!(
                    "unknown object action {other:?}; expected identify, delete, \
                     add_relationships or delete_relationships"
                ),
            ))
        }
    };
    refuse_leftovers(&w, action)?;
    Ok(op)
}

fn delivery(action: &str, mut w: WireEntry<'_>) -> Result<Operation, ValidationError> {
    if action != "event" {
        return Err(invalid(
            "action",
            format!("unknown delivery action {action:?}; expected event"),
        ));
    }
    let ids = w.identifiers.take().ok_or_else(|| missing("identifiers"))?;
    let delivery_id = match (ids.len(), ids.get("id")) {
        (1, Some(v)) => scalar_string("identifiers.id", v)?,
        _ => {
            return Err(invalid(
                "identifiers",
                "a delivery entry is identified by exactly {\"id\": <delivery id>}",
            ))
        }
    };
    let mut attributes = object_or_empty("attributes", w.attributes.take())?;
    let device_token = match attributes.remove("device_token") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(invalid("attributes.device_token", "must be a string")),
    };
    let op = Operation::DeliveryEvent(DeliveryEvent {
        delivery_id,
        metric: w.name.take().ok_or_else(|| missing("name"))?,
        timestamp: w.timestamp,
        device_token,
        attributes,
    });
    refuse_leftovers(&w, action)?;
    Ok(op)
}

fn segment(action: &str, mut w: WireEntry<'_>) -> Result<Operation, ValidationError> {
    let change = match action {
        "add_customers" => SegmentChange::Add,
        "remove_customers" => SegmentChange::Remove,
        other => {
            return Err(invalid(
                "action",
                format!(
                    "unknown segment action {other:?}; expected add_customers or remove_customers"
                ),
            ))
        }
    };
    let id_type = match w.id_type.take().as_deref() {
        None => None,
        Some("id") => Some(SegmentIdType::Id),
        Some("email") => Some(SegmentIdType::Email),
        Some("cio_id") => Some(SegmentIdType::CioId),
        Some(other) => {
            return Err(invalid(
                "id_type",
                format!("unknown id_type {other:?}; expected id, email or cio_id"),
            ))
        }
    };
    let ids = w
        .ids
        .take()
        .ok_or_else(|| missing("ids"))?
        .iter()
        .enumerate()
        .map(|(i, v)| scalar_string(&format!("ids[{i}]"), v))
        .collect::<Result<Vec<_>, _>>()?;
    let op = Operation::SegmentMembership(SegmentMembership {
        segment_id: w.segment_id.take().ok_or_else(|| missing("segment_id"))?,
        change,
        id_type,
        ids,
    });
    refuse_leftovers(&w, action)?;
    Ok(op)
}

fn form(action: &str, mut w: WireEntry<'_>) -> Result<Operation, ValidationError> {
    if action != "submit" {
        return Err(invalid(
            "action",
            format!("unknown form action {action:?}; expected submit"),
        ));
    }
    let op = Operation::FormSubmit(FormSubmit {
        form_id: w.form_id.take().ok_or_else(|| missing("form_id"))?,
        data: object_or_empty("data", w.data.take())?,
    });
    refuse_leftovers(&w, action)?;
    Ok(op)
}

/// v1 puts event data in `data`; v2 in `attributes`. Sending `data` in a v2 entry loses it.
fn refuse_data(w: &WireEntry<'_>, action: &str) -> Result<(), ValidationError> {
    if w.data.is_some() {
        return Err(invalid(
            "data",
            format!("a v2 {action} entry carries its data in `attributes`, not `data`"),
        ));
    }
    Ok(())
}

/// Fields that parsed but mean nothing for this action would be silently dropped: refuse them.
fn refuse_leftovers(w: &WireEntry<'_>, action: &str) -> Result<(), ValidationError> {
    let present = [
        ("identifiers", w.identifiers.is_some()),
        ("anonymous_id", w.anonymous_id.is_some()),
        ("attributes", w.attributes.is_some()),
        ("cio_relationships", w.cio_relationships.is_some()),
        ("name", w.name.is_some()),
        ("id", w.id.is_some()),
        ("device", w.device.is_some()),
        ("primary", w.primary.is_some()),
        ("secondary", w.secondary.is_some()),
        ("segment_id", w.segment_id.is_some()),
        ("id_type", w.id_type.is_some()),
        ("ids", w.ids.is_some()),
        ("form_id", w.form_id.is_some()),
        ("data", w.data.is_some()),
    ];
    let keeps_timestamp = matches!(action, "identify" | "event" | "page" | "screen")
        && w.entry_type.as_deref() != Some("object");
    let timestamp = [("timestamp", w.timestamp.is_some() && !keeps_timestamp)];
    match present.iter().chain(timestamp.iter()).find(|(_, is)| *is) {
        Some((field, _)) => Err(invalid(
            field,
            format!(
                "not a field of {} {action} entry; it would be ignored",
                article(action)
            ),
        )),
        None => Ok(()),
    }
}

fn object_or_empty(field: &str, v: Option<Value>) -> Result<Attributes, ValidationError> {
    match v {
        None => Ok(Attributes::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(invalid(
            field,
            format!("must be a JSON object, found {}", json_kind(&other)),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Identifier values may be strings or integers (ids are often numeric); both become strings.
fn scalar_string(field: &str, v: &Value) -> Result<String, ValidationError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(invalid(
            field,
            format!("must be a string or an integer, found {}", json_kind(other)),
        )),
    }
}

fn person_id(
    field: &str,
    ids: Option<Map<String, Value>>,
) -> Result<PersonIdentifier, ValidationError> {
    let ids = ids.ok_or_else(|| missing(field))?;
    if ids.len() != 1 {
        return Err(ValidationError::IdentifierCount {
            field: field.to_owned(),
            expected: "one of id, email, phone, cio_id",
            found: ids.keys().cloned().collect(),
        });
    }
    // Taken out of the map, not cloned: on the hot path of every decoded line. Field names for
    // errors are formatted only when there is an error.
    let Some((key, value)) = ids.into_iter().next() else {
        return Err(missing(field));
    };
    let value = match value {
        Value::String(s) => s,
        other => scalar_string(&format!("{field}.{key}"), &other)?,
    };
    PersonIdentifier::from_key(&key, value).ok_or_else(|| {
        invalid(
            &format!("{field}.{key}"),
            "unknown person identifier; expected id, email, phone or cio_id",
        )
    })
}

fn merge_side(
    field: &str,
    ids: Option<Map<String, Value>>,
) -> Result<PersonIdentifier, ValidationError> {
    let id = person_id(field, ids)?;
    if let PersonIdentifier::Phone(_) = id {
        return Err(invalid(
            &format!("{field}.phone"),
            "a merge identifies people by id, email or cio_id",
        ));
    }
    Ok(id)
}

fn object_id(
    field: &str,
    ids: Option<Map<String, Value>>,
) -> Result<ObjectIdentifier, ValidationError> {
    let ids = ids.ok_or_else(|| missing(field))?;
    let keys: Vec<String> = ids.keys().cloned().collect();
    let wrong = || ValidationError::IdentifierCount {
        field: field.to_owned(),
        expected: "object_type_id and object_id, or cio_object_id",
        found: keys.clone(),
    };
    match ids.len() {
        1 => match ids.get("cio_object_id") {
            Some(v) => Ok(ObjectIdentifier::CioObjectId(scalar_string(
                &format!("{field}.cio_object_id"),
                v,
            )?)),
            None => Err(wrong()),
        },
        2 => match (ids.get("object_type_id"), ids.get("object_id")) {
            (Some(t), Some(o)) => Ok(ObjectIdentifier::Object {
                object_type_id: scalar_string(&format!("{field}.object_type_id"), t)?,
                object_id: scalar_string(&format!("{field}.object_id"), o)?,
            }),
            _ => Err(wrong()),
        },
        _ => Err(wrong()),
    }
}

#[derive(Clone, Copy)]
enum Side {
    Person,
    Object,
}

fn relationships(
    rels: Option<Vec<WireRelationship>>,
    side: Side,
) -> Result<Vec<Relationship>, ValidationError> {
    let Some(rels) = rels else {
        return Ok(Vec::new());
    };
    rels.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let field = format!("cio_relationships[{i}].identifiers");
            let target = match side {
                Side::Object => RelationshipTarget::Object(object_id(&field, Some(r.identifiers))?),
                Side::Person => RelationshipTarget::Person(person_id(&field, Some(r.identifiers))?),
            };
            Ok(Relationship {
                target,
                relationship_attributes: r.relationship_attributes,
            })
        })
        .collect()
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
