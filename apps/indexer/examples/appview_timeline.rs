//! An AppView endpoint serving a viewer's private timeline from the index `stratos-indexer`
//! writes: plain hyper 1, `GET /xrpc/zone.stratos.feed.getTimeline` (`limit`, `cursor`,
//! `boundary`), viewers authenticated by atproto service-auth JWTs (as a PDS proxies them),
//! feeds from the AppView SDK, errors through the library's XRPC mapping.
//!
//! ```sh
//! APPVIEW_PG_URL=postgres://…/appview cargo run -p stratos-indexer --example appview_timeline
//! cargo run -p stratos-indexer --example appview_timeline -- --self-test   # exit 0/1
//! ```
//!
//! The self-test (on `STRATOS_TEST_POSTGRES_URL`, a fresh schema) seeds two posts, then asks over
//! real HTTP as a viewer who shares one boundary, and without a token.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use stratos_domain::auth::{ServiceJwtExpectation, verify_service_jwt};
use stratos_domain::crypto::PublicKey;
use stratos_domain::syntax::Did;
use stratos_ports::usecases::appview::{AppView, AppViewError, FeedParams};
use stratos_ports::xrpc::XrpcError;
use stratos_postgres::{AppViewConfig, PostgresAppViewIndex};

const APPVIEW_DID: &str = "did:web:appview.example";
const METHOD: &str = "zone.stratos.feed.getTimeline";

/// What the endpoint needs: the SDK and the viewers' keys (a stand-in for resolving DID
/// documents, which a real AppView does with its identity resolver).
struct App {
    appview: AppView,
    keys: HashMap<Did, PublicKey>,
}

impl App {
    /// The viewer of a request: `None` without a token; an error for a bad one.
    fn viewer(&self, req: &Request<Incoming>) -> Result<Option<Did>, AppViewError> {
        let Some(auth) = req.headers().get("authorization") else {
            return Ok(None);
        };
        let token = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
        let token = token.ok_or(AppViewError::AuthRequired)?;
        let iss = stratos_domain::auth::unverified_issuer(token)
            .map_err(|_| AppViewError::AuthRequired)?;
        let key = self.keys.get(&iss).ok_or(AppViewError::AuthRequired)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let expect = ServiceJwtExpectation::new(APPVIEW_DID, Some(METHOD), now);
        let claims = verify_service_jwt(token, &expect, std::slice::from_ref(key))
            .map_err(|_| AppViewError::AuthRequired)?;
        Ok(Some(claims.iss))
    }

    async fn timeline(&self, req: Request<Incoming>) -> Result<serde_json::Value, AppViewError> {
        let viewer = self.viewer(&req)?;
        let mut params = FeedParams::default();
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "limit" => {
                    let n = v
                        .parse()
                        .map_err(|_| AppViewError::InvalidRequest("bad limit".into()))?;
                    params.limit = Some(n);
                }
                "cursor" => params.cursor = Some(v.into_owned()),
                "boundary" => params.boundary = Some(v.into_owned()),
                _ => {}
            }
        }
        Ok(self
            .appview
            .timeline(viewer.as_ref(), &params)
            .await?
            .to_json())
    }
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != format!("/xrpc/{METHOD}") {
        return Ok(json(404, &serde_json::json!({ "error": "NotFound" })));
    }
    Ok(match app.timeline(req).await {
        Ok(body) => json(200, &body),
        Err(e) => {
            let e = XrpcError::from(e);
            json(e.status, &e.body())
        }
    })
}

fn json(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    res.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}

async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(app.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let self_test = std::env::args().any(|a| a == "--self-test");
    let var = if self_test {
        "STRATOS_TEST_POSTGRES_URL"
    } else {
        "APPVIEW_PG_URL"
    };
    let url = std::env::var(var).map_err(|_| format!("{var} is not set"))?;
    let schema = if self_test {
        format!("example{}", std::process::id())
    } else {
        "bsky".into()
    };
    let index = Arc::new(
        PostgresAppViewIndex::connect(&AppViewConfig {
            url,
            schema,
            pool_size: 4,
        })
        .await?,
    );
    let mut app = App {
        appview: AppView::builder(index.clone()).build(),
        keys: HashMap::new(),
    };
    let addr = if self_test {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3200"
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    if !self_test {
        println!("serving {base}/xrpc/{METHOD}");
        serve(Arc::new(app), listener).await;
        return Ok(());
    }
    let viewer = self_test::seed(&index, &mut app.keys).await?;
    tokio::spawn(serve(Arc::new(app), listener));
    let outcome = self_test::check(&base, &viewer).await;
    index.drop_schema().await?;
    outcome
}

/// The self-test's seeding and checks (not part of the endpoint).
mod self_test {
    use super::*;
    use stratos_domain::crypto::{KeyAlgorithm, Keypair};
    use stratos_ports::appview_store::{
        ActorCursor, EnrollmentChange, IndexBatch, IndexWriter, IndexedEnrollment, PostChange,
    };
    use stratos_testkit::conformance::appview_index::row;

    type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

    /// Seeds a post in `swordsmith` and one in `aekea`; the viewer holds `swordsmith`.
    pub async fn seed(
        index: &PostgresAppViewIndex,
        keys: &mut HashMap<Did, PublicKey>,
    ) -> Result<(Did, Keypair)> {
        let (author, viewer) = (Did::parse("did:plc:rei")?, Did::parse("did:plc:sakura")?);
        let changes = [
            ("3kaa", "in swordsmith", "swordsmith"),
            ("3kab", "in aekea", "aekea"),
        ]
        .iter()
        .map(|(rkey, text, b)| PostChange::Upsert(Box::new(row(&author, rkey, text, &[b], 1_000))))
        .collect();
        let cursor = ActorCursor { seq: 1, rev: None };
        index
            .apply(&[IndexBatch {
                did: author,
                replace: false,
                changes,
                cursor,
            }])
            .await?;
        let enrollment = IndexedEnrollment {
            did: viewer.clone(),
            service_url: "https://stratos.suite".into(),
            enrolled_at: "2026-12-07T00:00:00.000Z".into(),
            boundaries: vec!["did:web:stratos.suite/swordsmith".into()],
        };
        index
            .apply_enrollment(&EnrollmentChange::Upsert(enrollment), None)
            .await?;
        let key = Keypair::generate(KeyAlgorithm::P256);
        keys.insert(viewer.clone(), key.public_key().clone());
        Ok((viewer, key))
    }

    pub async fn check(base: &str, (viewer, key): &(Did, Keypair)) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let token = stratos_domain::auth::mint_service_jwt(
            key,
            viewer,
            APPVIEW_DID,
            Some(METHOD),
            now,
            60,
        )?;
        let (status, body) = get(base, Some(&token)).await?;
        let texts: Vec<&str> = body["feed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["post"]["record"]["text"].as_str())
            .collect();
        if status != 200 || texts != ["in swordsmith"] {
            return Err(format!("viewer: {status} {body}").into());
        }
        let (status, body) = get(base, None).await?;
        if status != 401 || body["error"] != "AuthRequired" {
            return Err(format!("anonymous: {status} {body}").into());
        }
        println!("appview_timeline self-test: ok");
        Ok(())
    }

    async fn get(base: &str, token: Option<&str>) -> Result<(u16, serde_json::Value)> {
        let mut req = stratos_testkit::http_client().get(format!("{base}/xrpc/{METHOD}?limit=10"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await?;
        Ok((res.status().as_u16(), res.json().await?))
    }
}
