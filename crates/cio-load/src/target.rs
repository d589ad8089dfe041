//! Where a load test sends its requests, and with which credentials.
//!
//! | endpoint | what | credentials |
//! |---|---|---|
//! | `mock` (default) | an embedded mock Customer.io, started by the caller (`cio load` starts one) | any |
//! | `http(s)://host:port` | a mock, a proxy or your own service laid out like Customer.io | from the environment if set, else placeholders |
//! | `us`, `eu` | the real Customer.io | required, from the environment: `CIO_SITE_ID`, `CIO_API_KEY` (Track) and `CIO_APP_KEY` (App API, for transactional) |
//!
//! Aiming at the real Customer.io needs explicit credentials and is checked against the
//! workspace's rate limit you configure ([`crate::config::TargetSpec::workspace_rate_limit`]):
//! a plan whose request rate exceeds it gets a warning before anything is sent.

use cio_api::{
    AppClient, AppCredentials, BatchClient, ClientOptions, Region, TrackClient, TrackCredentials,
    Transport,
};

use crate::LoadError;

/// The environment variable holding the Track site id.
pub const ENV_SITE_ID: &str = "CIO_SITE_ID";
/// The environment variable holding the Track API key.
pub const ENV_API_KEY: &str = "CIO_API_KEY";
/// The environment variable holding the App API key.
pub const ENV_APP_KEY: &str = "CIO_APP_KEY";

/// Where requests go, as written in a scenario file or on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Endpoint {
    /// An embedded mock.
    #[default]
    Mock,
    /// A base URL (mock layout: Track under `/api`, App under `/v1`).
    Url(String),
    /// Customer.io, US region.
    Us,
    /// Customer.io, EU region.
    Eu,
}

impl Endpoint {
    /// Parses `mock`, `us`, `eu` or an `http(s)://` URL.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mock" => Ok(Endpoint::Mock),
            "us" => Ok(Endpoint::Us),
            "eu" => Ok(Endpoint::Eu),
            _ => Region::custom(s)
                .map(|_| Endpoint::Url(s.trim().to_owned()))
                .map_err(|e| format!("{e}; expected mock, us, eu or an http(s):// URL")),
        }
    }

    /// Whether this is the real Customer.io.
    pub fn is_customer_io(&self) -> bool {
        matches!(self, Endpoint::Us | Endpoint::Eu)
    }

    /// `mock`, `us`, `eu` or the URL.
    pub fn as_str(&self) -> &str {
        match self {
            Endpoint::Mock => "mock",
            Endpoint::Url(u) => u,
            Endpoint::Us => "us",
            Endpoint::Eu => "eu",
        }
    }
}

/// Credentials read from the environment (or given in code). Secrets never reach `Debug`.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// Track credentials, when both the site id and the API key are set.
    pub track: Option<TrackCredentials>,
    /// App API credentials, when set.
    pub app: Option<AppCredentials>,
}

impl Credentials {
    /// Reads `CIO_SITE_ID`, `CIO_API_KEY` and `CIO_APP_KEY`; empty values count as unset.
    pub fn from_env() -> Credentials {
        let var = |k| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Credentials {
            track: match (var(ENV_SITE_ID), var(ENV_API_KEY)) {
                (Some(site), Some(key)) => Some(TrackCredentials::new(site, key)),
                _ => None,
            },
            app: var(ENV_APP_KEY).map(AppCredentials::new),
        }
    }
}

/// A resolved target: the region and credentials every client of the test shares, over one
/// pooled transport.
#[derive(Clone, Debug)]
pub struct Connection {
    region: Region,
    track: TrackCredentials,
    app: AppCredentials,
    transport: Transport,
    options: ClientOptions,
}

impl Connection {
    /// A connection with the default client options (10 s request timeout).
    pub fn new(region: Region, track: TrackCredentials, app: AppCredentials) -> Connection {
        Connection::with_options(region, track, app, ClientOptions::default())
    }

    /// A connection with these client options.
    pub fn with_options(
        region: Region,
        track: TrackCredentials,
        app: AppCredentials,
        options: ClientOptions,
    ) -> Connection {
        Connection {
            region,
            track,
            app,
            transport: Transport::new(&options),
            options,
        }
    }

    /// Resolves `endpoint` with `credentials`. `mock_url` is the embedded mock's address, needed
    /// for [`Endpoint::Mock`]. The real Customer.io requires Track credentials (and App
    /// credentials when `needs_app`); elsewhere missing ones are replaced by placeholders.
    /// `options` set the request timeout ([`crate::Plan::client_options`]).
    pub fn resolve(
        endpoint: &Endpoint,
        mock_url: Option<&str>,
        credentials: Credentials,
        needs_app: bool,
        options: ClientOptions,
    ) -> Result<Connection, LoadError> {
        let region = match endpoint {
            Endpoint::Mock => {
                let url = mock_url.ok_or_else(|| {
                    LoadError::Target(
                        "the mock target needs a running mock; start one and pass its URL".into(),
                    )
                })?;
                Region::custom(url).map_err(|e| LoadError::Target(e.to_string()))?
            }
            Endpoint::Url(url) => {
                Region::custom(url).map_err(|e| LoadError::Target(e.to_string()))?
            }
            Endpoint::Us => Region::Us,
            Endpoint::Eu => Region::Eu,
        };
        if endpoint.is_customer_io() {
            if credentials.track.is_none() {
                return Err(LoadError::Target(format!(
                    "aiming at the real Customer.io ({}) needs explicit credentials: set {ENV_SITE_ID} and {ENV_API_KEY} (a test workspace's, not production's)",
                    endpoint.as_str()
                )));
            }
            if needs_app && credentials.app.is_none() {
                return Err(LoadError::Target(format!(
                    "the plan sends transactional messages: set {ENV_APP_KEY} to an App API key of a test workspace"
                )));
            }
        }
        Ok(Connection::with_options(
            region,
            credentials
                .track
                .unwrap_or_else(|| TrackCredentials::new("load-test", "load-test")),
            credentials
                .app
                .unwrap_or_else(|| AppCredentials::new("load-test")),
            options,
        ))
    }

    /// The region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// A Track v1 client on the shared transport.
    pub fn track_client(&self) -> TrackClient {
        TrackClient::builder(self.region.clone(), self.track.clone())
            .options(self.options.clone())
            .transport(self.transport.clone())
            .build()
    }

    /// A Track v2 batch client on the shared transport.
    pub fn batch_client(&self) -> BatchClient {
        BatchClient::builder(self.region.clone(), self.track.clone())
            .options(self.options.clone())
            .transport(self.transport.clone())
            .build()
    }

    /// An App API client on the shared transport, without the client's own retries or rate
    /// limit: an iteration is one request, sent when the scenario says, so a 429 or a 5xx is
    /// counted as the answer it was.
    pub fn app_client(&self) -> AppClient {
        AppClient::builder(self.region.clone(), self.app.clone())
            .options(self.options.clone())
            .transport(self.transport.clone())
            .build()
            .retries(None)
            .rate_limit(None)
    }
}
