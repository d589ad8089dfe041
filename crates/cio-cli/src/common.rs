//! What several commands share: where to send, with which credentials, and how to stop.

use std::path::PathBuf;
use std::time::Duration;

use cio_api::{ClientOptions, Region, TlsOptions, TrackCredentials};
use clap::Args;
use serde::Deserialize as _;

/// Where Track requests go and how they authenticate.
#[derive(Args, Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetArgs {
    /// Send to this endpoint (the mock, a proxy): `http://127.0.0.1:7070`. Conflicts with --region.
    #[arg(
        long,
        env = "CIO_ENDPOINT",
        value_name = "URL",
        conflicts_with = "region"
    )]
    pub endpoint: Option<String>,
    /// Send to Customer.io's US or EU data centre.
    #[arg(long, env = "CIO_REGION", value_name = "us|eu")]
    pub region: Option<String>,
    /// Track site id (or CIO_SITE_ID).
    #[arg(long, env = "CIO_SITE_ID")]
    pub site_id: Option<String>,
    /// Track API key (or CIO_API_KEY; prefer the variable: flags show in `ps`).
    #[arg(long, env = "CIO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    // How connections are made: which CAs https trusts, and how long an attempt may take.
    /// Also trust the CA certificates in this PEM file for https (a staging or TLS-inspecting
    /// proxy's CA, or `cio mock --tls --tls-ca-out FILE`'s).
    #[arg(long, env = "CIO_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Trust the system's certificate store instead of the built-in webpki roots.
    #[arg(long, env = "CIO_NATIVE_ROOTS")]
    #[serde(default)]
    pub native_roots: bool,
    /// Deadline for one request attempt: connect, send, redirects, answer [default: 10s].
    #[arg(long, env = "CIO_REQUEST_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration_opt")]
    pub request_timeout: Option<Duration>,
    /// Deadline for connecting: TCP and the TLS handshake [default: 5s].
    #[arg(long, env = "CIO_CONNECT_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration_opt")]
    pub connect_timeout: Option<Duration>,
}

impl TargetArgs {
    /// The client options these flags ask for, or one line saying what is wrong.
    pub fn client_options(&self) -> Result<ClientOptions, String> {
        let defaults = ClientOptions::default();
        let timeout = self.request_timeout.unwrap_or(defaults.timeout);
        let connect_timeout = self.connect_timeout.unwrap_or(defaults.connect_timeout);
        if timeout.is_zero() || connect_timeout.is_zero() {
            return Err("--request-timeout and --connect-timeout must be more than zero".into());
        }
        Ok(ClientOptions {
            timeout,
            connect_timeout,
            tls: self.tls()?,
            ..defaults
        })
    }

    /// The TLS roots these flags ask for.
    pub fn tls(&self) -> Result<TlsOptions, String> {
        tls_options(self.ca_cert.as_deref(), self.native_roots)
    }
}

/// The TLS roots of `--ca-cert` and `--native-roots`.
pub fn tls_options(
    ca_cert: Option<&std::path::Path>,
    native_roots: bool,
) -> Result<TlsOptions, String> {
    {
        let mut tls = TlsOptions::default();
        if native_roots {
            tls = tls
                .with_native_roots()
                .map_err(|e| format!("--native-roots: {e}"))?;
        }
        if let Some(path) = ca_cert {
            tls = tls.with_ca_file(path).map_err(|e| {
                format!("--ca-cert: {e}\n  hint: give a PEM file of CA certificates, e.g. the one `cio mock --tls --tls-ca-out ca.pem` writes")
            })?;
        }
        Ok(tls)
    }
}

/// A duration in a config file, as on the command line (`30s`, `500ms`).
pub fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

impl TargetArgs {
    /// Flags over `file` (a config file's values), field by field.
    pub fn or(self, file: TargetArgs) -> TargetArgs {
        TargetArgs {
            endpoint: self.endpoint.or(file.endpoint),
            region: self.region.or(file.region),
            site_id: self.site_id.or(file.site_id),
            api_key: self.api_key.or(file.api_key),
            ca_cert: self.ca_cert.or(file.ca_cert),
            native_roots: self.native_roots || file.native_roots,
            request_timeout: self.request_timeout.or(file.request_timeout),
            connect_timeout: self.connect_timeout.or(file.connect_timeout),
        }
    }

    /// The region and credentials, or one line saying what is missing and how to give it.
    pub fn resolve(&self) -> Result<(Region, TrackCredentials), String> {
        let region = match (&self.endpoint, &self.region) {
            (Some(url), _) => Region::custom(url).map_err(|e| {
                format!("{e}\n  hint: --endpoint takes a URL such as http://127.0.0.1:7070")
            })?,
            (None, Some(r)) => match r.to_ascii_lowercase().as_str() {
                "us" => Region::Us,
                "eu" => Region::Eu,
                other => {
                    return Err(format!(
                        "--region {other:?} is not a region\n  hint: use --region us or --region eu, or --endpoint URL"
                    ))
                }
            },
            (None, None) => {
                return Err("no destination: pass --endpoint URL (e.g. the mock, http://127.0.0.1:7070) or --region us|eu".into())
            }
        };
        let (Some(site), Some(key)) = (&self.site_id, &self.api_key) else {
            return Err("missing credentials: pass --site-id and --api-key, or set CIO_SITE_ID and CIO_API_KEY\n  hint: for the mock any values work, e.g. CIO_SITE_ID=site CIO_API_KEY=key".into());
        };
        if site.is_empty() || key.is_empty() {
            return Err("empty credentials: --site-id and --api-key (or CIO_SITE_ID / CIO_API_KEY) must not be empty".into());
        }
        Ok((region, TrackCredentials::new(site.clone(), key.clone())))
    }
}

/// How many requests may be in flight: a number or `auto` (adaptive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcurrencyArg {
    /// At most this many.
    Fixed(usize),
    /// Adaptive (AIMD on latency and back-pressure).
    Auto,
}

impl std::str::FromStr for ConcurrencyArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(ConcurrencyArg::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(ConcurrencyArg::Fixed(n)),
            _ => Err(format!(
                "{s:?} is not a concurrency: give a number of requests (1 or more) or `auto`"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ConcurrencyArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => format!("{n}").parse().map_err(serde::de::Error::custom),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Parses a duration such as `30s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 30s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" | "" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Prints one line to stdout; a closed stdout (the reader went away) is not a reason to fail
/// after the work is done.
pub fn print_line(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_concurrency_parse_with_clear_errors() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").unwrap_err().contains("e.g. 30s"));
        assert_eq!("auto".parse::<ConcurrencyArg>(), Ok(ConcurrencyArg::Auto));
        assert_eq!("8".parse::<ConcurrencyArg>(), Ok(ConcurrencyArg::Fixed(8)));
        assert!("0".parse::<ConcurrencyArg>().is_err());
    }

    #[test]
    fn missing_credentials_say_how_to_give_them() {
        let t = TargetArgs {
            endpoint: Some("http://127.0.0.1:1".into()),
            ..TargetArgs::default()
        };
        let e = t.resolve().unwrap_err();
        assert!(e.contains("CIO_SITE_ID") && e.contains("--api-key"), "{e}");
        let t = TargetArgs {
            endpoint: Some("127.0.0.1:7070".into()),
            site_id: Some("s".into()),
            api_key: Some("k".into()),
            region: None,
            ..TargetArgs::default()
        };
        assert!(t.resolve().unwrap_err().contains("http://"));
    }
}
