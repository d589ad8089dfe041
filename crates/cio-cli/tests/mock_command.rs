//! `cio mock` as a process: first line, signals, and errors a person can act on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cio"))
}

/// Starts `cio mock` with these flags and `RUST_LOG`, and reads its first line: the process
/// and the URL it listens on.
fn start_mock(args: &[&str], log: &str) -> (std::process::Child, String) {
    let mut child = cio()
        .arg("mock")
        .args(args)
        .env("RUST_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_owned();
    (child, url)
}

#[test]
fn prints_its_address_first_serves_and_stops_on_sigterm() {
    let (mut child, url) = start_mock(
        &[
            "--listen",
            "127.0.0.1:0",
            "--site-id",
            "s",
            "--api-key",
            "k",
        ],
        "info",
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // It answers: a stats request over a plain TCP socket.
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /__mock/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"unique_event_ids\":0"), "{answer}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("shutting down"), "{err}");
}

#[test]
fn a_port_in_use_is_one_clear_line_with_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = cio().args(["mock", "--listen", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: cannot listen on {addr}: the port is already in use"
        )),
        "{err}"
    );
    assert!(err.contains("--listen"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn bad_flag_values_name_the_flag_and_the_fix() {
    for (args, expect) in [
        (vec!["mock", "--error-rate", "5"], "not between 0 and 1"),
        (
            vec!["mock", "--latency-ms", "20,5"],
            "must not be below P50",
        ),
        (
            vec!["mock", "--latency-ms", "fast"],
            "not a number of milliseconds",
        ),
        (vec!["mock", "--listen", "localhost"], "--listen"),
        (vec!["mock", "--site-id", "s"], "--api-key"),
        (
            vec!["mock", "--redirect-to", "track-eu.customer.io"],
            "give an absolute http(s) URL",
        ),
    ] {
        let out = cio()
            .args(&args)
            .env_remove("CIO_API_KEY")
            .env_remove("CIO_SITE_ID")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn help_has_an_example() {
    let out = cio().args(["mock", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Example:") && help.contains("cio mock --listen"),
        "{help}"
    );
}

/// With `RUST_LOG=tower_http=debug` the mock logs every exchange (tower-http's Trace layer):
/// method and path in the span, status and time taken in the line; nothing at the default level.
#[test]
fn every_exchange_is_traced_at_debug_level() {
    use std::io::{Read, Write};
    for (filter, traced) in [("tower_http=debug", true), ("info", false)] {
        let (child, url) = start_mock(&["--listen", "127.0.0.1:0", "--track-rate", "0"], filter);
        let mut s = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        let body = r#"{"email":"jane@example.com"}"#;
        write!(
            s,
            "PUT /api/v1/customers/42 HTTP/1.1\r\nhost: x\r\nauthorization: Basic c2l0ZTprZXk=\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.contains("finished processing request") && err.contains("status=200"),
            traced,
            "{filter}: {err}"
        );
        if traced {
            assert!(
                err.contains("uri=/api/v1/customers/42") && err.contains("method=PUT"),
                "{err}"
            );
        }
    }
}
