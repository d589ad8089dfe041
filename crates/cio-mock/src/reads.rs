//! The App API's reads of people, answered from what the mock kept ([`crate::store`]):
//!
//! | call (official SDK name) | request | answer |
//! |---|---|---|
//! | `getCustomersByEmail` | `GET /v1/customers?email=` | `{"results":[{id, email, cio_id}]}` |
//! | `getAttributes` | `GET /v1/customers/{id}/attributes?id_type=` | `{"customer":{id, identifiers, attributes, timestamps, unsubscribed, devices}}` |
//! | `getCustomersAttributes` | `POST /v1/customers/attributes?id_type=` `{"ids":[...]}` (1 to 100 ids) | `{"customers":[{"customer":{...}}]}`, the people found |
//! | `getCustomerSegments` | `GET /v1/customers/{id}/segments?id_type=` | `{"segments":[{id, name, type, ...}]}` |
//! | `getCustomerActivities` | `GET /v1/customers/{id}/activities?id_type=&type=&name=&limit=&start=` | `{"activities":[...], "next":""}`, newest first |
//!
//! The shapes are those of Customer.io's App API reference
//! (<https://docs.customer.io/integrations/api/app/>, the Customers pages: getPeopleEmail,
//! getPersonAttributes, getPeopleById, getPersonSegments, getPersonActivities).
//!
//! `id_type` is `id` (default), `email`, `phone` or `cio_id`; emails match without regard to
//! case. A person the mock does not hold (never sent, deleted, suppressed, or evicted past the
//! caps) is a 404, as Customer.io answers an unknown person. Query values are decoded as forms
//! are: `%2B` is a `+` and a bare `+` a space, so an email with a `+` sent unencoded finds no
//! one, as Customer.io warns (getPeopleEmail: "Unencoded special characters can return empty
//! results without an error"). Reads count against the App API's rate limit like every App
//! call.

use bytes::Bytes;
use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::answer::{json, meta_error, Answer};
use crate::app::bad;
use crate::state::State;
use crate::store::{Lookup, Store};

/// The most ids `getCustomersAttributes` takes in one request (Customer.io's limit).
pub(crate) const MAX_IDS: usize = 100;

/// The most activities one page holds, and how many without a `limit`.
const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 10;

/// The value of `key` in a query string, percent-decoded.
pub(crate) fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn not_found(what: &str) -> Answer {
    meta_error(StatusCode::NOT_FOUND, format!("{what} not found"))
}

/// `segs`: the path below `/v1/`, percent-decoded, starting with `customers`.
pub(crate) fn route(
    state: &State,
    method: &Method,
    segs: &[String],
    query: Option<&str>,
    body: &Bytes,
) -> Answer {
    let Some(store) = &state.store else {
        return meta_error(
            StatusCode::NOT_IMPLEMENTED,
            "this mock keeps no state (started with keep_state off / --no-state): reads are not answered",
        );
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["customers"]) => {
            let Some(email) = query_value(query, "email").filter(|e| !e.is_empty()) else {
                return bad(state, "email is required: GET /v1/customers?email=...");
            };
            json(StatusCode::OK, &json!({"results": store.by_email(&email)}))
        }
        (&Method::POST, ["customers", "attributes"]) => {
            customers_attributes(state, store, query, body)
        }
        (&Method::GET, ["customers", id, what @ ("attributes" | "segments" | "activities")]) => {
            let id_type = query_value(query, "id_type");
            let Some(who) = Lookup::new(id, id_type.as_deref()) else {
                return bad(
                    state,
                    format!(
                        "unknown id_type {:?}; expected id, email, phone or cio_id",
                        id_type.unwrap_or_default()
                    ),
                );
            };
            match *what {
                "attributes" => match store.customer(&who) {
                    Some(c) => json(StatusCode::OK, &json!({ "customer": c })),
                    None => not_found("customer"),
                },
                "segments" => match store.segments(&who) {
                    Some(ids) => json(
                        StatusCode::OK,
                        &json!({"segments": ids.into_iter().map(segment_json).collect::<Vec<_>>()}),
                    ),
                    None => not_found("customer"),
                },
                _ => activities(state, store, &who, query),
            }
        }
        (_, ["customers", ..]) => meta_error(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint: {method} /v1/{} (the mock answers GET customers?email=, \
                 GET customers/{{id}}/attributes|segments|activities, POST customers/attributes)",
                segs.join("/")
            ),
        ),
        _ => meta_error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// A manual segment as Customer.io lists one (the mock knows segments only by id).
fn segment_json(id: u64) -> Value {
    json!({
        "id": id,
        "deduplicate_id": format!("{id}:0"),
        "name": format!("Segment {id}"),
        "description": "",
        "state": "finished",
        "progress": null,
        "type": "manual",
        "tags": null,
    })
}

fn customers_attributes(state: &State, store: &Store, query: Option<&str>, body: &Bytes) -> Answer {
    #[derive(serde::Deserialize)]
    struct Ids {
        ids: Vec<Value>,
    }
    let ids = match serde_json::from_slice::<Ids>(body) {
        Ok(b) => b.ids,
        Err(e) => {
            return bad(
                state,
                format!("expected {{\"ids\":[\"id\", ...]}} with 1 to {MAX_IDS} ids: {e}"),
            )
        }
    };
    if ids.is_empty() || ids.len() > MAX_IDS {
        return bad(
            state,
            format!("ids holds {} ids; 1 to {MAX_IDS} are allowed", ids.len()),
        );
    }
    let id_type = query_value(query, "id_type");
    if Lookup::new("x", id_type.as_deref()).is_none() {
        return bad(
            state,
            format!(
                "unknown id_type {:?}; expected id, email, phone or cio_id",
                id_type.unwrap_or_default()
            ),
        );
    }
    let mut customers = Vec::with_capacity(ids.len());
    for id in ids {
        let id = match id {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => return bad(state, format!("ids must be strings, got {other}")),
        };
        if let Some(c) = Lookup::new(&id, id_type.as_deref()).and_then(|who| store.customer(&who)) {
            // Each wrapped, as the reference's example shows: {"customers":[{"customer":{..}}]}.
            customers.push(json!({ "customer": c }));
        }
    }
    json(StatusCode::OK, &json!({ "customers": customers }))
}

fn activities(state: &State, store: &Store, who: &Lookup, query: Option<&str>) -> Answer {
    let number = |key: &str, default: usize| match query_value(query, key) {
        None => Ok(default),
        Some(v) if v.is_empty() => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| format!("{key} must be a whole number, got {v:?}")),
    };
    let (limit, start) = match (number("limit", DEFAULT_LIMIT), number("start", 0)) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => return bad(state, e),
    };
    if limit == 0 || limit > MAX_LIMIT {
        return bad(
            state,
            format!("limit must be 1 to {MAX_LIMIT}, got {limit}"),
        );
    }
    let kind = query_value(query, "type");
    let name = query_value(query, "name");
    match store.activities(who, kind.as_deref(), name.as_deref(), start, limit) {
        Some((page, next)) => json(
            StatusCode::OK,
            &json!({
                "activities": page,
                "next": next.map(|n| n.to_string()).unwrap_or_default(),
            }),
        ),
        None => not_found("customer"),
    }
}
