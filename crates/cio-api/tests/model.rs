//! The model and its validation, offline: what a user sees before anything is sent.
//!
//! | module | what it checks |
//! |---|---|
//! | `limits` | every [`Limits`] boundary: at the limit passes, one byte or item over fails |
//! | `batch` | `encode_batch`: refused entries keep their index, the body holds the others |
//! | `decode` | v2 entry JSON round-trips through [`Operation`]; bad entries name the field |
//! | `v1_fixture` | `to_v1` sends what the official Node SDK sends (recorded fixture) |
//! | `transactional` | App API message rules |
//! | `pipelines` | Pipelines required fields and size limits |
//! | `secrets` | no secret in any `Debug` output |
//!
//! Exact-size inputs are built by padding one string value: [`padding_for`] asserts that each
//! byte of padding adds exactly one measured byte, so the boundary case is exact.
//!
//! The modules live in `tests/model/` (a test target's root looks for modules beside itself,
//! hence the `#[path]`s); `cargo test -p cio-api --test model` runs them all.

#[path = "model/batch.rs"]
mod batch;
#[path = "model/decode.rs"]
mod decode;
#[path = "model/limits.rs"]
mod limits;
#[path = "model/pipelines.rs"]
mod pipelines;
#[path = "model/secrets.rs"]
mod secrets;
#[path = "model/transactional.rs"]
mod transactional;
#[path = "model/v1_fixture.rs"]
mod v1_fixture;

use cio_api::{
    Attributes, DecodeError, Event, EventKind, EventSubject, Identify, Limits, Operation,
    PersonIdentifier, ValidationError,
};
use serde_json::Value;

/// Decodes a v2 entry, failing the test with the decoder's message if it is refused.
fn decode(entry: &Value) -> Operation {
    Operation::from_json(entry.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{entry} was refused: {e}"))
}

/// The validation error a v2 entry is refused with by the decoder.
fn decode_err(entry: &Value) -> ValidationError {
    match Operation::from_json(entry.to_string().as_bytes()) {
        Err(DecodeError::Invalid(e)) => e,
        Err(DecodeError::Json(e)) => {
            panic!("{entry}: expected a validation error, got JSON error {e}")
        }
        Ok(op) => panic!("{entry} was accepted as {op:?}"),
    }
}

/// The error `op` fails the default limits with.
fn validate_err(op: &Operation) -> ValidationError {
    op.validate(&Limits::default())
        .expect_err("expected the operation to break a limit")
}

/// Asserts `op` passes the default limits.
fn assert_valid(op: &Operation) {
    if let Err(e) = op.validate(&Limits::default()) {
        panic!("expected {} to be valid: {e}", op.stat_name());
    }
}

fn too_large(field: &str, limit: usize, actual: usize) -> ValidationError {
    ValidationError::TooLarge {
        field: field.into(),
        limit,
        actual,
    }
}

fn missing(field: &str) -> ValidationError {
    ValidationError::Missing {
        field: field.into(),
    }
}

fn id(v: &str) -> PersonIdentifier {
    PersonIdentifier::Id(v.into())
}

/// Attributes from `(name, value)` pairs.
fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attributes {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn identify(person: PersonIdentifier, attributes: Attributes) -> Operation {
    Operation::Identify(Identify {
        identifier: person,
        attributes,
        relationships: Vec::new(),
        timestamp: None,
    })
}

fn event(subject: EventSubject, name: &str, data: Attributes) -> Operation {
    Operation::Event(Event {
        subject,
        kind: EventKind::Event,
        name: name.into(),
        id: None,
        timestamp: None,
        data,
    })
}

/// The padding that makes `measure(padding)` exactly `target`. Asserts that the fixed part fits
/// and that padding adds exactly one measured byte per byte, so the result is exact.
fn padding_for(target: usize, measure: impl Fn(usize) -> usize) -> usize {
    let base = measure(0);
    assert!(
        base <= target,
        "the fixed part alone is {base} bytes, over {target}"
    );
    let pad = target - base;
    assert_eq!(measure(pad), target, "padding must add one byte per byte");
    pad
}

/// An identify entry whose v2 JSON is exactly `size` bytes: 900-byte attribute values (under the
/// 1000-byte value limit) plus one padded attribute, so it passes every field-level limit.
fn identify_of_size(person: &str, size: usize) -> Operation {
    let build = |chunks: usize, pad: usize| {
        let mut a = Attributes::new();
        for i in 0..chunks {
            a.insert(format!("chunk{i:03}"), Value::String("x".repeat(900)));
        }
        a.insert("pad".into(), Value::String("y".repeat(pad)));
        identify(id(person), a)
    };
    let len = |op: Operation| op.to_json().len();
    let chunk_bytes = len(build(1, 0)) - len(build(0, 0));
    // Whole chunks leave less than one chunk (about 914 bytes) to pad.
    let chunks = (size - len(build(0, 0))) / chunk_bytes;
    let pad = padding_for(size, |pad| len(build(chunks, pad)));
    let op = build(chunks, pad);
    assert_valid(&op);
    op
}
