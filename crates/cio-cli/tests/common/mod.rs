//! What several test binaries of `cio` share: a started worker's admin address, and a plain
//! HTTP GET of it.
#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout};

/// Reads a spawned `cio worker`'s first line (`worker ready: ... | admin http://ADDR`): its
/// stdout, for the report it prints at the end, and the admin address.
pub fn worker_admin(child: &mut Child) -> (BufReader<ChildStdout>, String) {
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("worker ready"), "{line:?}");
    let admin = line
        .trim()
        .rsplit("admin http://")
        .next()
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    (stdout, admin)
}

/// `GET path` on `addr`: the status and the whole answer, headers included.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text)
}
