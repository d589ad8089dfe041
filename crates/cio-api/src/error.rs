//! One error type for every client, with [`Error::is_retryable`] and [`Error::retry_after`].

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::limits::ValidationError;

/// The status codes the official SDKs retry: 408, 429, 500, 502, 503, 504, 522, 524.
pub const RETRYABLE_STATUSES: &[u16] = &[408, 429, 500, 502, 503, 504, 522, 524];

/// Everything that can go wrong talking to Customer.io.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks a Customer.io limit; nothing was sent.
    #[error("invalid input: {0}")]
    Validation(#[from] ValidationError),
    /// This client cannot send this operation (a v2-only operation on v1, or the reverse).
    #[error("{operation} cannot be sent this way: {reason}")]
    Unsupported {
        /// The operation (its stat name).
        operation: &'static str,
        /// Why, and what to use instead.
        reason: String,
    },
    /// Customer.io answered with an error status.
    #[error("{}", api_message(*.status, .message))]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// Customer.io's error message (from `meta.error`, `meta.errors` or `errors[]`).
        message: String,
        /// The `Retry-After` hint, when the server gave one.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the request timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// Could not connect (refused, DNS, TLS handshake).
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// Where to.
        url: String,
        /// What the OS or TLS said.
        reason: String,
    },
    /// The connection broke while sending or receiving.
    #[error("connection to {url} failed: {reason}")]
    Transport {
        /// Where to.
        url: String,
        /// What happened.
        reason: String,
    },
    /// A redirect to a host outside `*.customer.io` (or too many redirects): not followed, so
    /// no credentials leave for another host.
    #[error("refused to follow redirect to {location}: {reason}")]
    Redirect {
        /// The `Location` the server gave.
        location: String,
        /// Why it was not followed.
        reason: &'static str,
    },
    /// A retryable failure of a non-idempotent request (a transactional send) that may have
    /// reached Customer.io: retrying could send the message twice, so it is not retried.
    #[error(
        "{0} (not retried: the outcome is unknown, and the message may already have gone out)"
    )]
    NotRetryable(Box<Error>),
    /// A 2xx whose body is not what the API documents.
    #[error("unexpected response body ({status}): {reason}")]
    InvalidResponse {
        /// The HTTP status.
        status: StatusCode,
        /// What was wrong with it.
        reason: String,
    },
}

fn api_message(status: StatusCode, message: &str) -> String {
    if message.is_empty() {
        format!("Customer.io answered {status}")
    } else {
        format!("Customer.io answered {status}: {message}")
    }
}

impl Error {
    /// Whether trying again can help: 408, 429, 500, 502, 503, 504, 522, 524, connection
    /// failures and timeouts (the official SDKs' set). 400, 401, 403, 404 and 413 are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => RETRYABLE_STATUSES.contains(&status.as_u16()),
            Error::Timeout(_) | Error::Connect { .. } | Error::Transport { .. } => true,
            Error::Validation(_)
            | Error::Unsupported { .. }
            | Error::Redirect { .. }
            | Error::NotRetryable(_)
            | Error::InvalidResponse { .. } => false,
        }
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } | Error::InvalidResponse { status, .. } => Some(*status),
            Error::NotRetryable(e) => e.status(),
            _ => None,
        }
    }

    pub(crate) fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        Error::Api {
            status,
            message: error_message(body),
            retry_after: parse_retry_after(headers, SystemTime::now()),
        }
    }
}

/// Reads `Retry-After` in both forms: delay-seconds (`"2"`) or an HTTP date. A date in the past
/// gives zero.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let raw = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = raw.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Customer.io's error message from any of its body shapes: `{"meta":{"error":"..."}}`,
/// `{"meta":{"errors":[...]}}`, `{"errors":[{"reason","field","message"}]}`; else the raw text.
pub(crate) fn error_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::from_utf8_lossy(&body[..body.len().min(512)])
            .trim()
            .to_owned();
    };
    if let Some(e) = v.pointer("/meta/error").and_then(Value::as_str) {
        return e.to_owned();
    }
    let list = v
        .pointer("/meta/errors")
        .or_else(|| v.get("errors"))
        .and_then(Value::as_array);
    if let Some(list) = list {
        return list
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => {
                    let msg = other.get("message").and_then(Value::as_str);
                    let field = other.get("field").and_then(Value::as_str);
                    let reason = other.get("reason").and_then(Value::as_str);
                    match (field, msg.or(reason)) {
                        (Some(f), Some(m)) => format!("{f}: {m}"),
                        (None, Some(m)) => m.to_owned(),
                        _ => other.to_string(),
                    }
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    v.to_string()
}

/// A configuration mistake (a malformed URL, a missing credential), found before any request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A base URL that does not parse or is not http(s).
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// CA certificates that could not be read or used.
    #[error("cannot use the CA certificates in {location}: {reason}")]
    Certificates {
        /// Where they came from (a file, the system's store).
        location: String,
        /// What is wrong with them.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(&headers("2"), now),
            Some(Duration::from_secs(2))
        );
        let in_5s = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(
            parse_retry_after(&headers(&in_5s), now),
            Some(Duration::from_secs(5))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(
            parse_retry_after(&headers(&past), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&headers("soon"), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_messages_from_every_body_shape() {
        assert_eq!(error_message(br#"{"meta":{"error":"bad id"}}"#), "bad id");
        assert_eq!(error_message(br#"{"meta":{"errors":["a","b"]}}"#), "a; b");
        assert_eq!(
            error_message(
                br#"{"errors":[{"reason":"invalid","field":"name","message":"too long"}]}"#
            ),
            "name: too long"
        );
        assert_eq!(error_message(b"Unauthorized\n"), "Unauthorized");
    }

    #[test]
    fn retryable_set_is_the_sdks() {
        for s in [408u16, 429, 500, 502, 503, 504, 522, 524] {
            let e = Error::Api {
                status: StatusCode::from_u16(s).unwrap(),
                message: String::new(),
                retry_after: None,
            };
            assert!(e.is_retryable(), "{s}");
        }
        for s in [400u16, 401, 403, 404, 413] {
            let e = Error::Api {
                status: StatusCode::from_u16(s).unwrap(),
                message: String::new(),
                retry_after: None,
            };
            assert!(!e.is_retryable(), "{s}");
        }
        assert!(Error::Timeout(Duration::from_secs(1)).is_retryable());
    }
}
