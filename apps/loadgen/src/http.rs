//! The HTTP/1.1 client: one keep-alive connection per worker, driven by hyper's connection API.
//!
//! Each worker owns its connection outright, so the set of workers is the connection pool: no
//! pool lock, no per-request pool-key lookup, no URL parsing and no middleware stack, which is
//! what a client sharing two cores with the service under test can afford. A broken connection
//! is dropped and redialled on the next request.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: the socket address, the `Host` header and a path prefix (for a service
/// mounted below `/`).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    pub prefix: String,
}

impl Target {
    /// Resolves `http://host[:port][/prefix]` once, so workers never touch DNS.
    pub async fn resolve(base: &str) -> Result<Target> {
        let rest = match base.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => bail!(
                "--base {base}: only plain http is supported (scheme `{scheme}`); run the \
                 generator beside the service"
            ),
            None => bail!("--base {base}: expected http://host:port"),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("--base {base}: expected http://host:port");
        }
        let with_port = if has_port(authority) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(with_port.as_str())
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .ok_or_else(|| anyhow!("{authority} resolves to no address"))?;
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority)
                .with_context(|| format!("--base {base}: invalid host"))?,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The request target for an XRPC method with an already-encoded query.
    pub fn xrpc_uri(&self, method: &str, query: &str) -> Result<Uri> {
        let s = if query.is_empty() {
            format!("{}/xrpc/{method}", self.prefix)
        } else {
            format!("{}/xrpc/{method}?{query}", self.prefix)
        };
        Uri::try_from(s.as_str()).with_context(|| format!("invalid request path {s}"))
    }
}

fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        // `[::1]` has colons but no port; `[::1]:80` ends its address before the last colon.
        Some(i) => !authority[i..].contains(']'),
        None => false,
    }
}

/// One request, prepared so that building it per call costs only reference-count bumps.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub uri: Uri,
    pub auth: HeaderValue,
    /// A JSON body, sent with `content-type: application/json`.
    pub body: Option<Bytes>,
}

/// A response read to the end.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// Why a request got no HTTP answer.
#[derive(Debug)]
pub enum Failure {
    /// Connect, write or read failed; the message is for the first-error report.
    Transport(String),
    Timeout,
}

/// A worker's connection, opened on first use.
#[derive(Debug)]
pub struct Conn {
    target: Target,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    json: HeaderValue,
}

impl Conn {
    pub fn new(target: Target, timeout: Duration) -> Conn {
        Conn {
            target,
            timeout,
            sender: None,
            json: HeaderValue::from_static("application/json"),
        }
    }

    /// Sends one request and reads the whole response, within the timeout.
    pub async fn send(&mut self, call: &Call) -> Result<Answer, Failure> {
        match tokio::time::timeout(self.timeout, self.send_inner(call)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.sender = None;
                Err(Failure::Transport(e))
            }
            Err(_) => {
                // The response may still arrive on this connection; only a new one is clean.
                self.sender = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn send_inner(&mut self, call: &Call) -> Result<Answer, String> {
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(call.uri.clone())
            .header(HOST, self.target.host.clone())
            .header(AUTHORIZATION, call.auth.clone());
        let body = match &call.body {
            Some(b) => {
                builder = builder.header(CONTENT_TYPE, self.json.clone());
                b.clone()
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let sender = self.ready().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the response failed: {e}"))?
            .to_bytes();
        Ok(Answer { status, body })
    }

    /// A connection ready for the next request: the kept-alive one, or a new one when the server
    /// closed it (which keep-alive servers do at will, so it is not counted as a failure).
    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if let Some(sender) = self.sender.as_mut()
            && sender.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            self.sender = Some(self.connect().await?);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.target.addr))?;
        // Requests are small and answered one at a time per connection: Nagle would only add
        // delay-ack stalls to the measured latency.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            // Errors surface on the sender side as failed requests.
            let _ = connection.await;
        });
        sender
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        Ok(sender)
    }
}

/// Percent-encodes a query value; atproto identifiers are mostly unreserved characters plus `:`.
pub fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_base_urls() {
        let t = Target::resolve("http://127.0.0.1:3100").await.unwrap();
        assert_eq!(t.addr, "127.0.0.1:3100".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:3100");
        assert_eq!(t.prefix, "");
        let t = Target::resolve("http://127.0.0.1/stratos/").await.unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.prefix, "/stratos");
        assert_eq!(
            t.xrpc_uri("a.b.c", "x=1").unwrap().to_string(),
            "/stratos/xrpc/a.b.c?x=1"
        );
        let t = Target::resolve("http://[::1]:8080").await.unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        assert!(Target::resolve("https://127.0.0.1").await.is_err());
        assert!(Target::resolve("127.0.0.1:3100").await.is_err());
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode_query_value("did:plc:ab-c_1"), "did:plc:ab-c_1");
        assert_eq!(encode_query_value("a b&c/d"), "a%20b%26c%2Fd");
    }
}
