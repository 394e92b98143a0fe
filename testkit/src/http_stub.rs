//! A tiny HTTP/1.1 server for tests of code that fetches from the network (DID documents,
//! OAuth metadata, key sets, allow-lists): fixed answers by path, 404 for anything else, and a
//! log of what was asked. Loopback only; one request per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One canned answer.
#[derive(Debug, Clone)]
pub struct StubReply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: String,
}

impl StubReply {
    /// A 200 JSON answer.
    pub fn json(value: &Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json".into(),
            body: value.to_string(),
        }
    }

    /// An answer with `status` and a plain-text body.
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain".into(),
            body: body.into(),
        }
    }
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, StubReply>>,
    seen: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server; it runs until the runtime that started it stops.
#[derive(Clone)]
pub struct StubServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StubServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StubServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl StubServer {
    /// Binds `127.0.0.1` on a free port and starts answering.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        if head.len() > 64 * 1024 {
                            return;
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    lock(&state.seen).push(path.clone());
                    let reply = lock(&state.routes)
                        .get(&path)
                        .cloned()
                        .unwrap_or_else(|| StubReply::status(404, "not found"));
                    let out = format!(
                        "HTTP/1.1 {} Stub\r\nConnection: close\r\nContent-Type: {}\r\n\
                         Content-Length: {}\r\n\r\n{}",
                        reply.status,
                        reply.content_type,
                        reply.body.len(),
                        reply.body
                    );
                    let _ = socket.write_all(out.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Self { addr, shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `path` (with its query, if any) with `reply` from now on.
    pub fn route(&self, path: &str, reply: StubReply) {
        lock(&self.shared.routes).insert(path.to_owned(), reply);
    }

    /// Answers `path` with a JSON document.
    pub fn json(&self, path: &str, value: &Value) {
        self.route(path, StubReply::json(value));
    }

    /// How many requests asked for `path`.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.shared.seen)
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}
