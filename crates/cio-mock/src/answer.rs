//! The answers every module builds: a JSON body with its status, and Customer.io's
//! `{"meta":{"error":...}}` shape.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// An answer, built in full before it is sent.
pub(crate) type Answer = Response<Full<Bytes>>;

/// A JSON answer.
pub(crate) fn json(status: StatusCode, body: &Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `{"meta":{"error":"..."}}`, the v1 and App API error shape.
pub(crate) fn meta_error(status: StatusCode, message: impl Into<String>) -> Answer {
    json(status, &json!({"meta": {"error": message.into()}}))
}
