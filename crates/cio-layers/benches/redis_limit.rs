//! The cost of one decision of the Redis rate-limit backend, next to a bare Redis round trip
//! (`PING`) and the in-process backend, against the Redis at `REDIS_URL` (default
//! 127.0.0.1:6379):
//!
//! ```text
//! cargo bench -p cio-layers --features redis --bench redis_limit
//! ```
//!
//! - `ping`: one round trip on a multiplexed connection, the floor for anything in Redis;
//! - `reserve/sequential`: one decision at a time (latency: what one caller waits);
//! - `reserve/concurrent_64`: 64 decisions in flight on the one connection (throughput: the
//!   multiplexed connection pipelines them), reported per decision;
//! - `local/reserve`: [`LocalBackend`] for comparison.
//!
//! Before the timed runs it counts, with `INFO commandstats`, the commands clients sent for
//! 1,000 decisions (`EVALSHA`, and `EVAL`/`SCRIPT` for a script load): the round trips per
//! decision. Run it on a Redis nothing else is using at the time.

use std::hint::black_box;
use std::num::NonZeroU32;

use cio_layers::rate_limit::{LocalBackend, Quota, RateLimitBackend, RedisBackend};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redis::AsyncCommands;

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Never waits during a bench.
fn huge_quota() -> Quota {
    Quota::per_second(NonZeroU32::MAX)
        .with_burst(NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MAX))
}

/// Calls so far of each command Redis executed (`INFO commandstats`), by name.
async fn command_calls(
    conn: &mut redis::aio::MultiplexedConnection,
) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn redis_limit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let key = format!("cio-bench:rate:{}", std::process::id());
    let backend = RedisBackend::builder(url(), &key, huge_quota())
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .expect("a Redis URL");
    let mut conn = rt
        .block_on(async {
            redis::Client::open(url())?
                .get_multiplexed_async_connection()
                .await
        })
        .expect("the bench needs Redis at REDIS_URL or 127.0.0.1:6379");

    // Round trips per decision: the commands a client sent (EVALSHA, and EVAL / SCRIPT when
    // a script had to be loaded); the script's own TIME, GET and SET run inside Redis.
    rt.block_on(async {
        backend.reserve().await.expect("a decision"); // loads the script once
        let before = command_calls(&mut conn).await;
        let n = 1_000u64;
        for _ in 0..n {
            backend.reserve().await.expect("a decision");
        }
        let after = command_calls(&mut conn).await;
        let delta = |name: &str| {
            after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
        };
        let sent = delta("evalsha") + delta("eval") + delta("script");
        let inside = delta("time") + delta("get") + delta("set");
        println!(
            "redis_limit: {:.3} round trips per decision ({:.3} commands inside the script)",
            sent as f64 / n as f64,
            inside as f64 / n as f64
        );
    });

    let mut group = c.benchmark_group("redis_limit");
    group.bench_function("ping", |b| {
        let conn = conn.clone();
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            async move {
                let pong: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .expect("PING");
                black_box(pong)
            }
        })
    });
    group.bench_function("reserve/sequential", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(backend.reserve().await.expect("a decision")) })
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("reserve/concurrent_64", |b| {
        b.to_async(&rt).iter(|| async {
            let decisions = (0..64).map(|_| backend.reserve());
            for d in futures_util::future::join_all(decisions).await {
                black_box(d.expect("a decision"));
            }
        })
    });
    group.throughput(Throughput::Elements(1));
    let local = LocalBackend::new(huge_quota());
    group.bench_function("local/reserve", |b| {
        b.iter(|| black_box(local.reserve_now()))
    });
    group.finish();

    rt.block_on(async {
        let _: () = conn.del(&key).await.expect("DEL");
    });
}

criterion_group!(benches, redis_limit);
criterion_main!(benches);
