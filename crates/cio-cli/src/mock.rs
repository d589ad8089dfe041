//! `cio mock`: the mock Customer.io as a process.

use std::net::SocketAddr;

use cio_mock::{Faults, Latency, MockServer};
use clap::Args;

use crate::common::wait_for_signal;

/// Flags of `cio mock`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  cio mock --listen 127.0.0.1:7070 --site-id site --api-key key --track-rate 100 --latency-ms 20,120 --error-rate 0.01\n\n\
Point an SDK or `cio pipe --endpoint http://127.0.0.1:7070` at it; read what it accepted with\n  curl http://127.0.0.1:7070/__mock/stats\n\
and change faults while it runs with\n  curl -X POST http://127.0.0.1:7070/__mock/faults -d '{\"latency_ms\":2000}'\n\n\
Over https, with a CA made at start that clients must trust:\n  \
cio mock --tls --tls-ca-out ca.pem\n  \
curl --cacert ca.pem https://127.0.0.1:7070/__mock/stats\n  \
cio pipe --endpoint https://127.0.0.1:7070 --ca-cert ca.pem ...\n  \
NODE_EXTRA_CA_CERTS=ca.pem node app.js   # the official Node SDK"
)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Serve https with a certificate for 127.0.0.1, ::1 and localhost, signed by a CA made at
    /// start (see --tls-ca-out).
    #[arg(long)]
    tls: bool,
    /// With --tls: write the CA certificate (PEM) that clients must trust to this file.
    #[arg(long, value_name = "FILE", requires = "tls")]
    tls_ca_out: Option<std::path::PathBuf>,
    /// Track site id to require (with --api-key); without it any Basic credentials pass.
    #[arg(long, env = "CIO_SITE_ID", requires = "api_key")]
    site_id: Option<String>,
    /// Track API key to require (with --site-id).
    #[arg(
        long,
        env = "CIO_API_KEY",
        requires = "site_id",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// App API key to require (Bearer).
    #[arg(long, env = "CIO_APP_KEY", hide_env_values = true)]
    app_key: Option<String>,
    /// Pipelines write key to require.
    #[arg(long, env = "CIO_CDP_KEY", hide_env_values = true)]
    cdp_key: Option<String>,
    /// Track requests per second (v1 and v2 together); 0 for no limit.
    #[arg(long, default_value_t = 100)]
    track_rate: u32,
    /// Track burst (requests allowed at once after idling); defaults to the rate.
    #[arg(long)]
    track_burst: Option<u32>,
    /// App API requests per second; 0 for no limit.
    #[arg(long, default_value_t = 10)]
    app_rate: u32,
    /// Added latency in ms: a fixed P50, or P50,P99 for a log-normal tail.
    #[arg(long, value_parser = parse_latency, value_name = "P50[,P99]")]
    latency_ms: Option<Latency>,
    /// Fraction of requests answered 500/502/503 (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    error_rate: f64,
    /// Fraction of requests answered 429 regardless of the limit (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    throttle_rate: f64,
    /// `Retry-After` of the 429s from --throttle-rate, in seconds [default: 1].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    retry_after_s: Option<u64>,
    /// Fraction of connections closed without an answer (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    drop_rate: f64,
    /// Play a host that redirects an account living elsewhere (Customer.io's US host and an EU
    /// workspace): every API request gets `307` to URL plus its path. Requests under URL's own
    /// path are served with it taken off, so `--redirect-to http://127.0.0.1:7070/eu` redirects
    /// to this mock itself.
    #[arg(long, value_name = "URL", value_parser = parse_redirect)]
    redirect_to: Option<hyper::Uri>,
    /// Keep nothing of what is sent, only count it: no App API reads, no /__mock/people
    /// (a little faster, for throughput runs).
    #[arg(long)]
    no_state: bool,
    /// People kept; past it the least recently used go (counted in evicted_people).
    #[arg(long, value_name = "N", default_value_t = cio_mock::StoreLimits::default().people)]
    max_people: usize,
    /// Latest events kept per person (getCustomerActivities).
    #[arg(long, value_name = "N", default_value_t = cio_mock::StoreLimits::default().events_per_person)]
    events_per_person: usize,
    /// Objects kept.
    #[arg(long, value_name = "N", default_value_t = cio_mock::StoreLimits::default().objects)]
    max_objects: usize,
    /// Estimated memory the kept people and objects may take, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = cio_mock::StoreLimits::default().bytes >> 20)]
    state_mib: usize,
    /// The de-duplication window: distinct event ids remembered (an id is known as a duplicate
    /// while among the last half of these, forgotten after all of them).
    #[arg(long, value_name = "N", default_value_t = cio_mock::StoreLimits::default().event_ids)]
    dedup_window: usize,
}

fn parse_redirect(s: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(format!(
            "{s:?}: give an absolute http(s) URL, e.g. https://track-eu.customer.io or http://127.0.0.1:7070/eu"
        ));
    }
    Ok(uri)
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number; give a fraction such as 0.01"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1 (0.01 means 1 %)"))
    }
}

fn parse_latency(s: &str) -> Result<Latency, String> {
    let num = |p: &str| {
        p.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{p:?} is not a number of milliseconds"))
    };
    let l = match s.split_once(',') {
        None => Latency {
            p50: num(s)?,
            p99: None,
        },
        Some((a, b)) => Latency {
            p50: num(a)?,
            p99: Some(num(b)?),
        },
    };
    if l.p99.is_some_and(|p99| p99 < l.p50) {
        return Err(format!(
            "P99 ({}) must not be below P50 ({})",
            l.p99.unwrap_or_default(),
            l.p50
        ));
    }
    Ok(l)
}

pub async fn run(args: MockArgs) -> Result<(), String> {
    let mut builder = MockServer::builder().listen(args.listen);
    if args.tls {
        builder = builder.tls();
    }
    if let (Some(site), Some(key)) = (&args.site_id, &args.api_key) {
        builder = builder.track_credentials(site, key);
    }
    if let Some(k) = &args.app_key {
        builder = builder.app_key(k);
    }
    if let Some(k) = &args.cdp_key {
        builder = builder.pipelines_key(k);
    }
    builder = builder.track_rate(args.track_rate, args.track_burst.unwrap_or(args.track_rate));
    builder = builder
        .app_limit(std::num::NonZeroU32::new(args.app_rate).map(cio_mock::RateLimit::per_second));
    builder = builder.faults(Faults {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        throttle_rate: args.throttle_rate,
        retry_after_s: args.retry_after_s,
        drop_rate: args.drop_rate,
    });
    if let Some(url) = &args.redirect_to {
        builder = builder.redirect_to(url.clone());
    }
    builder = builder
        .keep_state(!args.no_state)
        .store_limits(cio_mock::StoreLimits {
            people: args.max_people,
            events_per_person: args.events_per_person,
            objects: args.max_objects,
            bytes: args.state_mib.saturating_mul(1 << 20),
            event_ids: args.dedup_window,
        });
    let mock = builder.start().await.map_err(|e| match e {
        cio_mock::MockError::Bind { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: the port is already in use\n  hint: stop the other process, or pick another address with --listen 127.0.0.1:PORT (port 0 picks a free one)"
        ),
        other => other.to_string(),
    })?;
    if let (Some(path), Some(pem)) = (&args.tls_ca_out, mock.ca_pem()) {
        // Written before "listening": whoever waits for that line can read the file at once.
        std::fs::write(path, pem)
            .map_err(|e| format!("cannot write --tls-ca-out {}: {e}", path.display()))?;
    }
    println!("listening on {}", mock.url());
    tracing::info!(
        track_rate = args.track_rate,
        app_rate = args.app_rate,
        credentials = args.site_id.is_some(),
        "mock Customer.io ready; stats at {}/__mock/stats",
        mock.url()
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    let stats = mock.stats();
    mock.shutdown().await;
    tracing::info!(
        requests = stats.requests,
        rejected = stats.rejected,
        unique_event_ids = stats.unique_event_ids,
        "stopped"
    );
    Ok(())
}
