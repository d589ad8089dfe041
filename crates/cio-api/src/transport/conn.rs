//! One HTTP/1.1 connection: hyper's `client::conn::http1` over TCP or rustls, driven by the task
//! that uses it.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{error_chain, Origin};
use crate::Error;

/// The byte stream under a connection.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Driver = Connection<TokioIo<Stream>, Full<Bytes>>;

/// Why an exchange failed, and so whether the request may go again.
pub(super) enum Failure {
    /// hyper handed the request back before writing any of it: it cannot have reached the server.
    Unsent {
        /// Boxed: a request is far larger than the other variants.
        request: Box<Request<Full<Bytes>>>,
        reason: String,
    },
    /// The request went out (or may have), and the connection closed or broke before any
    /// answer: the server may or may not have acted on it.
    NoAnswer { reason: String },
    /// An answer came and was not usable (invalid, too large, cut short).
    Broken { reason: String },
}

impl Failure {
    pub(super) fn into_error(self, url: String) -> Error {
        let reason = match self {
            Failure::Unsent { reason, .. } => format!("{reason} (the request was not sent)"),
            Failure::NoAnswer { reason } => format!(
                "{reason}: the request was sent and no answer came, so its outcome is unknown"
            ),
            Failure::Broken { reason } => reason,
        };
        Error::Transport { url, reason }
    }
}

/// A kept-alive HTTP/1.1 connection: hyper's request handle and its connection future, which
/// whoever holds this drives.
pub(super) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// `None` once the connection has ended. Boxed: hyper's connection state (its buffers
    /// inline) is large, and a `Conn` moves in and out of the pool and futures on every request.
    driver: Option<Box<Driver>>,
    /// When it was last put back in the pool.
    pub(super) idle_since: Instant,
}

impl Conn {
    /// Connects over TCP, then TLS for `https://`, and hands the stream to hyper.
    pub(super) async fn connect(
        origin: &Origin,
        tls: &tokio_rustls::TlsConnector,
    ) -> Result<Conn, String> {
        let tcp = TcpStream::connect((origin.host(), origin.port))
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let stream = if origin.https {
            let name = rustls::pki_types::ServerName::try_from(origin.host().to_owned())
                .map_err(|e| format!("{:?} is not a valid TLS server name: {e}", origin.host()))?;
            let tls = tls.connect(name, tcp).await.map_err(|e| tls_failure(&e))?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Plain(tcp)
        };
        let (sender, driver) = http1::Builder::new()
            .max_headers(100)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| error_chain(&e))?;
        Ok(Conn {
            sender,
            driver: Some(Box::new(driver)),
            idle_since: Instant::now(),
        })
    }

    /// Whether the connection can take a request: the server has not closed it and has sent
    /// nothing unasked. Polls the connection once, outside the task's cooperative budget (with
    /// the budget spent tokio answers "pending" without looking, and a close would go unseen).
    pub(super) fn is_usable(&mut self) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return false;
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut check =
            tokio::task::unconstrained(poll_fn(|cx| Poll::Ready(Pin::new(&mut *driver).poll(cx))));
        match Pin::new(&mut check).poll(&mut cx) {
            // The connection future ended (closed, or an error such as a stray answer).
            Poll::Ready(Poll::Ready(_)) => {
                self.driver = None;
                false
            }
            _ => self.sender.is_ready(),
        }
    }

    /// Sends `req`, drives the connection until the whole answer is read (at most `max_body`
    /// bytes of body), and says whether the connection may be used again.
    pub(super) async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<(Response<Full<Bytes>>, bool), Failure> {
        let answer = self.sender.try_send_request(req);
        let head = match drive(&mut self.driver, answer).await {
            Ok(head) => head,
            Err(mut e) => {
                let reason = error_chain(e.error());
                return Err(match e.take_message() {
                    Some(request) => Failure::Unsent {
                        request: Box::new(request),
                        reason,
                    },
                    None if no_answer(e.error()) => Failure::NoAnswer { reason },
                    None => Failure::Broken {
                        reason: format!("invalid response: {reason}"),
                    },
                });
            }
        };
        let (parts, body) = head.into_parts();
        let body = match drive(&mut self.driver, Limited::new(body, max_body).collect()).await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::Broken {
                    reason: format!("the response body is larger than {max_body} bytes"),
                })
            }
            Err(e) => {
                return Err(Failure::Broken {
                    reason: format!("reading the response body: {}", error_chain(&*e)),
                })
            }
        };
        // One more turn lets hyper finish the exchange: it goes idle and asks for the next
        // request, or ends the connection (`Connection: close`, a body read to the end).
        poll_fn(|cx| {
            if let Some(driver) = self.driver.as_mut() {
                if Pin::new(&mut **driver).poll(cx).is_ready() {
                    self.driver = None;
                }
            }
            Poll::Ready(())
        })
        .await;
        let reusable = self.driver.is_some() && self.sender.is_ready();
        Ok((Response::from_parts(parts, Full::new(body)), reusable))
    }
}

/// Polls `fut` and, while it waits, the connection that will answer it. When the connection
/// ends first it is dropped, which fails whatever was waiting on it, so `fut` always finishes.
async fn drive<F: Future>(driver: &mut Option<Box<Driver>>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    poll_fn(|cx| loop {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        let Some(d) = driver.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(&mut **d).poll(cx) {
            Poll::Ready(result) => {
                if let Err(e) = result {
                    tracing::debug!(error = %error_chain(&e), "connection ended");
                }
                *driver = None;
            }
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

/// Whether a failure after the request went out means the connection closed or broke before any
/// answer (as opposed to an answer that could not be read).
fn no_answer(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() || e.is_body_write_aborted() {
        return true;
    }
    if e.is_user() {
        // The dispatch ended under the request (its connection was dropped).
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

/// A TLS handshake failure in words a user can act on.
fn tls_failure(e: &io::Error) -> String {
    let text = error_chain(e);
    if text.contains("UnknownIssuer") || text.contains("unknown issuer") {
        format!("TLS handshake: {text} (the server's certificate is not signed by a trusted CA: trust its CA with ClientOptions::tls, or --ca-cert FILE on the command line)")
    } else {
        format!("TLS handshake: {text}")
    }
}
