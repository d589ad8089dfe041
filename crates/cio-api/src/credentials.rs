//! Credentials for the three auth schemes. None of them ever shows a secret in `Debug`.

use std::fmt;

use base64::Engine as _;
use http::HeaderValue;

/// A secret string: `Debug` and `Display` print `***`, so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself. Call only to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Track API credentials: HTTP Basic `site_id:api_key`.
///
/// ```
/// let c = cio_api::TrackCredentials::new("site", "tracking-key");
/// assert!(!format!("{c:?}").contains("tracking-key"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TrackCredentials {
    /// The workspace's site id (not secret, but shown only in part).
    pub site_id: String,
    /// The tracking API key.
    pub api_key: Secret,
}

impl TrackCredentials {
    /// Credentials from a site id and a tracking API key.
    pub fn new(site_id: impl Into<String>, api_key: impl Into<String>) -> Self {
        TrackCredentials {
            site_id: site_id.into(),
            api_key: Secret::new(api_key),
        }
    }

    /// The `Authorization` header value (marked sensitive so hyper never logs it).
    pub fn header(&self) -> HeaderValue {
        basic(&self.site_id, self.api_key.expose())
    }
}

impl fmt::Debug for TrackCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackCredentials")
            .field("site_id", &self.site_id)
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// App API credentials: `Authorization: Bearer <app_api_key>`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppCredentials {
    /// The App API key.
    pub app_api_key: Secret,
}

impl AppCredentials {
    /// Credentials from an App API key.
    pub fn new(app_api_key: impl Into<String>) -> Self {
        AppCredentials {
            app_api_key: Secret::new(app_api_key),
        }
    }

    /// The `Authorization` header value.
    pub fn header(&self) -> HeaderValue {
        sensitive(format!("Bearer {}", self.app_api_key.expose()))
    }
}

/// Pipelines (CDP) credentials: Basic `write_key:` with an empty password.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PipelinesCredentials {
    /// The source's write key.
    pub write_key: Secret,
}

impl PipelinesCredentials {
    /// Credentials from a write key.
    pub fn new(write_key: impl Into<String>) -> Self {
        PipelinesCredentials {
            write_key: Secret::new(write_key),
        }
    }

    /// The `Authorization` header value.
    pub fn header(&self) -> HeaderValue {
        basic(self.write_key.expose(), "")
    }
}

fn basic(user: &str, password: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    sensitive(format!("Basic {token}"))
}

fn sensitive(value: String) -> HeaderValue {
    // Base64 and printable keys always form a valid header; a key with a control character does
    // not, and then we send an empty value that the server answers with 401 instead of panicking.
    let mut v = HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let t = TrackCredentials::new("site-1", "s3cr3t-track");
        let a = AppCredentials::new("s3cr3t-app");
        let p = PipelinesCredentials::new("s3cr3t-cdp");
        let all = format!("{t:?} {a:?} {p:?} {:?} {}", t.header(), t.api_key);
        assert!(!all.contains("s3cr3t"), "{all}");
        assert!(all.contains("site-1"));
    }

    #[test]
    fn headers_match_the_schemes() {
        let t = TrackCredentials::new("site", "key");
        assert_eq!(t.header(), "Basic c2l0ZTprZXk=");
        assert_eq!(AppCredentials::new("abc").header(), "Bearer abc");
        assert_eq!(PipelinesCredentials::new("wk").header(), "Basic d2s6");
    }
}
