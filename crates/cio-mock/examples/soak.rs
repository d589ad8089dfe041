//! Sends many events to a mock and reports its memory: the check behind the mock's documented
//! RSS bound (`docs/benchmarks.md`, "Mock memory").
//!
//! ```text
//! cargo build --release -p cio-cli -p cio-mock --example soak
//! target/release/cio mock --listen 127.0.0.1:7171 --track-rate 0 & MOCK=$!
//! target/release/examples/soak --url http://127.0.0.1:7171 --pid $MOCK --events 10000000 --max-rss-mb 512
//! ```
//!
//! Every event has an id of its own and goes to one of `--people` people (default 1,000,000,
//! ten times the default people cap), one identify for every ten events, in v2 batches of
//! about 400 KB on `--connections` connections: every cap of the mock is passed many times
//! over; `--data-bytes N` pads each event's data with N more bytes. At the end it prints the mock's stats and, with `--pid`, the mock's peak RSS
//! (`VmHWM`), and exits 1 if that is over `--max-rss-mb`. Without `--url` the mock runs in this
//! process, and the figure includes the sender.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cio_api::{ClientOptions, TrackCredentials, Transport};
use http::Method;

struct Args {
    url: Option<String>,
    pid: Option<u32>,
    events: u64,
    people: u64,
    connections: usize,
    max_rss_mb: Option<u64>,
    data_bytes: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: None,
        pid: None,
        events: 10_000_000,
        people: 1_000_000,
        connections: 4,
        max_rss_mb: None,
        data_bytes: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{v}: {e}"))
        };
        match flag.as_str() {
            "--url" => a.url = Some(value()?),
            "--pid" => a.pid = Some(num(value()?)? as u32),
            "--events" => a.events = num(value()?)?,
            "--people" => a.people = num(value()?)?.max(1),
            "--connections" => a.connections = num(value()?)?.max(1) as usize,
            "--max-rss-mb" => a.max_rss_mb = Some(num(value()?)?),
            "--data-bytes" => a.data_bytes = num(value()?)? as usize,
            other => return Err(format!("unknown flag {other}; see the source's docs")),
        }
    }
    Ok(a)
}

/// `VmHWM` (peak RSS) and `VmRSS` of a process, in KiB.
fn memory_kib(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Event `n` (and, for every tenth, an identify first) as v2 entries, serde_json's form.
fn push_entries(out: &mut Vec<u8>, n: u64, people: u64, pad: &str) {
    let person = n % people;
    if n % 10 == 0 {
        out.extend_from_slice(
            format!(
                r#"{{"type":"person","identifiers":{{"id":"user-{person}"}},"action":"identify","attributes":{{"email":"user-{person}@example.com","plan":"pro","seen":{n}}}}},"#
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            r#"{{"type":"person","identifiers":{{"id":"user-{person}"}},"action":"event","name":"page_viewed","id":"01J{n:023}","timestamp":1796119200,"attributes":{{"path":"/products/{}","n":{n}{pad}}}}},"#,
            n % 5000
        )
        .as_bytes(),
    );
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let mut local = None;
    let url = match &a.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let mock = cio_mock::MockServer::builder()
                .unlimited()
                .start()
                .await
                .expect("start the mock");
            let url = mock.url();
            local = Some(mock);
            url
        }
    };
    let transport = Transport::new(&ClientOptions::default());
    let auth = TrackCredentials::new("site", "key").header();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let (transport, auth, next, url) =
            (transport.clone(), auth.clone(), next.clone(), url.clone());
        let (events, people) = (a.events, a.people);
        let pad = if a.data_bytes > 0 {
            format!(r#","pad":"{}""#, "x".repeat(a.data_bytes))
        } else {
            String::new()
        };
        tasks.push(tokio::spawn(async move {
            // About 400 KB a batch, under Customer.io's 500 KB.
            let per_batch = (400_000 / (300 + pad.len() as u64)).clamp(1, 2_000);
            let mut body = Vec::with_capacity(512 * 1024);
            loop {
                let first = next.fetch_add(per_batch, Ordering::Relaxed);
                if first >= events {
                    return Ok::<(), String>(());
                }
                body.clear();
                body.extend_from_slice(br#"{"batch":["#);
                for n in first..(first + per_batch).min(events) {
                    push_entries(&mut body, n, people, &pad);
                }
                body.pop();
                body.extend_from_slice(b"]}");
                let r = transport
                    .send(
                        Method::POST,
                        &format!("{url}/api/v2/batch"),
                        &auth,
                        Some(Bytes::copy_from_slice(&body)),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status.is_success() {
                    return Err(format!(
                        "{}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await.expect("sender task") {
            eprintln!("soak: a batch failed: {e}");
            std::process::exit(1);
        }
    }
    let elapsed = started.elapsed();
    let stats = transport
        .send(Method::GET, &format!("{url}/__mock/stats"), &auth, None)
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    println!(
        "sent {} events to {} people in {:.1} s ({:.0} events/s)",
        a.events,
        a.people.min(a.events),
        elapsed.as_secs_f64(),
        a.events as f64 / elapsed.as_secs_f64()
    );
    println!("mock stats: {stats}");
    let pid = a
        .pid
        .map(|p| p.to_string())
        .unwrap_or_else(|| "self".into());
    match memory_kib(&pid) {
        Some((peak, now)) => {
            let whose = if local.is_some() {
                "this process (mock and sender)"
            } else {
                "the mock"
            };
            println!(
                "{whose}: peak RSS {} MiB, RSS now {} MiB",
                peak / 1024,
                now / 1024
            );
            if let Some(max) = a.max_rss_mb {
                if peak / 1024 > max {
                    eprintln!(
                        "soak: peak RSS {} MiB is over --max-rss-mb {max}",
                        peak / 1024
                    );
                    std::process::exit(1);
                }
            }
        }
        None => eprintln!("soak: cannot read /proc/{pid}/status"),
    }
}
