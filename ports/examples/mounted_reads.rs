//! An existing (non-actix) HTTP app that mounts Stratos's XRPC reads under its own `/xrpc/`,
//! with the library's authentication: plain hyper 1, one route of its own (`/hello`), Stratos
//! on in-memory storage with the development bearer (`Authorization: Bearer <did>`).
//!
//! ```sh
//! cargo run -p stratos-ports --example mounted_reads                 # serves 127.0.0.1:3200
//! cargo run -p stratos-ports --example mounted_reads -- --self-test  # checks itself, exit 0/1
//! ```
//!
//! The self-test listens on a free port and makes real HTTP requests to itself: a reader who
//! may read the post gets it, one who may not gets the same answer as for a missing record, and
//! anonymous or unauthenticated requests read as anonymous.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use stratos_domain::syntax::Did;
use stratos_ports::Stratos;
use stratos_ports::auth::{AuthSettings, RequestView};
use stratos_ports::xrpc::{XrpcError, XrpcResponse, reads};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The largest request body the app reads (hydrateRecords takes at most 100 URIs).
const MAX_BODY: usize = 64 * 1024;
const POST: &str = "zone.stratos.feed.post";
const ALICE: &str = "did:web:alice.example";
const BOB: &str = "did:web:bob.example";
const CAROL: &str = "did:web:carol.example";

/// The app's one handler: its own route, then Stratos's reads, then 404.
async fn handle(
    stratos: Stratos,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/hello" {
        return Ok(respond(
            200,
            "text/plain",
            Bytes::from_static(b"hello from the host app\n"),
        ));
    }
    let view = request_view(&req);
    // The app reads the body under its own limit; only hydrateRecords looks at it.
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(xrpc_response(XrpcError::too_large(MAX_BODY).into())),
    };
    Ok(match reads::serve(&stratos, &view, &body).await {
        Some(answer) => xrpc_response(answer),
        None => respond(404, "text/plain", Bytes::from_static(b"not found\n")),
    })
}

/// hyper's request as the library's neutral view.
fn request_view(req: &Request<Incoming>) -> RequestView {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut view = RequestView::new(req.method().as_str(), target);
    let bytes = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    view.reserve_headers(req.headers().len(), bytes);
    for (name, value) in req.headers() {
        view.push_header(name.as_str(), value.as_bytes());
    }
    view
}

fn xrpc_response(answer: XrpcResponse) -> Response<Full<Bytes>> {
    let mut res = respond(
        answer.status,
        "application/json",
        Bytes::from(answer.body_bytes()),
    );
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            res.headers_mut().insert(name, value);
        }
    }
    res
}

fn respond(status: u16, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    res
}

/// Accepts connections forever, one task per connection.
async fn serve(listener: TcpListener, stratos: Stratos) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let stratos = stratos.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(stratos.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                eprintln!("connection: {e}");
            }
        });
    }
}

/// Stratos on in-memory storage: Alice and Bob hold `friends`, Carol `family`, and Alice posted
/// for friends. The URI of the post.
async fn stratos() -> Result<(Stratos, String), Error> {
    let stratos = stratos_testkit::memory::stratos(Did::parse("did:web:stratos.example")?)
        .boundaries(["friends", "family"])
        // The development bearer: `Authorization: Bearer <did>` is that account, unverified.
        // A production app keeps it off and passes real authorization servers and identity.
        .auth_settings(AuthSettings::default().dev_mode(true))
        .build()
        .await?;
    let (friends, family) = (&stratos.boundaries()[0], &stratos.boundaries()[1]);
    for (who, boundary) in [(ALICE, friends), (BOB, friends), (CAROL, family)] {
        let did = Did::parse(who)?;
        stratos
            .enrollments()
            .enroll_direct(&did, std::slice::from_ref(boundary))
            .await?;
    }
    let alice = Did::parse(ALICE)?;
    let post = json!({"$type": POST, "text": "for friends only",
        "createdAt": "2026-12-07T09:00:00.000Z", "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains", "values": [{"value": friends.as_str()}]}});
    let commit = stratos
        .records()
        .create_record(&alice, &alice, &POST.parse()?, None, post)
        .await?;
    let uri = commit
        .results
        .first()
        .ok_or("nothing written")?
        .uri
        .to_string();
    Ok((stratos, uri))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let self_test = std::env::args().any(|a| a == "--self-test");
    match run(self_test).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mounted_reads: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(self_test: bool) -> Result<(), Error> {
    let (stratos, uri) = stratos().await?;
    let listener = TcpListener::bind(if self_test {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3200"
    })
    .await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, stratos));
    if !self_test {
        let rkey = uri.rsplit('/').next().unwrap_or_default();
        println!("listening on http://{addr}; try");
        println!(
            "  curl -H 'authorization: Bearer {BOB}' \
             'http://{addr}/xrpc/com.atproto.repo.getRecord?repo={ALICE}&collection={POST}&rkey={rkey}'"
        );
        server.await?;
        return Ok(());
    }
    let result = self_test_against(addr, &uri).await;
    server.abort();
    result?;
    println!("mounted_reads self-test: all checks passed");
    Ok(())
}

/// One HTTP/1.1 request to the app: the status and the body (JSON when it parses).
async fn fetch(
    addr: SocketAddr,
    method: &str,
    target: &str,
    authorization: Option<&str>,
    body: &str,
) -> Result<(u16, Value), Error> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header(hyper::header::HOST, addr.to_string());
    if let Some(auth) = authorization {
        req = req.header(hyper::header::AUTHORIZATION, auth);
    }
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned())))?)
        .await?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

fn check(ok: bool, what: &str, got: &Value) -> Result<(), Error> {
    if ok {
        println!("ok   {what}");
        Ok(())
    } else {
        Err(format!("FAILED {what}: got {got}").into())
    }
}

async fn self_test_against(addr: SocketAddr, uri: &str) -> Result<(), Error> {
    let rkey = uri.rsplit('/').next().unwrap_or_default();
    let get = |rkey: &str| {
        format!("/xrpc/com.atproto.repo.getRecord?repo={ALICE}&collection={POST}&rkey={rkey}")
    };
    let bearer = |did: &str| format!("Bearer {did}");

    let (status, body) = fetch(addr, "GET", "/hello", None, "").await?;
    check(
        status == 200 && body.as_str().is_some_and(|b| b.starts_with("hello")),
        "the app's own route",
        &body,
    )?;

    let (status, body) = fetch(addr, "GET", &get(rkey), Some(&bearer(BOB)), "").await?;
    check(
        status == 200 && body["uri"] == uri && body["value"]["text"] == "for friends only",
        "a reader holding the boundary gets the record",
        &body,
    )?;

    let missing = fetch(addr, "GET", &get("3zzzzzzzzzzzz"), Some(&bearer(BOB)), "").await?;
    check(
        missing.0 == 400 && missing.1["error"] == "RecordNotFound",
        "a missing record is RecordNotFound",
        &missing.1,
    )?;
    for (who, auth) in [
        ("a reader without the boundary", Some(bearer(CAROL))),
        ("an anonymous reader", None),
        (
            "an unauthenticated credential (reads as anonymous)",
            Some("Bearer not-a-token".to_owned()),
        ),
    ] {
        let denied = fetch(addr, "GET", &get(rkey), auth.as_deref(), "").await?;
        check(
            denied == missing,
            &format!("{who} gets the answer of a missing record"),
            &denied.1,
        )?;
    }

    let list = format!("/xrpc/com.atproto.repo.listRecords?repo={ALICE}&collection={POST}");
    let (status, body) = fetch(addr, "GET", &list, None, "").await?;
    check(
        status == 200 && body["records"] == json!([]),
        "anonymous listRecords sees nothing",
        &body,
    )?;
    let (_, body) = fetch(addr, "GET", &list, Some(&bearer(BOB)), "").await?;
    check(
        body["records"][0]["uri"] == uri,
        "listRecords shows the reader the post",
        &body,
    )?;

    let hydrate = json!({ "uris": [uri] }).to_string();
    let path = "/xrpc/zone.stratos.repo.hydrateRecords";
    let (status, body) = fetch(addr, "POST", path, Some(&bearer(CAROL)), &hydrate).await?;
    check(
        status == 200 && body["notFound"] == json!([uri]) && body["records"] == json!([]),
        "hydrateRecords reports a denied record as notFound",
        &body,
    )?;

    let (status, body) = fetch(addr, "POST", &get(rkey), None, "").await?;
    check(
        status == 400 && body["error"] == "InvalidRequest",
        "a wrong HTTP method is 400",
        &body,
    )?;
    let (status, body) =
        fetch(addr, "GET", "/xrpc/com.atproto.repo.createRecord", None, "").await?;
    check(
        status == 404,
        "other paths stay the app's (404 here)",
        &body,
    )?;
    Ok(())
}
