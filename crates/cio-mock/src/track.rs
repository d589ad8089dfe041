//! Track v1 and v2 endpoints: each request is parsed into a `cio_api::Operation` and checked with
//! the same validation as the client, then answered the way Customer.io answers. A v2 entry in
//! the form the client sends is checked in one pass over its bytes instead
//! ([`cio_api::raw::vouch`], which takes only what the full check would take).

use bytes::Bytes;
use cio_api::{
    AddDevice, DeleteDevice, DeliveryEvent, Device, Event, EventKind, EventSubject, FormSubmit,
    Identify, Merge, Operation, PersonIdentifier, SegmentChange, SegmentIdType, SegmentMembership,
};
use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

use crate::answer::{json, meta_error, Answer};
use crate::state::State;
use crate::store::Change;

/// Which v1 error body shape an endpoint uses.
#[derive(Clone, Copy)]
enum Shape {
    /// `{"meta":{"error":"..."}}`.
    Error,
    /// `{"meta":{"errors":["..."]}}` (devices, segments).
    Errors,
}

fn bad_request(shape: Shape, message: impl Into<String>) -> Answer {
    match shape {
        Shape::Error => meta_error(StatusCode::BAD_REQUEST, message),
        Shape::Errors => json(
            StatusCode::BAD_REQUEST,
            &json!({"meta": {"errors": [message.into()]}}),
        ),
    }
}

pub(crate) fn route(
    state: &State,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &Bytes,
) -> Answer {
    if let Some(rest) = path.strip_prefix("/api/v2/") {
        return match (method, rest) {
            (&Method::POST, "batch") => v2_batch(state, body),
            (&Method::POST, "entity") => v2_entity(state, body),
            _ => meta_error(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {method} {path} (v2 has POST /api/v2/batch and /api/v2/entity)"),
            ),
        };
    }
    if let Some(delivery_id) = path.strip_prefix("/unsubscribe/") {
        let delivery_id = percent_decode_str(delivery_id).decode_utf8_lossy();
        return unsubscribe(state, method, &delivery_id, body);
    }
    let rest = path.strip_prefix("/api/v1").unwrap_or(path);
    let raw: Vec<&str> = rest.split('/').skip(1).collect();
    let mut segs = Vec::with_capacity(raw.len());
    for s in &raw {
        match percent_decode_str(s).decode_utf8() {
            Ok(d) => segs.push(d.into_owned()),
            Err(_) => {
                return bad_request(
                    Shape::Error,
                    format!("path segment {s:?} is not UTF-8 once decoded"),
                )
            }
        }
    }
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if segs == ["accounts", "region"] && method == Method::GET {
        return json(
            StatusCode::OK,
            &json!({"url": "https://track.customer.io", "region": "us", "environment_id": 1}),
        );
    }
    let parsed = parse_v1(method, &segs, query, body);
    let (op, shape) = match parsed {
        Parsed::Op(op, shape) => (op, shape),
        Parsed::Bad(answer) => {
            state.stats.rejected(1);
            return answer;
        }
        Parsed::Other(answer) => return answer,
    };
    if let Err(e) = op.validate(&state.config.limits) {
        state.stats.rejected(1);
        return bad_request(shape, e.to_string());
    }
    accept(state, std::slice::from_ref(&op));
    let form = matches!(op, Operation::FormSubmit(_));
    state.keep(|| Change::of(op));
    if form {
        json(StatusCode::NO_CONTENT, &Value::Null).map(|_| Default::default())
    } else {
        json(StatusCode::OK, &json!({}))
    }
}

/// `POST /unsubscribe/{delivery_id}` (the Track host's root) with `{"unsubscribe": true|false}`.
fn unsubscribe(state: &State, method: &Method, delivery_id: &str, body: &Bytes) -> Answer {
    if method != Method::POST {
        return meta_error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{method} is not allowed; unsubscribe is POST /api/v1/unsubscribe/{{delivery_id}}"
            ),
        );
    }
    let flag = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("unsubscribe").and_then(Value::as_bool));
    if delivery_id.trim().is_empty() || flag.is_none() {
        state.stats.rejected(1);
        return bad_request(
            Shape::Error,
            "unsubscribe takes a delivery id in the path and a body {\"unsubscribe\": true|false}",
        );
    }
    state.stats.accept([("unsubscribe", None, false)]);
    json(StatusCode::OK, &json!({}))
}

/// Counts accepted operations by kind and records event ids.
pub(crate) fn accept(state: &State, ops: &[Operation]) {
    state.stats.accept(ops.iter().map(|op| {
        (
            op.stat_name(),
            op.event_id(),
            matches!(op, Operation::Event(_)),
        )
    }));
}

/// What the stats keep of an accepted v2 entry: its kind and, for an event, its id.
struct Accepted<'a> {
    kind: &'static str,
    event_id: Option<std::borrow::Cow<'a, str>>,
    is_event: bool,
}

impl<'a> Accepted<'a> {
    fn of(op: &Operation) -> Self {
        Accepted {
            kind: op.stat_name(),
            event_id: op.event_id().map(|id| id.to_owned().into()),
            is_event: matches!(op, Operation::Event(_)),
        }
    }

    fn stat(&self) -> (&'static str, Option<&str>, bool) {
        (self.kind, self.event_id.as_deref(), self.is_event)
    }
}

impl<'a> From<cio_api::raw::Vouched<'a>> for Accepted<'a> {
    fn from(v: cio_api::raw::Vouched<'a>) -> Self {
        Accepted {
            kind: v.kind,
            event_id: v.event_id.map(Into::into),
            is_event: v.is_event,
        }
    }
}

enum Parsed {
    Op(Operation, Shape),
    /// A malformed request (400), counted as rejected.
    Bad(Answer),
    /// Not a write (404, 405).
    Other(Answer),
}

/// The person a v1 path names: `cio_<id>`, an email (contains `@`), or an id.
fn person_from_path(seg: &str) -> PersonIdentifier {
    if let Some(cio) = seg.strip_prefix("cio_") {
        PersonIdentifier::CioId(cio.to_owned())
    } else if seg.contains('@') {
        PersonIdentifier::Email(seg.to_owned())
    } else {
        PersonIdentifier::Id(seg.to_owned())
    }
}

fn body_object(body: &Bytes, shape: Shape) -> Result<Map<String, Value>, Answer> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad_request(shape, "the request body must be a JSON object")),
        Err(e) => Err(bad_request(shape, format!("invalid JSON body: {e}"))),
    }
}

fn take_object(
    m: &mut Map<String, Value>,
    key: &str,
    shape: Shape,
) -> Result<Map<String, Value>, Answer> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(bad_request(shape, format!("{key} must be a JSON object"))),
    }
}

fn take_string(
    m: &mut Map<String, Value>,
    key: &str,
    shape: Shape,
) -> Result<Option<String>, Answer> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(bad_request(shape, format!("{key} must be a string"))),
    }
}

fn take_i64(m: &mut Map<String, Value>, key: &str, shape: Shape) -> Result<Option<i64>, Answer> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad_request(shape, format!("{key} must be an integer (unix seconds)"))),
        Some(_) => Err(bad_request(
            shape,
            format!("{key} must be an integer (unix seconds)"),
        )),
    }
}

fn merge_side(m: &mut Map<String, Value>, key: &str) -> Result<PersonIdentifier, Answer> {
    let Some(Value::Object(side)) = m.remove(key) else {
        return Err(bad_request(
            Shape::Error,
            format!("{key} is required: {{\"id\"|\"email\"|\"cio_id\": value}}"),
        ));
    };
    if side.len() != 1 {
        return Err(bad_request(
            Shape::Error,
            format!("{key} must hold exactly one of id, email, cio_id"),
        ));
    }
    let (k, v) = side.into_iter().next().unwrap_or_default();
    let v = match v {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(bad_request(
                Shape::Error,
                format!("{key}.{k} must be a string"),
            ))
        }
    };
    match k.as_str() {
        "id" => Ok(PersonIdentifier::Id(v)),
        "email" => Ok(PersonIdentifier::Email(v)),
        "cio_id" => Ok(PersonIdentifier::CioId(v)),
        _ => Err(bad_request(
            Shape::Error,
            format!("{key}: unknown identifier {k:?}; expected id, email or cio_id"),
        )),
    }
}

fn event_kind(m: &mut Map<String, Value>) -> Result<EventKind, Answer> {
    match take_string(m, "type", Shape::Error)?.as_deref() {
        None | Some("event") => Ok(EventKind::Event),
        Some("page") => Ok(EventKind::Page),
        Some("screen") => Ok(EventKind::Screen),
        Some(other) => Err(bad_request(
            Shape::Error,
            format!("unknown event type {other:?}; expected event, page or screen"),
        )),
    }
}

fn event(subject: EventSubject, mut m: Map<String, Value>) -> Result<Operation, Answer> {
    let kind = event_kind(&mut m)?;
    let name = take_string(&mut m, "name", Shape::Error)?
        .ok_or_else(|| bad_request(Shape::Error, "name is required"))?;
    Ok(Operation::Event(Event {
        subject,
        kind,
        name,
        id: take_string(&mut m, "id", Shape::Error)?,
        timestamp: take_i64(&mut m, "timestamp", Shape::Error)?,
        data: take_object(&mut m, "data", Shape::Error)?,
    }))
}

fn parse_v1(method: &Method, segs: &[&str], query: Option<&str>, body: &Bytes) -> Parsed {
    match parse_v1_inner(method, segs, query, body) {
        Ok(p) => p,
        Err(a) => Parsed::Bad(a),
    }
}

fn parse_v1_inner(
    method: &Method,
    segs: &[&str],
    query: Option<&str>,
    body: &Bytes,
) -> Result<Parsed, Answer> {
    let e = Shape::Error;
    let op = match (method.as_str(), segs) {
        ("PUT", ["customers", id]) => {
            let mut m = body_object(body, e)?;
            let timestamp = take_i64(&mut m, "_timestamp", e)?;
            // v1 wraps the list: {"action":"add_relationships","relationships":[...]}.
            let relationships = match m.remove("cio_relationships") {
                None => Vec::new(),
                Some(Value::Object(mut wrapped)) => {
                    let v = wrapped.remove("relationships").unwrap_or(Value::Null);
                    let entry = json!({"type": "person", "identifiers": {"id": "x"}, "action": "add_relationships", "cio_relationships": v});
                    match Operation::from_value(entry) {
                        Ok(Operation::AddRelationships(r)) => r.relationships,
                        Ok(_) => Vec::new(),
                        Err(err) => return Err(bad_request(e, err.to_string())),
                    }
                }
                Some(_) => {
                    return Err(bad_request(
                        e,
                        "cio_relationships must be {\"action\":\"add_relationships\",\"relationships\":[...]}",
                    ))
                }
            };
            (
                Operation::Identify(Identify {
                    identifier: person_from_path(id),
                    attributes: m,
                    relationships,
                    timestamp,
                }),
                e,
            )
        }
        ("DELETE", ["customers", id]) => (Operation::Delete(person_from_path(id)), e),
        ("POST", ["customers", id, "suppress"]) => (Operation::Suppress(person_from_path(id)), e),
        ("POST", ["customers", id, "unsuppress"]) => {
            (Operation::Unsuppress(person_from_path(id)), e)
        }
        ("POST", ["customers", id, "events"]) => (
            event(
                EventSubject::Person(person_from_path(id)),
                body_object(body, e)?,
            )?,
            e,
        ),
        ("POST", ["events"]) => {
            let mut m = body_object(body, e)?;
            let anon = take_string(&mut m, "anonymous_id", e)?.unwrap_or_default();
            (event(EventSubject::Anonymous(anon), m)?, e)
        }
        ("PUT", ["customers", id, "devices"]) => {
            let s = Shape::Errors;
            let mut m = body_object(body, s)?;
            let mut d = take_object(&mut m, "device", s)?;
            let token = take_string(&mut d, "id", s)?
                .ok_or_else(|| bad_request(s, "device.id is required"))?;
            (
                Operation::AddDevice(AddDevice {
                    identifier: person_from_path(id),
                    device: Device {
                        token,
                        platform: take_string(&mut d, "platform", s)?,
                        last_used: take_i64(&mut d, "last_used", s)?,
                        attributes: take_object(&mut d, "attributes", s)?,
                    },
                }),
                s,
            )
        }
        ("DELETE", ["customers", id, "devices", token]) => (
            Operation::DeleteDevice(DeleteDevice {
                identifier: person_from_path(id),
                token: (*token).to_owned(),
            }),
            Shape::Errors,
        ),
        ("POST", ["merge_customers"]) => {
            let mut m = body_object(body, e)?;
            let primary = merge_side(&mut m, "primary")?;
            let secondary = merge_side(&mut m, "secondary")?;
            (Operation::Merge(Merge { primary, secondary }), e)
        }
        ("POST", ["segments", sid, verb @ ("add_customers" | "remove_customers")]) => {
            let s = Shape::Errors;
            let segment_id = sid
                .parse::<u64>()
                .map_err(|_| bad_request(s, format!("segment id {sid:?} is not a number")))?;
            let id_type = match query
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("id_type=")))
            {
                None => None,
                Some("id") => Some(SegmentIdType::Id),
                Some("email") => Some(SegmentIdType::Email),
                Some("cio_id") => Some(SegmentIdType::CioId),
                Some(other) => return Err(bad_request(s, format!("unknown id_type {other:?}"))),
            };
            let mut m = body_object(body, s)?;
            let ids = match m.remove("ids") {
                Some(Value::Array(a)) => a
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        Value::Number(n) => Ok(n.to_string()),
                        _ => Err(bad_request(s, "ids must be strings")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => {
                    return Err(bad_request(
                        s,
                        "ids is required: an array of 1 to 1000 identifiers",
                    ))
                }
            };
            (
                Operation::SegmentMembership(SegmentMembership {
                    segment_id,
                    change: if *verb == "add_customers" {
                        SegmentChange::Add
                    } else {
                        SegmentChange::Remove
                    },
                    id_type,
                    ids,
                }),
                s,
            )
        }
        ("POST", ["metrics"]) => {
            let mut m = body_object(body, e)?;
            let delivery_id = take_string(&mut m, "delivery_id", e)?
                .ok_or_else(|| bad_request(e, "delivery_id is required"))?;
            let metric = take_string(&mut m, "metric", e)?
                .ok_or_else(|| bad_request(e, "metric is required"))?;
            let timestamp = take_i64(&mut m, "timestamp", e)?;
            (
                Operation::DeliveryEvent(DeliveryEvent {
                    delivery_id,
                    metric,
                    timestamp,
                    device_token: None,
                    attributes: m,
                }),
                e,
            )
        }
        ("POST", ["push", "events"]) => {
            let mut m = body_object(body, e)?;
            let delivery_id = take_string(&mut m, "delivery_id", e)?
                .ok_or_else(|| bad_request(e, "delivery_id is required"))?;
            let metric = take_string(&mut m, "event", e)?
                .ok_or_else(|| bad_request(e, "event is required"))?;
            let device_token = take_string(&mut m, "device_id", e)?;
            let timestamp = take_i64(&mut m, "timestamp", e)?;
            (
                Operation::DeliveryEvent(DeliveryEvent {
                    delivery_id,
                    metric,
                    timestamp,
                    device_token,
                    attributes: m,
                }),
                e,
            )
        }
        ("POST", ["forms", form_id, "submit"]) => {
            let mut m = body_object(body, e)?;
            (
                Operation::FormSubmit(FormSubmit {
                    form_id: (*form_id).to_owned(),
                    data: take_object(&mut m, "data", e)?,
                }),
                e,
            )
        }
        ("POST", ["customers", _]) => {
            return Ok(Parsed::Other(meta_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "identify is PUT /api/v1/customers/{id}, not POST",
            )))
        }
        (
            _,
            ["customers", ..]
            | ["events"]
            | ["merge_customers"]
            | ["segments", ..]
            | ["metrics"]
            | ["push", "events"]
            | ["forms", ..],
        ) => {
            return Ok(Parsed::Other(meta_error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on this endpoint"),
            )))
        }
        _ => {
            return Ok(Parsed::Other(meta_error(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {method} /api/v1/{}", segs.join("/")),
            )))
        }
    };
    Ok(Parsed::Op(op.0, op.1))
}

/// One v2 entry: parsed, validated with the client's rules, measured as sent.
/// `entry` is the entry's text as sent: its size is measured on those bytes.
/// Checks one v2 entry as Customer.io does. An entry the one-pass check of
/// [`cio_api::raw::vouch`] can judge (what the client sends) is not parsed; any other entry is
/// parsed and validated in full, which also words the error.
fn check_entry<'a>(
    state: &State,
    entry: &'a str,
) -> Result<Accepted<'a>, (String, String, String)> {
    let size = entry.len();
    let limits = &state.config.limits;
    if let Some(v) = cio_api::raw::vouch(entry.as_bytes(), limits) {
        if size <= limits.entry_bytes {
            return Ok(v.into());
        }
    }
    let op = Operation::from_json_str(entry).map_err(|e| {
        let field = e.field().unwrap_or("entry").to_owned();
        let reason = match &e {
            cio_api::DecodeError::Invalid(v) => v.reason(),
            cio_api::DecodeError::Json(_) => "invalid",
        };
        (reason.to_owned(), field, e.to_string())
    })?;
    // The client's own v2 rules, delivery metric names included.
    op.validate_entry(&state.config.limits)
        .map_err(|e| (e.reason().to_owned(), e.field().to_owned(), e.to_string()))?;
    if size > state.config.limits.entry_bytes {
        return Err((
            "too_large".into(),
            "entry".into(),
            format!(
                "entry is {size} bytes, over the limit of {} bytes",
                state.config.limits.entry_bytes
            ),
        ));
    }
    Ok(Accepted::of(&op))
}

fn v2_invalid(field: &str, message: String) -> Answer {
    json(
        StatusCode::BAD_REQUEST,
        &json!({"errors": [{"reason": "invalid", "field": field, "message": message}]}),
    )
}

fn v2_batch(state: &State, body: &Bytes) -> Answer {
    /// The body, with each entry kept as the text that was sent (parsed once, measured as sent).
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Vec<&'a serde_json::value::RawValue>,
    }
    let limits = &state.config.limits;
    // A body as our client writes it, every entry canonical: split and checked in one pass.
    if let Some(entries) = cio_api::raw::vouch_batch(body, limits) {
        if entries
            .iter()
            .all(|(text, _)| text.len() <= limits.entry_bytes)
        {
            state.stats.accept(
                entries
                    .iter()
                    .map(|(_, v)| (v.kind, v.event_id, v.is_event)),
            );
            state.keep(|| {
                entries
                    .iter()
                    .filter_map(|(text, _)| Change::of_entry(text))
            });
            return json(StatusCode::OK, &json!({}));
        }
    }
    let entries = match serde_json::from_slice::<Batch<'_>>(body) {
        Ok(b) => b.batch,
        Err(e) => {
            state.stats.rejected(1);
            return v2_invalid("batch", format!("expected {{\"batch\":[entry, ...]}}: {e}"));
        }
    };
    let mut errors = Vec::new();
    let mut accepted = Vec::with_capacity(entries.len());
    let mut kept = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        match check_entry(state, entry.get()) {
            Ok(op) => {
                accepted.push(op);
                kept.push(entry.get());
            }
            Err((reason, field, message)) => errors.push(json!({
                "batch_index": i, "reason": reason, "field": field, "message": message
            })),
        }
    }
    state.stats.accept(accepted.iter().map(Accepted::stat));
    state.keep(|| kept.iter().filter_map(|text| Change::of_entry(text)));
    if errors.is_empty() {
        json(StatusCode::OK, &json!({}))
    } else {
        state.stats.rejected(errors.len() as u64);
        json(StatusCode::MULTI_STATUS, &json!({ "errors": errors }))
    }
}

fn v2_entity(state: &State, body: &Bytes) -> Answer {
    let entry = match std::str::from_utf8(body) {
        Ok(text) => text.trim(),
        Err(e) => {
            state.stats.rejected(1);
            return v2_invalid("entity", format!("the body is not UTF-8: {e}"));
        }
    };
    match check_entry(state, entry) {
        Ok(accepted) => {
            state.stats.accept([accepted.stat()]);
            state.keep(|| Change::of_entry(entry));
            json(StatusCode::OK, &json!({}))
        }
        Err((reason, field, message)) => {
            state.stats.rejected(1);
            json(
                StatusCode::BAD_REQUEST,
                &json!({"errors": [{"reason": reason, "field": field, "message": message}]}),
            )
        }
    }
}
