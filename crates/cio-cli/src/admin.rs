//! The worker's admin HTTP server: `/metrics` (Prometheus text), `/healthz` (liveness: see
//! [`crate::liveness`]), `/readyz` (readiness: 503 while draining).
//!
//! It runs on a thread of its own with its own small runtime: a probe must get an answer (a
//! 503 that says why) even when the pipeline's runtime is stuck.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::liveness::Liveness;

/// Whether the worker takes work (`/readyz`): true while running, false while draining.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Binds the admin address (so a port in use is reported before any work starts).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("cannot listen on {addr} for --admin-listen: the port is already in use\n  hint: pick another with --admin-listen 127.0.0.1:PORT")
        } else {
            format!("cannot listen on {addr} for --admin-listen: {e}")
        }
    })
}

/// What the admin server answers from.
#[derive(Clone)]
pub struct Admin {
    pub prometheus: Option<PrometheusHandle>,
    pub ready: Readiness,
    pub liveness: Arc<Liveness>,
}

/// The running admin server; [`AdminServer::stop`] ends it.
pub struct AdminServer {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Serves `listener` on a thread of its own until stopped.
    pub fn start(listener: TcpListener, admin: Admin) -> Result<AdminServer, String> {
        let listener = listener
            .into_std()
            .map_err(|e| format!("cannot hand the admin listener to its thread: {e}"))?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the admin server's runtime: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("cio-admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, admin, stopped).await,
                        Err(e) => tracing::error!(error = %e, "the admin server cannot listen"),
                    }
                })
            })
            .map_err(|e| format!("cannot start the admin server's thread: {e}"))?;
        Ok(AdminServer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops serving and waits for the thread.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Serves until `stop` is cancelled.
async fn serve(listener: TcpListener, admin: Admin, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = route(req.uri().path(), &admin);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn route(path: &str, admin: &Admin) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => {
            let Some(prometheus) = &admin.prometheus else {
                return text(StatusCode::NOT_FOUND, "no metrics here\n".into());
            };
            prometheus.run_upkeep();
            let mut r = text(StatusCode::OK, prometheus.render());
            if let Ok(v) = "text/plain; version=0.0.4".parse() {
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
            r
        }
        "/healthz" => match admin.liveness.verdict(Instant::now()) {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        "/readyz" if admin.ready.get() => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::heartbeat;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        (t[9..12].parse().unwrap(), t)
    }

    /// The pipeline's runtime blocked for a second: `/healthz`, served from its own thread,
    /// says 503 and why, then 200 once the runtime runs again.
    #[test]
    fn healthz_answers_503_while_the_pipeline_runtime_is_blocked() {
        let liveness = Arc::new(Liveness::new(Duration::from_millis(400)));
        let pipeline = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = pipeline.block_on(async {
            tokio::spawn(heartbeat(liveness.clone()));
            // The worker's sampler, on the same runtime: idle, nothing to do.
            let sampled = liveness.clone();
            tokio::spawn(async move {
                loop {
                    sampled.observe(crate::liveness::Sample::default(), Instant::now());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let admin = Admin {
                prometheus: None,
                ready: Readiness::default(),
                liveness: liveness.clone(),
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            (AdminServer::start(listener, admin).unwrap(), addr)
        });
        let (server, addr) = server;
        assert_eq!(get(addr, "/healthz").0, 200);
        // Outside `block_on` nothing of the pipeline's runtime runs: as if a task blocked it.
        std::thread::sleep(Duration::from_millis(900));
        let (status, body) = get(addr, "/healthz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("runtime has not run for"), "{body}");
        assert_eq!(get(addr, "/readyz").0, 503);
        pipeline.block_on(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(get(addr, "/healthz").0, 200);
            server.stop().await;
        });
    }
}
