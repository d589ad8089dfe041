//! A scripted HTTP/1.1 server for the cases the mock cannot produce on purpose: a `Retry-After`
//! date, a 207 without errors, a connection closed mid-keep-alive, a redirect elsewhere, a hang.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do with the next request, whichever connection it arrives on.
pub enum Script {
    /// Answer with this raw response (keep-alive).
    Respond(String),
    /// Close the connection without answering.
    CloseWithoutAnswer,
    /// Never answer.
    Hang,
}

impl Script {
    pub fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> Script {
        let mut r = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        r.push_str("\r\n");
        r.push_str(body);
        Script::Respond(r)
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Script>,
    requests: Vec<String>,
    bodies: Vec<String>,
    connections: usize,
}

pub struct ScriptedServer {
    addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl ScriptedServer {
    pub async fn start(script: Vec<Script>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared {
            script: script.into(),
            ..Shared::default()
        }));
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.lock().unwrap().connections += 1;
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        ScriptedServer { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn region(&self) -> cio_api::Region {
        cio_api::Region::custom(&self.url()).unwrap()
    }

    /// The request heads received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The request bodies received, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.shared.lock().unwrap().bodies.clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().connections
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let mut buf = Vec::new();
    loop {
        // Read one request: the head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
        buf.drain(..head_end + len);
        let action = {
            let mut s = shared.lock().unwrap();
            s.requests.push(head);
            s.bodies.push(body);
            s.script.pop_front()
        };
        match action {
            Some(Script::Respond(r)) => {
                if stream.write_all(r.as_bytes()).await.is_err() {
                    return;
                }
            }
            Some(Script::CloseWithoutAnswer) | None => return,
            Some(Script::Hang) => {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                return;
            }
        }
    }
}
