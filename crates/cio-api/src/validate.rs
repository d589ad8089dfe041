//! Customer.io's limits, checked before anything is sent.
//!
//! Every size is measured on the bytes that go on the wire: an attribute value's size is the
//! length of its compact JSON text (for a string, the escaped text between the quotes), event data
//! is the length of the `attributes` object's JSON, an entry is its encoded JSON, a batch is the
//! whole `{"batch":[...]}` body. Sizes are computed without serializing twice ([`json_len`]).

use serde_json::Value;

use crate::operation::{EventSubject, Operation};
use crate::{Attributes, PersonIdentifier};

/// Customer.io's Track limits. The defaults are the documented ones; every one is a setting
/// because Customer.io documents some loosely (an event name is 100 bytes on one page and 500
/// characters on another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A person or object identifier, in bytes.
    pub identifier_bytes: usize,
    /// An attribute name, in bytes.
    pub attribute_name_bytes: usize,
    /// An attribute value, in bytes of JSON.
    pub attribute_value_bytes: usize,
    /// Attributes per identify call.
    pub attributes_per_call: usize,
    /// An event name, in bytes.
    pub event_name_bytes: usize,
    /// Event data (the whole object), in bytes of JSON.
    pub event_data_bytes: usize,
    /// One v2 entry (and one Pipelines call), in bytes of JSON.
    pub entry_bytes: usize,
    /// One v2 batch request body (and one Pipelines batch), in bytes.
    pub batch_bytes: usize,
    /// Ids in one segment add/remove request.
    pub segment_ids: usize,
}

impl Limits {
    /// The most entry bytes a batch may carry: [`Limits::batch_bytes`] less the
    /// `{"batch":[` `]}` envelope. Use it as the batch layer's `max_weight` with
    /// `Operation`'s weight (its size plus a comma).
    pub fn batch_weight(&self) -> usize {
        // Entries weigh one comma more than they take (the last one has none).
        self.batch_bytes.saturating_sub(br#"{"batch":[]}"#.len()) + 1
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            identifier_bytes: 150,
            attribute_name_bytes: 150,
            attribute_value_bytes: 1000,
            attributes_per_call: 300,
            event_name_bytes: 100,
            event_data_bytes: 100_000,
            entry_bytes: 32 * 1024,
            batch_bytes: 500 * 1024,
            segment_ids: 1000,
        }
    }
}

/// An input that breaks one of Customer.io's rules, naming the field, the limit and the actual
/// size. Retrying cannot help: fix the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A required field is absent.
    #[error("{field} is required")]
    Missing {
        /// The field, as a path (`identifiers`, `device.token`, `batch[3].name`).
        field: String,
    },
    /// A field that must have content is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: String,
    },
    /// A field is larger than Customer.io accepts.
    #[error("{field} is {actual} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The field.
        field: String,
        /// The limit, in bytes.
        limit: usize,
        /// The size found, in bytes as sent.
        actual: usize,
    },
    /// A list or map has more members than Customer.io accepts.
    #[error("{field} has {actual} {what}, over the limit of {limit}")]
    TooMany {
        /// The field.
        field: String,
        /// What was counted (`attributes`, `ids`, `recipients`).
        what: &'static str,
        /// The limit.
        limit: usize,
        /// The count found.
        actual: usize,
    },
    /// Not exactly one identifier.
    #[error("{field} must hold exactly {expected}; found {}", found_list(.found))]
    IdentifierCount {
        /// The field.
        field: String,
        /// What is expected.
        expected: &'static str,
        /// The keys found.
        found: Vec<String>,
    },
    /// A value of the wrong kind or shape.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong, and what would be right.
        reason: String,
    },
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        "none".to_owned()
    } else {
        found.join(", ")
    }
}

impl ValidationError {
    /// The field at fault, as a path.
    pub fn field(&self) -> &str {
        match self {
            ValidationError::Missing { field }
            | ValidationError::Empty { field }
            | ValidationError::TooLarge { field, .. }
            | ValidationError::TooMany { field, .. }
            | ValidationError::IdentifierCount { field, .. }
            | ValidationError::Invalid { field, .. } => field,
        }
    }

    /// The limit that was exceeded, when a limit was.
    pub fn limit(&self) -> Option<usize> {
        match self {
            ValidationError::TooLarge { limit, .. } | ValidationError::TooMany { limit, .. } => {
                Some(*limit)
            }
            _ => None,
        }
    }

    /// The actual size or count, when a limit was exceeded.
    pub fn actual(&self) -> Option<usize> {
        match self {
            ValidationError::TooLarge { actual, .. } | ValidationError::TooMany { actual, .. } => {
                Some(*actual)
            }
            _ => None,
        }
    }

    /// The same error with `prefix.` in front of its field (for entries inside a batch).
    pub fn within(mut self, prefix: &str) -> Self {
        let field = match &mut self {
            ValidationError::Missing { field }
            | ValidationError::Empty { field }
            | ValidationError::TooLarge { field, .. }
            | ValidationError::TooMany { field, .. }
            | ValidationError::IdentifierCount { field, .. }
            | ValidationError::Invalid { field, .. } => field,
        };
        *field = format!("{prefix}.{field}");
        self
    }

    /// A short machine-readable reason (`missing`, `empty`, `too_large`, `too_many`,
    /// `identifiers`, `invalid`), as the mock reports in `errors[].reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::Missing { .. } => "missing",
            ValidationError::Empty { .. } => "empty",
            ValidationError::TooLarge { .. } => "too_large",
            ValidationError::TooMany { .. } => "too_many",
            ValidationError::IdentifierCount { .. } => "identifiers",
            ValidationError::Invalid { .. } => "invalid",
        }
    }
}

/// The length of `s` as a JSON string's content (between the quotes), escapes included, exactly
/// as serde_json writes it.
pub fn escaped_len(s: &str) -> usize {
    let mut n = s.len();
    for &b in s.as_bytes() {
        if b < 0x20 {
            n += match b {
                b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                _ => 5,
            };
        } else if b == b'"' || b == b'\\' {
            n += 1;
        }
    }
    n
}

/// The length of `v`'s compact JSON text, exactly as serde_json writes it, without allocating.
pub fn json_len(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => number_len(n),
        Value::String(s) => escaped_len(s) + 2,
        Value::Array(a) => 2 + a.iter().map(json_len).sum::<usize>() + a.len().saturating_sub(1),
        Value::Object(m) => object_len(m),
    }
}

fn object_len(m: &Attributes) -> usize {
    2 + m
        .iter()
        .map(|(k, v)| escaped_len(k) + 3 + json_len(v))
        .sum::<usize>()
        + m.len().saturating_sub(1)
}

fn number_len(n: &serde_json::Number) -> usize {
    serialized_len(n)
}

/// The length of `value`'s compact JSON, counted as it is written, without a buffer.
pub fn serialized_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

/// The size of an attribute value as sent: a string's escaped content, anything else its JSON.
fn value_len(v: &Value) -> usize {
    match v {
        Value::String(s) => escaped_len(s),
        other => json_len(other),
    }
}

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

    /// Validates this operation as a v2 entry and appends its JSON to `out`. On error `out` is
    /// left as it was.
    pub fn encode_entry(&self, limits: &Limits, out: &mut Vec<u8>) -> Result<(), ValidationError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_len_matches_serde_json() {
        let samples = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-12345),
            json!(u64::MAX),
            json!(1.5),
            json!(1e300),
            json!("plain"),
            json!("quote\" back\\ nl\n tab\t bell\u{7} é ü 😀"),
            json!([1, "two", [3], {"four": 4}]),
            json!({"a": {"b": [null, false, "x\u{1}y"]}, "": ""}),
        ];
        for v in samples {
            assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len(), "{v}");
        }
    }
}
