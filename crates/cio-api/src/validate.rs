//! Validation: an [`Operation`] checked field by field against Customer.io's [`Limits`],
//! before anything is sent.
//!
//! Every size is measured on the bytes that go on the wire: an attribute value's size is the
//! length of its compact JSON text (for a string, the escaped text between the quotes), event data
//! is the length of the `attributes` object's JSON ([`crate::size`]). The entry and batch sizes
//! depend on the encoding and are checked there ([`crate::encode`]).
//!
//! The modules, one concept each: [`crate::limits`] (the limits and the error naming a broken
//! one, knowing nothing of operations), [`crate::size`] (bytes on the wire without
//! serializing), this one (the checks), [`crate::encode`] (validated entries and batch bodies,
//! encoded once). Dependencies go one way: `limits` <- `operation` <- `validate` <- `encode`.

use crate::operation::{EventSubject, Operation};
use crate::size::{object_len, value_len};
use crate::{Attributes, PersonIdentifier};

pub use crate::limits::{Limits, ValidationError};
pub use crate::size::{escaped_len, json_len, serialized_len};

/// Not empty and at most `limit` bytes as sent. The field name is only built on failure: this runs
/// for every attribute of every entry.
fn check_len(field: impl FnOnce() -> String, s: &str, limit: usize) -> Result<(), ValidationError> {
    if s.is_empty() {
        return Err(ValidationError::Empty { field: field() });
    }
    let actual = escaped_len(s);
    if actual > limit {
        return Err(ValidationError::TooLarge {
            field: field(),
            limit,
            actual,
        });
    }
    Ok(())
}

/// Checks a person identifier: not empty, at most `limits.identifier_bytes`.
pub fn check_person(
    field: &str,
    p: &PersonIdentifier,
    limits: &Limits,
) -> Result<(), ValidationError> {
    check_len(
        || format!("{field}.{}", p.key()),
        p.value(),
        limits.identifier_bytes,
    )
}

/// Checks profile attributes: count, name sizes and value sizes.
pub fn check_attributes(
    field: &str,
    attrs: &Attributes,
    limits: &Limits,
) -> Result<(), ValidationError> {
    if attrs.len() > limits.attributes_per_call {
        return Err(ValidationError::TooMany {
            field: field.to_owned(),
            what: "attributes",
            limit: limits.attributes_per_call,
            actual: attrs.len(),
        });
    }
    for (name, value) in attrs {
        check_len(
            || format!("{field} name {name:?}"),
            name,
            limits.attribute_name_bytes,
        )
        .map_err(|e| match e {
            ValidationError::Empty { .. } => ValidationError::Empty {
                field: format!("{field} name"),
            },
            other => other,
        })?;
        let actual = value_len(value);
        if actual > limits.attribute_value_bytes {
            return Err(ValidationError::TooLarge {
                field: format!("{field}.{name}"),
                limit: limits.attribute_value_bytes,
                actual,
            });
        }
    }
    Ok(())
}

fn check_event_data(
    field: &str,
    data: &Attributes,
    limits: &Limits,
) -> Result<(), ValidationError> {
    let actual = object_len(data);
    if actual > limits.event_data_bytes {
        return Err(ValidationError::TooLarge {
            field: field.to_owned(),
            limit: limits.event_data_bytes,
            actual,
        });
    }
    Ok(())
}

fn check_object(
    field: &str,
    o: &crate::ObjectIdentifier,
    limits: &Limits,
) -> Result<(), ValidationError> {
    match o {
        crate::ObjectIdentifier::Object {
            object_type_id,
            object_id,
        } => {
            check_len(
                || format!("{field}.object_type_id"),
                object_type_id,
                limits.identifier_bytes,
            )?;
            check_len(
                || format!("{field}.object_id"),
                object_id,
                limits.identifier_bytes,
            )
        }
        crate::ObjectIdentifier::CioObjectId(id) => check_len(
            || format!("{field}.cio_object_id"),
            id,
            limits.identifier_bytes,
        ),
    }
}

fn check_relationships(
    rels: &[crate::Relationship],
    limits: &Limits,
) -> Result<(), ValidationError> {
    for (i, r) in rels.iter().enumerate() {
        let field = format!("cio_relationships[{i}].identifiers");
        match &r.target {
            crate::RelationshipTarget::Person(p) => check_person(&field, p, limits)?,
            crate::RelationshipTarget::Object(o) => check_object(&field, o, limits)?,
        }
        if let Some(a) = &r.relationship_attributes {
            check_attributes(
                &format!("cio_relationships[{i}].relationship_attributes"),
                a,
                limits,
            )?;
        }
    }
    Ok(())
}

/// What `/push/events` (a delivery metric with a device token) takes.
pub const PUSH_METRICS: &[&str] = &["opened", "converted", "delivered"];

/// The metrics the v1 `/metrics` endpoint knows; v2 delivery entries accept the first three.
pub const DELIVERY_METRICS: &[&str] = &[
    "opened",
    "converted",
    "delivered",
    "clicked",
    "bounced",
    "spammed",
    "dropped",
    "deferred",
    "failed",
    "undeliverable",
];

impl Operation {
    /// Checks every field-level limit (not the entry size, which depends on the encoding: see
    /// [`Operation::encode_entry`]).
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        match self {
            Operation::Identify(i) => {
                check_person("identifiers", &i.identifier, limits)?;
                check_attributes("attributes", &i.attributes, limits)?;
                check_relationships(&i.relationships, limits)
            }
            Operation::Delete(p) | Operation::Suppress(p) | Operation::Unsuppress(p) => {
                check_person("identifiers", p, limits)
            }
            Operation::Event(e) => {
                match &e.subject {
                    EventSubject::Person(p) => check_person("identifiers", p, limits)?,
                    // An empty anonymous id is an invite event (it needs data.recipient).
                    EventSubject::Anonymous(a) if a.is_empty() => {
                        if !e.data.contains_key("recipient") {
                            return Err(ValidationError::Invalid {
                                field: "anonymous_id".into(),
                                reason: "an empty anonymous_id is an invite event and needs \
                                         attributes.recipient"
                                    .into(),
                            });
                        }
                    }
                    EventSubject::Anonymous(a) => {
                        check_len(|| "anonymous_id".into(), a, limits.identifier_bytes)?
                    }
                }
                check_len(|| "name".into(), &e.name, limits.event_name_bytes)?;
                if let Some(id) = &e.id {
                    check_len(|| "id".into(), id, limits.identifier_bytes)?;
                }
                check_event_data("attributes", &e.data, limits)
            }
            Operation::AddRelationships(r) | Operation::DeleteRelationships(r) => {
                check_person("identifiers", &r.identifier, limits)?;
                if r.relationships.is_empty() {
                    return Err(ValidationError::Empty {
                        field: "cio_relationships".into(),
                    });
                }
                check_relationships(&r.relationships, limits)
            }
            Operation::AddDevice(d) => {
                check_person("identifiers", &d.identifier, limits)?;
                check_len(
                    || "device.token".into(),
                    &d.device.token,
                    limits.attribute_value_bytes,
                )?;
                if let Some(p) = &d.device.platform {
                    if p != "ios" && p != "android" {
                        return Err(ValidationError::Invalid {
                            field: "device.platform".into(),
                            reason: format!("{p:?} is not a platform; expected ios or android"),
                        });
                    }
                }
                check_attributes("device.attributes", &d.device.attributes, limits)
            }
            Operation::DeleteDevice(d) => {
                check_person("identifiers", &d.identifier, limits)?;
                check_len(
                    || "device.token".into(),
                    &d.token,
                    limits.attribute_value_bytes,
                )
            }
            Operation::Merge(m) => {
                for (field, p) in [("primary", &m.primary), ("secondary", &m.secondary)] {
                    if let PersonIdentifier::Phone(_) = p {
                        return Err(ValidationError::Invalid {
                            field: format!("{field}.phone"),
                            reason: "a merge identifies people by id, email or cio_id".into(),
                        });
                    }
                    check_person(field, p, limits)?;
                }
                Ok(())
            }
            Operation::ObjectIdentify(o) => {
                check_object("identifiers", &o.identifier, limits)?;
                check_attributes("attributes", &o.attributes, limits)?;
                check_relationships(&o.relationships, limits)
            }
            Operation::ObjectDelete(o) => check_object("identifiers", o, limits),
            Operation::ObjectAddRelationships(r) | Operation::ObjectDeleteRelationships(r) => {
                check_object("identifiers", &r.identifier, limits)?;
                if r.relationships.is_empty() {
                    return Err(ValidationError::Empty {
                        field: "cio_relationships".into(),
                    });
                }
                check_relationships(&r.relationships, limits)
            }
            Operation::DeliveryEvent(d) => {
                check_len(
                    || "identifiers.id".into(),
                    &d.delivery_id,
                    limits.identifier_bytes,
                )?;
                if d.device_token.is_some() && !PUSH_METRICS.contains(&d.metric.as_str()) {
                    return Err(ValidationError::Invalid {
                        field: "name".into(),
                        reason: format!(
                            "{:?} is not a push metric; /push/events takes {}",
                            d.metric,
                            PUSH_METRICS.join(", ")
                        ),
                    });
                }
                if !DELIVERY_METRICS.contains(&d.metric.as_str()) {
                    return Err(ValidationError::Invalid {
                        field: "name".into(),
                        reason: format!(
                            "{:?} is not a delivery metric; expected one of {}",
                            d.metric,
                            DELIVERY_METRICS.join(", ")
                        ),
                    });
                }
                Ok(())
            }
            Operation::SegmentMembership(s) => {
                if s.ids.is_empty() {
                    return Err(ValidationError::Empty {
                        field: "ids".into(),
                    });
                }
                if s.ids.len() > limits.segment_ids {
                    return Err(ValidationError::TooMany {
                        field: "ids".into(),
                        what: "ids",
                        limit: limits.segment_ids,
                        actual: s.ids.len(),
                    });
                }
                for (i, id) in s.ids.iter().enumerate() {
                    check_len(|| format!("ids[{i}]"), id, limits.identifier_bytes)?;
                }
                Ok(())
            }
            Operation::FormSubmit(f) => {
                check_len(|| "form_id".into(), &f.form_id, limits.identifier_bytes)?;
                check_attributes("data", &f.data, limits)
            }
        }
    }
}
