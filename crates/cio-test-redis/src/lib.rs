//! Tests bring their own Redis. [`url`] is the Redis a test binary talks to: `REDIS_URL` when it
//! is set, otherwise a private `redis-server` this binary starts once, on a free port of
//! 127.0.0.1, with no persistence, and that stops when the binary ends. A Redis already on 6379
//! is never touched, and a fresh machine needs nothing running.
//!
//! [`PrivateRedis`] is one such server a test owns outright, for tests that stop and start it
//! (an outage).
//!
//! When `redis-server` is not installed, the first call fails with one line that says what to
//! install.
//!
//! # Why by hand
//!
//! The crates that start services for tests (testcontainers) need Docker, which a developer's
//! machine and this project's CI do not have; starting the one binary is a few lines.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What to install when `redis-server` is missing.
pub const INSTALL_HINT: &str =
    "the Redis tests need redis-server on the PATH (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), or REDIS_URL set to a Redis they may write to";

/// The Redis of this test binary: `REDIS_URL` if set, else `redis://127.0.0.1:PORT` of a
/// private server started on first use and stopped when the binary exits.
///
/// # Panics
///
/// When `redis-server` cannot be started (see [`INSTALL_HINT`]).
pub fn url() -> String {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return url.trim_end_matches('/').to_owned();
    }
    static SHARED: OnceLock<u16> = OnceLock::new();
    let port = SHARED.get_or_init(|| {
        let mut redis = PrivateRedis::start();
        // Lives as long as the binary: its watchdog stops it when the binary is gone.
        let port = redis.port;
        redis.child = None;
        port
    });
    format!("redis://127.0.0.1:{port}")
}

/// A `redis-server` of one test's own on a free port, without persistence. Dropping it stops
/// it; so does the end of the test binary, however it ends.
#[derive(Debug)]
pub struct PrivateRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When `redis-server` cannot be started (see [`INSTALL_HINT`]).
    pub fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| {
                panic!("no free port on 127.0.0.1 for a private redis-server: {e}")
            });
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, after [`stop`](Self::stop)) on the same port.
    pub fn restart(&mut self) {
        self.stop();
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            panic!("{INSTALL_HINT}");
        }
        // A watchdog shell runs the server and stops it when this process is gone, so a test
        // binary that exits (or is killed) leaves no server behind.
        let script = r#"redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; exit 0' TERM INT
while kill -0 "$2" 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.2; done
kill $server 2>/dev/null
wait $server 2>/dev/null"#;
        let child = Command::new("sh")
            .args(["-c", script, "redis-watchdog"])
            .arg(self.port.to_string())
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sh for redis-server ({e}); {INSTALL_HINT}"));
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on 127.0.0.1:{} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (an outage); [`restart`](Self::restart) brings it back.
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.child.take() {
            // SIGTERM to the watchdog, which stops the server and waits for it.
            let _ = Command::new("kill").arg(watchdog.id().to_string()).status();
            let _ = watchdog.wait();
            let started = Instant::now();
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_server_starts_stops_and_comes_back_on_its_port() {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("{INSTALL_HINT}");
        }
        let mut redis = PrivateRedis::start();
        assert_ne!(redis.port, 6379);
        assert!(TcpStream::connect(("127.0.0.1", redis.port)).is_ok());
        redis.stop();
        assert!(TcpStream::connect(("127.0.0.1", redis.port)).is_err());
        redis.restart();
        assert!(TcpStream::connect(("127.0.0.1", redis.port)).is_ok());
        let port = redis.port;
        drop(redis);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    /// Run by the test below in a child process whose PATH has no redis-server.
    #[test]
    #[ignore = "a helper: run by without_redis_server_the_error_says_what_to_install"]
    fn start_without_redis_server_on_the_path() {
        let _ = url();
    }

    #[test]
    fn without_redis_server_the_error_says_what_to_install() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "tests::start_without_redis_server_on_the_path",
            ])
            .env("PATH", "/nonexistent")
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(INSTALL_HINT), "{text}");
        assert!(text.contains("apt-get install redis-server"), "{text}");
    }
}
