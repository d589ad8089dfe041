//! Where requests go: the US or EU data centre, or custom base URLs (the mock, a proxy).

use http::Uri;

use crate::error::ConfigError;

/// The data centre of a Customer.io workspace, or custom base URLs.
///
/// Each API has its own host; a [`Region`] resolves all of them. `Custom` is for the mock server
/// (`Region::custom("http://127.0.0.1:7070")` serves every API from one port, as the mock does) and
/// for proxies.
///
/// ```
/// use cio_api::Region;
/// let mock = Region::custom("http://127.0.0.1:7070").unwrap();
/// assert_eq!(mock.track_base(), "http://127.0.0.1:7070/api");
/// assert_eq!(Region::Eu.app_base(), "https://api-eu.customer.io/v1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Region {
    /// `track.customer.io`, `api.customer.io`, `cdp.customer.io`.
    #[default]
    Us,
    /// `track-eu.customer.io`, `api-eu.customer.io`, `cdp-eu.customer.io`.
    Eu,
    /// Custom base URLs, one per API, without trailing slash.
    Custom(CustomEndpoints),
}

/// Base URLs for a [`Region::Custom`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomEndpoints {
    /// Base of the Track API, to which `/v1/...` and `/v2/...` are appended (e.g. `http://host/api`).
    pub track: String,
    /// Base of the App API (e.g. `http://host/v1`).
    pub app: String,
    /// Base of the Pipelines API (e.g. `http://host/v1`).
    pub pipelines: String,
}

impl Region {
    /// All three APIs served from one origin laid out like the mock server:
    /// Track under `/api`, App and Pipelines under `/v1`.
    ///
    /// Plain `http` is accepted here on purpose (the mock, a local proxy); the origin must parse
    /// as an absolute URL with a host.
    pub fn custom(origin: &str) -> Result<Region, ConfigError> {
        let origin = parse_origin(origin)?;
        Ok(Region::Custom(CustomEndpoints {
            track: format!("{origin}/api"),
            app: format!("{origin}/v1"),
            pipelines: format!("{origin}/v1"),
        }))
    }

    /// Parses `us`, `eu` (case-insensitive) or an `http(s)://` origin.
    pub fn parse(s: &str) -> Result<Region, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "us" => Ok(Region::Us),
            "eu" => Ok(Region::Eu),
            _ => Region::custom(s),
        }
    }

    /// Base URL of the Track API (`.../api`; the client appends `/v1/...` or `/v2/...`).
    pub fn track_base(&self) -> &str {
        match self {
            Region::Us => "https://track.customer.io/api",
            Region::Eu => "https://track-eu.customer.io/api",
            Region::Custom(c) => &c.track,
        }
    }

    /// Base URL of the App API (transactional messages, broadcasts).
    pub fn app_base(&self) -> &str {
        match self {
            Region::Us => "https://api.customer.io/v1",
            Region::Eu => "https://api-eu.customer.io/v1",
            Region::Custom(c) => &c.app,
        }
    }

    /// Base URL of the Pipelines (CDP) API.
    pub fn pipelines_base(&self) -> &str {
        match self {
            Region::Us => "https://cdp.customer.io/v1",
            Region::Eu => "https://cdp-eu.customer.io/v1",
            Region::Custom(c) => &c.pipelines,
        }
    }
}

/// Checks that `origin` is an absolute `http`/`https` URL with a host and returns it without a
/// trailing slash.
fn parse_origin(origin: &str) -> Result<String, ConfigError> {
    let trimmed = origin.trim_end_matches('/');
    let uri: Uri = trimmed.parse().map_err(|e| ConfigError::InvalidUrl {
        url: origin.to_owned(),
        reason: format!("{e}"),
    })?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(ConfigError::InvalidUrl {
                url: origin.to_owned(),
                reason: "expected a URL starting with http:// or https://".into(),
            })
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::InvalidUrl {
            url: origin.to_owned(),
            reason: "the URL has no host".into(),
        });
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_origin_lays_out_like_the_mock() {
        let r = Region::custom("http://127.0.0.1:7070/").unwrap();
        assert_eq!(r.track_base(), "http://127.0.0.1:7070/api");
        assert_eq!(r.app_base(), "http://127.0.0.1:7070/v1");
        assert_eq!(r.pipelines_base(), "http://127.0.0.1:7070/v1");
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        for bad in ["127.0.0.1:7070", "ftp://x", "http://", "not a url"] {
            let err = Region::custom(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert_eq!(Region::parse("EU").unwrap(), Region::Eu);
    }
}
