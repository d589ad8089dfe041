//! App API (transactional sends, broadcast triggers) and Pipelines endpoints.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cio_api::{CallKind, MessageKind, PipelinesCall, TransactionalMessage};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::answer::{json, meta_error, Answer};
use crate::state::State;
use crate::store::Change;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A 400 for a malformed App API request, counted as rejected.
pub(crate) fn bad(state: &State, message: impl Into<String>) -> Answer {
    state.stats.rejected(1);
    meta_error(StatusCode::BAD_REQUEST, message)
}

pub(crate) fn route_app(
    state: &State,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &Bytes,
) -> Answer {
    let rest = path.strip_prefix("/v1/").unwrap_or(path);
    if rest == "customers" || rest.starts_with("customers/") {
        let segs: Vec<String> = rest
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        return crate::reads::route(state, method, &segs, query, body);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::POST, ["send", kind]) => {
            let Some(kind) = MessageKind::parse(kind) else {
                return meta_error(
                    StatusCode::NOT_FOUND,
                    format!("no such channel {kind:?}; expected email, push, sms, whatsapp, inbox_message or in_app"),
                );
            };
            let msg: TransactionalMessage = match serde_json::from_slice(body) {
                Ok(m) => m,
                Err(e) => return bad(state, format!("invalid request body: {e}")),
            };
            if let Err(e) = msg.validate(kind) {
                return bad(state, e.to_string());
            }
            state.stats.accept([(send_stat(kind), None, false)]);
            let id = NEXT_ID.fetch_add(1, Relaxed);
            json(
                StatusCode::OK,
                &json!({"delivery_id": format!("mock-{id:016x}"), "queued_at": now()}),
            )
        }
        (&Method::POST, ["campaigns", id, "triggers"]) => {
            let Ok(campaign_id) = id.parse::<u64>() else {
                return meta_error(
                    StatusCode::NOT_FOUND,
                    format!("campaign id {id:?} is not a number"),
                );
            };
            let trigger_body = if body.is_empty() {
                cio_api::Attributes::new()
            } else {
                match serde_json::from_slice::<Value>(body) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => return bad(state, "the request body must be a JSON object"),
                    Err(e) => return bad(state, format!("invalid JSON body: {e}")),
                }
            };
            let trigger = cio_api::BroadcastTrigger {
                campaign_id,
                body: trigger_body,
            };
            if let Err(e) = trigger.validate() {
                // Customer.io answers a trigger it cannot act on (no recipients) with 422.
                state.stats.rejected(1);
                return meta_error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
            }
            if let Some(wait) = state.broadcast_wait(campaign_id) {
                state
                    .stats
                    .rate_limited
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut r = meta_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "broadcast {campaign_id} was triggered less than {} s ago: one trigger per broadcast every {} s",
                        state.config.broadcast_interval.as_secs(),
                        state.config.broadcast_interval.as_secs()
                    ),
                );
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
                );
                return r;
            }
            state.stats.accept([("broadcast_trigger", None, false)]);
            json(
                StatusCode::OK,
                &json!({"id": NEXT_ID.fetch_add(1, Relaxed)}),
            )
        }
        _ => meta_error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {method} {path}"),
        ),
    }
}

fn send_stat(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Email => "send_email",
        MessageKind::Push => "send_push",
        MessageKind::Sms => "send_sms",
        MessageKind::Whatsapp => "send_whatsapp",
        MessageKind::InboxMessage => "send_inbox_message",
        MessageKind::InApp => "send_in_app",
    }
}

fn cdp_stat(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Identify => "cdp_identify",
        CallKind::Track => "cdp_track",
        CallKind::Page => "cdp_page",
        CallKind::Screen => "cdp_screen",
        CallKind::Group => "cdp_group",
        CallKind::Alias => "cdp_alias",
    }
}

/// Customer.io answers an over-size Pipelines request with 200 and drops it: so does the mock.
fn oversize(state: &State) -> Answer {
    state.stats.oversize_ignored.fetch_add(1, Relaxed);
    json(StatusCode::OK, &json!({}))
}

/// An invalid Pipelines call: 400 in strict mode (`X-Strict-Mode: 1`); otherwise 200 and
/// dropped, counted in `ignored`, as Customer.io does.
fn invalid(state: &State, strict: bool, message: String) -> Answer {
    if strict {
        return bad(state, message);
    }
    state.stats.ignored.fetch_add(1, Relaxed);
    json(StatusCode::OK, &json!({}))
}

pub(crate) fn route_pipelines(
    state: &State,
    method: &Method,
    path: &str,
    strict: bool,
    body: &Bytes,
) -> Answer {
    if method != Method::POST {
        return meta_error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed; Pipelines calls are POST"),
        );
    }
    let name = path.strip_prefix("/v1/").unwrap_or(path);
    let limits = &state.config.limits;
    if name == "batch" {
        if body.len() > limits.batch_bytes {
            return oversize(state);
        }
        #[derive(serde::Deserialize)]
        struct Batch {
            batch: Vec<PipelinesCall>,
        }
        let batch: Batch = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return invalid(state, strict, format!("invalid batch: {e}")),
        };
        let mut kinds = Vec::with_capacity(batch.batch.len());
        for (i, call) in batch.batch.iter().enumerate() {
            let Some(kind) = call.kind else {
                return invalid(state, strict, format!("batch[{i}].type is required"));
            };
            if let Err(e) = call.validate(kind, &format!("batch[{i}].")) {
                return invalid(state, strict, e.to_string());
            }
            kinds.push((cdp_stat(kind), None, false));
        }
        state.stats.accept(kinds);
        state.keep(|| {
            batch
                .batch
                .into_iter()
                .filter_map(|c| c.kind.and_then(|k| Change::of_call(k, c)))
        });
        return json(StatusCode::OK, &json!({}));
    }
    let Some(kind) = CallKind::parse(name) else {
        return meta_error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {method} {path}"),
        );
    };
    if body.len() > limits.entry_bytes {
        return oversize(state);
    }
    let call: PipelinesCall = match serde_json::from_slice(body) {
        Ok(c) => c,
        Err(e) => return invalid(state, strict, format!("invalid request body: {e}")),
    };
    if let Err(e) = call.validate(kind, "") {
        return invalid(state, strict, e.to_string());
    }
    state.stats.accept([(cdp_stat(kind), None, false)]);
    state.keep(|| Change::of_call(kind, call));
    json(StatusCode::OK, &json!({}))
}
