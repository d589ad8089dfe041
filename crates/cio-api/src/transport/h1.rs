//! A lean HTTP/1.1 client for `http://` origins: a kept-alive connection is taken from the pool,
//! used by the calling task itself, and put back.
//!
//! hyper-util's pooled client spends most of a small request outside the wire: the request goes
//! to a connection task over a channel, the answer comes back over another (two task wakes, often
//! across threads), and the pool hashes its key with SipHash twice. Here the task that sends also
//! writes and reads, so a request costs one `write` and, usually, one `read`.
//!
//! What it does, and what it does not:
//! - One request at a time per connection (no pipelining), `Content-Length` request bodies.
//! - Responses framed by `Content-Length`, `Transfer-Encoding: chunked`, or the end of the
//!   connection; `1xx` interim responses are skipped; a `HEAD`, `204` or `304` has no body.
//! - A connection goes back to the pool only after a complete response that allows keep-alive
//!   (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`) and with
//!   nothing unread after it. A request dropped halfway (a timeout) drops its connection.
//! - Before an idle connection is reused it is checked, without a system call in the usual case,
//!   for a close or stray bytes from the server; connections idle longer than the pool's idle
//!   timeout are closed.
//! - TLS is not here: `https://` goes through hyper-util and rustls.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use http::{HeaderMap, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::RawResponse;

/// Largest response head accepted (status line and headers).
const MAX_HEAD: usize = 400 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 100;
/// Bytes asked of the socket at a time. A read that returns less than this tells tokio the socket
/// is drained, so the next readiness check needs no system call.
const READ_SIZE: usize = 16 * 1024;
/// Request bodies up to this size are copied after the head and written with it in one call.
const COALESCE_BODY: usize = 16 * 1024;
/// Response bodies up to this size are copied out, so the read buffer is reused as it is.
const COPY_BODY: usize = 4 * 1024;
/// A read buffer larger than this after a response is replaced by a small one.
const KEEP_BUFFER: usize = 64 * 1024;
/// Idle connections kept at most (over all origins); the oldest go first.
const MAX_IDLE: usize = 1024;

/// Where a plain-HTTP request goes, read straight off its URL.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target<'a> {
    /// The whole URL, for error messages.
    pub url: &'a str,
    /// `host[:port]`: the `Host` header and the pool's key.
    pub authority: &'a str,
    /// Path and query, as sent on the request line.
    pub path: &'a str,
}

impl<'a> Target<'a> {
    /// Splits an `http://host[:port]/path?query` URL without building a [`Uri`]. `None` for
    /// anything else (another scheme, credentials in the URL, a fragment, bytes a request line
    /// cannot carry), which then goes through `http::Uri`'s parser and its errors.
    pub(super) fn parse(url: &'a str) -> Option<Target<'a>> {
        let rest = url.strip_prefix("http://")?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let authority_ok = !authority.is_empty()
            && authority.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        let path_ok = path.starts_with('/') || path.is_empty();
        let sendable = path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'#');
        (authority_ok && path_ok && sendable).then_some(Target {
            url,
            authority,
            path: if path.is_empty() { "/" } else { path },
        })
    }
}

/// Why an exchange failed.
pub(super) struct Failure {
    /// Nothing of a response arrived: the connection failed while the request was written, or it
    /// was closed or reset before the first byte of an answer. On a reused connection this is the
    /// race with a server closing it for being idle, and the request may be sent again once.
    pub nothing_received: bool,
    /// The request did not get out whole (writing it failed), so the server cannot have acted on
    /// it: sending it again is safe whatever the method.
    pub unsent: bool,
    pub reason: String,
}

impl Failure {
    fn io(context: &str, e: &io::Error, nothing_received: bool) -> Failure {
        Failure {
            nothing_received,
            unsent: false,
            reason: format!("{context}: {e}"),
        }
    }

    fn protocol(reason: impl Into<String>) -> Failure {
        Failure {
            nothing_received: false,
            unsent: false,
            reason: reason.into(),
        }
    }
}

/// Idle kept-alive connections, most recently used last.
pub(super) struct Pool {
    idle: Mutex<VecDeque<Idle>>,
    idle_timeout: Duration,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    pub(super) fn new(idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(VecDeque::new()),
            idle_timeout,
        }
    }

    /// The most recently used open connection to `authority`, if any.
    pub(super) fn checkout(&self, authority: &str) -> Option<Conn> {
        let mut closed = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let Some(i) = idle.iter().rposition(|e| &*e.conn.authority == authority) else {
                    break None;
                };
                let Some(entry) = idle.remove(i) else {
                    break None;
                };
                if entry.since.elapsed() < self.idle_timeout && entry.conn.is_open() {
                    break Some(entry.conn);
                }
                closed.push(entry.conn);
            }
        };
        drop(closed);
        found
    }

    /// Puts `conn` back, and closes the connections that have been idle too long.
    pub(super) fn checkin(&self, conn: Conn) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // The oldest go when they have idled too long, when the server has closed them (so a
            // closed connection does not wait in CLOSE_WAIT for the next checkout), or when
            // there are too many.
            while idle.front().is_some_and(|e| {
                now.saturating_duration_since(e.since) >= self.idle_timeout
                    || !e.conn.is_open()
                    || idle.len() >= MAX_IDLE
            }) {
                expired.extend(idle.pop_front());
            }
            idle.push_back(Idle { conn, since: now });
        }
        drop(expired);
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

/// The parts of a request that are the same for every request of a transport.
pub(super) struct RequestHead<'a> {
    /// Header lines, each ending in CRLF (`user-agent`, `content-type`, `accept`).
    pub fixed: &'a [u8],
    pub auth: &'a HeaderValue,
    pub max_response_bytes: usize,
}

/// One HTTP/1.1 connection over plain TCP.
pub(super) struct Conn {
    stream: TcpStream,
    authority: Box<str>,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The request being written.
    out: Vec<u8>,
}

impl Conn {
    /// Connects to `authority` (`host[:port]`, port 80 by default).
    pub(super) async fn connect(authority: &str) -> io::Result<Conn> {
        let authority: Authority = authority.parse().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("invalid host: {e}"))
        })?;
        // `Authority` reads "host:99999" as no port at all: that must not quietly mean port 80.
        let port_text = authority
            .as_str()
            .strip_prefix(authority.host())
            .and_then(|rest| rest.strip_prefix(':'));
        let port = match (port_text, authority.port_u16()) {
            (None, _) => 80,
            (Some(_), Some(port)) => port,
            (Some(text), None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid port {text:?}"),
                ))
            }
        };
        let stream = TcpStream::connect((authority.host().trim_matches(['[', ']']), port)).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            authority: authority.as_str().into(),
            buf: BytesMut::with_capacity(READ_SIZE),
            out: Vec::with_capacity(1024),
        })
    }

    /// Whether the server has neither closed the connection nor sent anything since the last
    /// response. `try_read` answers from tokio's cached readiness, so this costs a system call
    /// only when the socket was signalled readable. (`poll_read_ready` would not do: once the
    /// task has used up its cooperative budget it answers `Pending` without looking.)
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends one request and reads its response. Returns the response and whether the connection
    /// may be reused.
    pub(super) async fn exchange(
        &mut self,
        method: &Method,
        path: &str,
        head: &RequestHead<'_>,
        body: Option<&Bytes>,
    ) -> Result<(RawResponse, bool), Failure> {
        if let Err(e) = self.write_request(method, path, head, body).await {
            // A server may answer (413, 401) and close before it has read the whole body: that
            // answer, if it arrived, says more than the broken pipe.
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                if let Ok((resp, _)) = self.read_response(method, head.max_response_bytes).await {
                    return Ok((resp, false));
                }
            }
            return Err(Failure {
                unsent: true,
                ..Failure::io("writing the request", &e, true)
            });
        }
        let answer = self.read_response(method, head.max_response_bytes).await;
        if self.buf.capacity() > KEEP_BUFFER {
            // One large response should not pin its buffer to an idle connection.
            self.buf = BytesMut::with_capacity(READ_SIZE);
        }
        answer
    }

    async fn write_request(
        &mut self,
        method: &Method,
        path: &str,
        head: &RequestHead<'_>,
        body: Option<&Bytes>,
    ) -> io::Result<()> {
        let body: &[u8] = body.map_or(&[], |b| b);
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        if !path.starts_with('/') {
            // "" or "?query" (what `PathAndQuery::as_str` gives for `http://host?query`).
            out.push(b'/');
        }
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.authority.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(head.fixed);
        out.extend_from_slice(b"authorization: ");
        out.extend_from_slice(head.auth.as_bytes());
        out.extend_from_slice(b"\r\n");
        if !body.is_empty() || !matches!(*method, Method::GET | Method::HEAD) {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if body.len() <= COALESCE_BODY {
            out.extend_from_slice(body);
            self.stream.write_all(out).await
        } else {
            self.stream.write_all(out).await?;
            self.stream.write_all(body).await
        }
    }

    /// Reads more bytes into the buffer. `Ok(false)` at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 2 {
            self.buf.reserve(READ_SIZE);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Reads more bytes, with the end of the stream an error.
    async fn fill_or_fail(&mut self, what: &str) -> Result<(), Failure> {
        match self.fill().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::protocol(format!(
                "the connection was closed in the middle of the {what}"
            ))),
            Err(e) => Err(Failure::io(&format!("reading the {what}"), &e, false)),
        }
    }

    async fn read_response(
        &mut self,
        method: &Method,
        max_body: usize,
    ) -> Result<(RawResponse, bool), Failure> {
        let mut received_any = !self.buf.is_empty();
        let (status, headers, framing) = loop {
            if !self.buf.is_empty() {
                if let Some(head) = self.parse_head()? {
                    if head.0.is_informational() && head.0 != StatusCode::SWITCHING_PROTOCOLS {
                        continue;
                    }
                    break head;
                }
            }
            match self.fill().await {
                Ok(true) => received_any = true,
                Ok(false) if received_any => {
                    return Err(Failure::protocol(
                        "the connection was closed in the middle of the response head",
                    ))
                }
                Ok(false) => {
                    return Err(Failure {
                        nothing_received: true,
                        ..Failure::protocol("the connection was closed before any response")
                    })
                }
                Err(e) => {
                    return Err(Failure::io("reading the response", &e, !received_any));
                }
            }
        };
        // After `101 Switching Protocols` the connection speaks something else.
        let mut keep_alive = framing.keeps_alive() && status != StatusCode::SWITCHING_PROTOCOLS;
        let body = if *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational()
        {
            Bytes::new()
        } else if let Some(chunked) = framing.chunked {
            if chunked {
                self.read_chunked(max_body).await?
            } else {
                keep_alive = false;
                self.read_to_end(max_body).await?
            }
        } else if let Some(len) = framing.content_length {
            self.read_exact_body(len, max_body).await?
        } else {
            keep_alive = false;
            self.read_to_end(max_body).await?
        };
        // Anything after the response was not asked for: the connection's state is unknown.
        keep_alive &= self.buf.is_empty();
        Ok((
            RawResponse {
                status,
                headers,
                body,
            },
            keep_alive,
        ))
    }

    /// Parses a complete response head at the start of the buffer and consumes it.
    fn parse_head(&mut self) -> Result<Option<(StatusCode, HeaderMap, Framing)>, Failure> {
        // Uninitialised slots: filling every empty header first cost more than parsing three.
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            &self.buf,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                return Err(Failure::protocol(format!(
                    "the response head is larger than {MAX_HEAD} bytes"
                )))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(Failure::protocol(format!("invalid response head: {e}"))),
        };
        let code = parsed.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)
            .map_err(|_| Failure::protocol(format!("invalid status code {code}")))?;
        let mut framing = Framing::new(parsed.version.unwrap_or(1));
        let mut headers = HeaderMap::with_capacity(parsed.headers.len());
        for h in parsed.headers.iter() {
            framing.see(h.name, h.value)?;
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| Failure::protocol(format!("invalid header name {:?}", h.name)))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| Failure::protocol(format!("invalid value for header {name}")))?;
            headers.append(name, value);
        }
        self.buf.advance(len);
        Ok(Some((status, headers, framing)))
    }

    async fn read_exact_body(&mut self, len: usize, max: usize) -> Result<Bytes, Failure> {
        if len > max {
            return Err(too_large(max));
        }
        if self.buf.len() < len {
            self.buf.reserve(len - self.buf.len());
        }
        while self.buf.len() < len {
            self.fill_or_fail("response body").await?;
        }
        Ok(if len <= COPY_BODY {
            let body = Bytes::copy_from_slice(&self.buf[..len]);
            self.buf.advance(len);
            body
        } else {
            self.buf.split_to(len).freeze()
        })
    }

    async fn read_to_end(&mut self, max: usize) -> Result<Bytes, Failure> {
        loop {
            if self.buf.len() > max {
                return Err(too_large(max));
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return Ok(self.buf.split().freeze()),
                Err(e) => return Err(Failure::io("reading the response body", &e, false)),
            }
        }
    }

    /// The index of the next line feed, reading more until there is one.
    async fn line_end(&mut self) -> Result<usize, Failure> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(i);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::protocol(
                    "a chunk size or trailer line is too long",
                ));
            }
            self.fill_or_fail("chunked response body").await?;
        }
    }

    async fn read_chunked(&mut self, max: usize) -> Result<Bytes, Failure> {
        let mut body = BytesMut::new();
        loop {
            let end = self.line_end().await?;
            let size = chunk_size(&self.buf[..end])?;
            self.buf.advance(end + 1);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let end = self.line_end().await?;
                    let empty = self.buf[..end].iter().all(|&b| b == b'\r');
                    self.buf.advance(end + 1);
                    if empty {
                        return Ok(body.freeze());
                    }
                }
            }
            if size > max.saturating_sub(body.len()) {
                return Err(too_large(max));
            }
            while self.buf.len() < size + 2 {
                self.fill_or_fail("chunked response body").await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(Failure::protocol("a chunk does not end in CRLF"));
            }
            self.buf.advance(size + 2);
        }
    }
}

fn too_large(max: usize) -> Failure {
    Failure::protocol(format!("the response body is larger than {max} bytes"))
}

/// What the response head says about where its body ends and what follows it, gathered while
/// the headers are read.
struct Framing {
    /// `Content-Length`, if given.
    content_length: Option<usize>,
    /// With `Transfer-Encoding`: whether its last coding is `chunked`.
    chunked: Option<bool>,
    http11: bool,
    /// `Connection: close` was seen.
    close: bool,
    /// `Connection: keep-alive` was seen.
    keep_alive: bool,
}

impl Framing {
    fn new(version: u8) -> Framing {
        Framing {
            content_length: None,
            chunked: None,
            http11: version >= 1,
            close: false,
            keep_alive: false,
        }
    }

    /// Whether the connection may carry another request after this response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`, and never after a
    /// suspect framing: `Transfer-Encoding` with `Content-Length`, or on HTTP/1.0 (RFC 9112
    /// 6.1, 6.3; the body is read by `Transfer-Encoding`, then the connection is closed).
    fn keeps_alive(&self) -> bool {
        let suspect = self.chunked.is_some() && (self.content_length.is_some() || !self.http11);
        !suspect && !self.close && (self.http11 || self.keep_alive)
    }

    fn see(&mut self, name: &str, value: &[u8]) -> Result<(), Failure> {
        let tokens = || {
            value
                .split(|&b| b == b',')
                .map(|t| t.trim_ascii())
                .filter(|t| !t.is_empty())
        };
        if name.eq_ignore_ascii_case("content-length") {
            // Several values that agree are allowed; disagreeing ones, or one that is not a
            // number (an empty one included), make the body's end a guess.
            for part in value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                // 1*DIGIT: no sign, no blank (`usize::from_str` would take "+2").
                let n = Some(part)
                    .filter(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|t| t.parse::<usize>().ok())
                    .ok_or_else(|| {
                        Failure::protocol(format!(
                            "invalid Content-Length {:?}",
                            String::from_utf8_lossy(part)
                        ))
                    })?;
                if self.content_length.is_some_and(|f| f != n) {
                    return Err(Failure::protocol("conflicting Content-Length headers"));
                }
                self.content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if let Some(last) = tokens().next_back() {
                self.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens() {
                self.close |= t.eq_ignore_ascii_case(b"close");
                self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }
}

/// The size on a chunk's size line (hexadecimal, extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<usize, Failure> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let text = std::str::from_utf8(digits).unwrap_or("").trim();
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::protocol(format!("invalid chunk size {text:?}")));
    }
    usize::from_str_radix(text, 16)
        .map_err(|_| Failure::protocol(format!("invalid chunk size {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Uri;
    use tokio::net::TcpListener;

    /// A server that reads one request head per `answers` entry and writes that answer verbatim.
    async fn server(answers: Vec<&'static [u8]>) -> (Uri, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/p?q=1", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut heads = Vec::new();
            let mut buf = Vec::new();
            for answer in answers {
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the client closed early");
                    buf.extend_from_slice(&chunk[..n]);
                };
                let head = String::from_utf8(buf[..end].to_vec()).unwrap();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                while buf.len() < end + len {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                buf.drain(..end + len);
                heads.push(head);
                s.write_all(answer).await.unwrap();
            }
            heads
        });
        (uri, task)
    }

    fn head(auth: &HeaderValue) -> RequestHead<'_> {
        RequestHead {
            fixed: b"content-type: application/json\r\n",
            auth,
            max_response_bytes: 1024,
        }
    }

    async fn exchange(conn: &mut Conn, uri: &Uri) -> Result<(RawResponse, bool), Failure> {
        let auth = HeaderValue::from_static("Basic eA==");
        let body = Bytes::from_static(b"{\"a\":1}");
        let path = uri.path_and_query().unwrap().as_str();
        conn.exchange(&Method::POST, path, &head(&auth), Some(&body))
            .await
    }

    async fn answered(conn: &mut Conn, uri: &Uri) -> (RawResponse, bool) {
        match exchange(conn, uri).await {
            Ok(answer) => answer,
            Err(f) => panic!("{}", f.reason),
        }
    }

    #[tokio::test]
    async fn every_framing_is_read_and_the_connection_reused_when_allowed() {
        let (uri, server) = server(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\n\r\n{}",
            b"HTTP/1.1 207 Multi\r\ntransfer-encoding: gzip, chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\ntrailer: x\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 429 Too Many\r\nretry-after: 3\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
        ])
        .await;
        let mut conn = Conn::connect(uri.authority().unwrap().as_str())
            .await
            .unwrap();
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(answered(&mut conn, &uri).await);
        }
        // The last has no length and `Connection: close`: the body runs to the end, and the
        // connection is done.
        let server_task = tokio::spawn(async move { server.await.unwrap() });
        answers.push(answered(&mut conn, &uri).await);
        let summary: Vec<(u16, &[u8], bool)> = answers
            .iter()
            .map(|(r, keep)| (r.status.as_u16(), &r.body[..], *keep))
            .collect();
        assert_eq!(
            summary,
            [
                (200, &b"{}"[..], true),
                (207, b"abcde", true),
                (204, b"", true),
                (429, b"", true),
                (200, b"until the end", false),
            ]
        );
        assert_eq!(answers[0].0.headers["x-a"], "1");
        assert_eq!(answers[3].0.headers["retry-after"], "3");
        let heads = server_task.await.unwrap();
        assert_eq!(heads.len(), 5);
        assert!(
            heads[0].starts_with("POST /p?q=1 HTTP/1.1\r\nhost: 127.0.0.1:"),
            "{}",
            heads[0]
        );
        assert!(heads[0].contains("\r\nauthorization: Basic eA==\r\ncontent-length: 7\r\n\r\n"));
    }

    #[tokio::test]
    async fn bad_responses_are_errors_that_name_the_problem() {
        for (answer, expected) in [
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n"[..],
                "larger than 1024",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
                "conflicting",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n{}",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n{}",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "invalid chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabcd",
                "CRLF",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                "closed in the middle",
            ),
            (b"garbage\r\n\r\n", "invalid response head"),
        ] {
            let (uri, _server) = server(vec![answer]).await;
            let mut conn = Conn::connect(uri.authority().unwrap().as_str())
                .await
                .unwrap();
            // The server closes its side after its one answer, which is what ends "short".
            let failure = match exchange(&mut conn, &uri).await {
                Ok(_) => panic!("{answer:?} was accepted"),
                Err(f) => f,
            };
            assert!(
                failure.reason.contains(expected),
                "{answer:?}: {}",
                failure.reason
            );
            assert!(!failure.nothing_received, "{answer:?}");
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_handed_out_again() {
        let (uri, server) = server(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]).await;
        let pool = Pool::new(Duration::from_secs(30));
        let mut conn = Conn::connect(uri.authority().unwrap().as_str())
            .await
            .unwrap();
        assert!(answered(&mut conn, &uri).await.1);
        let authority = uri.authority().unwrap().as_str();
        pool.checkin(conn);
        assert_eq!(pool.idle_count(), 1);
        // The server's task ends after its one answer, closing its side.
        server.await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            pool.checkout(authority).is_none(),
            "a closed connection was reused"
        );
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn idle_connections_expire_and_other_origins_are_not_mixed() {
        let (uri, _server) = server(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]).await;
        let authority = uri.authority().unwrap().as_str().to_owned();
        let pool = Pool::new(Duration::from_millis(100));
        pool.checkin(
            Conn::connect(uri.authority().unwrap().as_str())
                .await
                .unwrap(),
        );
        assert!(pool.checkout("127.0.0.1:1").is_none());
        let conn = pool.checkout(&authority).expect("the open connection");
        pool.checkin(conn);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            pool.checkout(&authority).is_none(),
            "an expired connection was reused"
        );
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn suspect_framing_and_upgrades_are_read_but_never_reused() {
        for answer in [
            &b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        ] {
            let (uri, _server) = server(vec![answer]).await;
            let mut conn = Conn::connect(uri.authority().unwrap().as_str()).await.unwrap();
            let (_, keep) = answered(&mut conn, &uri).await;
            assert!(!keep, "{:?}", String::from_utf8_lossy(answer));
        }
    }

    #[tokio::test]
    async fn a_stray_answer_on_an_idle_connection_is_seen_even_without_coop_budget() {
        // A server that answers, then later writes an unsolicited 408 and closes (as servers do
        // when they drop an idle connection). The pool must not hand that connection out, even
        // to a task that has used up its cooperative budget (tokio's readiness polls then
        // answer "pending" without looking).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let uri: Uri = format!("http://{authority}/p").parse().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        });
        let pool = Pool::new(Duration::from_secs(30));
        let mut conn = Conn::connect(&authority).await.unwrap();
        assert!(answered(&mut conn, &uri).await.1);
        pool.checkin(conn);
        server.await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Spend the budget as a task draining a few hundred ready messages would.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        for i in 0..300 {
            tx.send(i).unwrap();
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for _ in 0..300 {
            let mut next = std::pin::pin!(rx.recv());
            let _ = std::future::Future::poll(next.as_mut(), &mut cx);
        }
        assert!(!tokio::task::coop::has_budget_remaining());
        assert!(
            pool.checkout(&authority).is_none(),
            "a connection holding a stray 408 was handed out"
        );
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_server_stopped_reading_is_returned() {
        // The server reads the head of a 32 MiB upload, answers 413 and closes without reading
        // the body: the client's write fails, and the 413 is what it reports.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large")
                .await
                .unwrap();
        });
        let mut conn = Conn::connect(&authority).await.unwrap();
        let auth = HeaderValue::from_static("Basic eA==");
        let body = Bytes::from(vec![b'x'; 32 << 20]);
        let (resp, keep) = match conn
            .exchange(&Method::POST, "/upload", &head(&auth), Some(&body))
            .await
        {
            Ok(answer) => answer,
            Err(f) => panic!("{}", f.reason),
        };
        assert_eq!(
            (resp.status.as_u16(), &resp.body[..], keep),
            (413, &b"too large"[..], false)
        );
    }

    #[tokio::test]
    async fn a_port_out_of_range_is_refused_not_read_as_80() {
        let err = Conn::connect("127.0.0.1:99999").await.err().unwrap();
        assert!(err.to_string().contains("invalid port"), "{err}");
    }

    #[test]
    fn plain_urls_are_split_without_a_uri_and_odd_ones_left_to_it() {
        let t = Target::parse("http://127.0.0.1:7070/api/v1/customers/a%20b/events?x=1").unwrap();
        assert_eq!(
            (t.authority, t.path),
            ("127.0.0.1:7070", "/api/v1/customers/a%20b/events?x=1")
        );
        let t = Target::parse("http://[::1]:80").unwrap();
        assert_eq!((t.authority, t.path), ("[::1]:80", "/"));
        for odd in [
            "https://track.customer.io/api/v1",
            "http://user:pass@host/x",
            "http:///x",
            "http://host/a b",
            "http://host/a\r\nx: y",
            "http://host/a#frag",
            "http://host?q=1",
            "HTTP://host/x",
        ] {
            assert!(Target::parse(odd).is_none(), "{odd}");
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a\r").ok(), Some(26));
        assert_eq!(chunk_size(b"0;name=v\r").ok(), Some(0));
        assert!(chunk_size(b"\r").is_err());
        assert!(chunk_size(b"ffffffffffffffffff\r").is_err());
        assert!(chunk_size(b"+a\r").is_err(), "no sign: 1*HEXDIG");
    }
}
