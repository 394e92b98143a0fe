//! The web app's state and routes (actix-web). A backend-for-frontend: the account's OAuth
//! session with its PDS stays on the server, the browser holds only a random session id in an
//! `HttpOnly`, `SameSite=Lax` cookie, and every form carries the session's CSRF token.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::{Value, json};
use stratos_client::xrpc::{Auth, StratosClient};
use stratos_domain::did_doc::DidDocument;
use stratos_domain::oauth::{AuthorizationState, AuthorizationTarget, CallbackParams, Session};
use stratos_domain::syntax::{AtIdentifier, AtUri, Did, Nsid, RecordKey};
use stratos_network::{HttpIdentityResolver, HttpOAuthClient};
use stratos_ports::appview_store::IndexWriter;
use stratos_ports::env::{IdentityResolver, PublicRecords};
use stratos_ports::pds_client::{AtprotoOAuthClient, PdsClientError, PdsWriter, StartOptions};
use stratos_ports::usecases::appview::{AppView, FeedParams};
use stratos_postgres::PostgresAppViewIndex;

use crate::feed::{self, FeedItem, PRIVATE_POST, PUBLIC_POST};
use crate::render::{self, MainView, Notice, PdsRecordStatus, ReplyTarget, ServiceStatus};

/// The session cookie.
pub const COOKIE: &str = "stratos_webapp";

/// The OAuth scope the app asks for: public posts on the PDS, and service-auth tokens for the
/// Stratos methods it calls as the account (`rpc:`; Stratos does not accept the PDS's own
/// access tokens, docs/auth.md says why).
pub const SCOPE: &str = "atproto repo:app.bsky.feed.post \
     rpc?lxm=com.atproto.repo.createRecord&lxm=com.atproto.repo.deleteRecord\
     &lxm=zone.stratos.enrollment.status&lxm=zone.stratos.enrollment.unenroll&aud=*";

/// Authors whose PDS records one feed reads at most.
const MAX_AUTHORS: usize = 50;
/// Records read per author and collection.
const PER_AUTHOR: usize = 30;
/// Sign-ins started and not finished that are kept at most (each lives 30 minutes): a flood of
/// `POST /login` cannot grow memory without bound.
const MAX_PENDING_FLOWS: usize = 10_000;
/// How long a browser stays signed in.
const SESSION_MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// Signed-in browsers kept at most; the oldest is signed out first.
const MAX_SESSIONS: usize = 10_000;
/// Lifetime asked for service-auth tokens; a cached one is used until a minute before.
const TOKEN_SECS: i64 = 300;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A failure the page shows. Messages are for the signed-in user; causes stay in the log.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The user's input.
    #[error("{0}")]
    Input(String),
    /// The PDS or its authorization server.
    #[error("your PDS: {0}")]
    Pds(#[source] PdsClientError),
    /// The Stratos service.
    #[error("the Stratos service: {0}")]
    Stratos(#[source] stratos_client::ClientError),
    /// The AppView index.
    #[error("the feed: {0}")]
    AppView(#[source] stratos_ports::usecases::appview::AppViewError),
    /// The session ended (signed out elsewhere, or the grant is gone).
    #[error("your session ended; sign in again")]
    SessionEnded,
}

/// One signed-in browser.
struct WebSession {
    /// When it signed in (Unix milliseconds): sessions end after [`SESSION_MAX_AGE_MS`].
    created_ms: i64,
    oauth: Session,
    handle: String,
    csrf: String,
    /// An error to show once on the next page.
    flash: Option<String>,
}

/// Where the app runs and what it talks to.
pub struct State {
    public_url: String,
    stratos_url: String,
    stratos_did: Option<String>,
    oauth: Arc<HttpOAuthClient>,
    identity: Arc<HttpIdentityResolver>,
    index: Arc<PostgresAppViewIndex>,
    appview: AppView,
    secure_cookie: bool,
    sessions: Mutex<HashMap<String, WebSession>>,
    flows: Mutex<HashMap<String, AuthorizationState>>,
    /// Accounts that signed in here: their PDS posts are in everyone's feed.
    known: Mutex<BTreeSet<Did>>,
    /// Service-auth tokens by (account, method): (token, expiry in Unix seconds).
    tokens: Mutex<HashMap<(Did, String), (String, i64)>>,
    /// The service's DID document.
    service_doc: tokio::sync::Mutex<Option<Value>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("public_url", &self.public_url)
            .field("stratos_url", &self.stratos_url)
            .finish_non_exhaustive()
    }
}

/// What [`State::new`] needs.
#[allow(missing_debug_implementations)] // holds clients without Debug worth printing
pub struct Parts {
    /// The URL browsers use.
    pub public_url: String,
    /// The Stratos service.
    pub stratos_url: String,
    /// Its DID, when configured.
    pub stratos_did: Option<String>,
    /// The OAuth client (redirect URI `{public_url}/oauth/callback`).
    pub oauth: Arc<HttpOAuthClient>,
    /// Identity and public records.
    pub identity: Arc<HttpIdentityResolver>,
    /// The indexer's database.
    pub index: Arc<PostgresAppViewIndex>,
    /// The AppView SDK over it.
    pub appview: AppView,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps half-updated (every
    // critical section is a single insert/remove/get), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    /// The state over its parts.
    pub fn new(parts: Parts) -> Self {
        Self {
            secure_cookie: parts.public_url.starts_with("https://"),
            public_url: parts.public_url,
            stratos_url: parts.stratos_url,
            stratos_did: parts.stratos_did,
            oauth: parts.oauth,
            identity: parts.identity,
            index: parts.index,
            appview: parts.appview,
            sessions: Mutex::new(HashMap::new()),
            flows: Mutex::new(HashMap::new()),
            known: Mutex::new(BTreeSet::new()),
            tokens: Mutex::new(HashMap::new()),
            service_doc: tokio::sync::Mutex::new(None),
        }
    }

    fn session_id(req: &HttpRequest) -> Option<String> {
        req.cookie_value(COOKIE)
    }

    fn session(&self, sid: &str) -> Option<(Session, String, String, Option<String>)> {
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(sid)
            .is_some_and(|s| now_ms() - s.created_ms > SESSION_MAX_AGE_MS)
        {
            sessions.remove(sid);
            return None;
        }
        let s = sessions.get_mut(sid)?;
        Some((
            s.oauth.clone(),
            s.handle.clone(),
            s.csrf.clone(),
            s.flash.take(),
        ))
    }

    fn store_session(&self, sid: &str, oauth: Session) {
        if let Some(s) = lock(&self.sessions).get_mut(sid) {
            s.oauth = oauth;
        }
    }

    fn flash(&self, sid: &str, message: String) {
        if let Some(s) = lock(&self.sessions).get_mut(sid) {
            s.flash = Some(message);
        }
    }

    /// The service's DID document (fetched once; a failure is retried on the next call).
    async fn service_doc(&self) -> Result<Value, WebError> {
        let mut slot = self.service_doc.lock().await;
        if let Some(doc) = slot.as_ref() {
            return Ok(doc.clone());
        }
        let doc = StratosClient::new(&self.stratos_url)
            .map_err(WebError::Stratos)?
            .did_document()
            .await
            .map_err(WebError::Stratos)?;
        *slot = Some(doc.clone());
        Ok(doc)
    }

    async fn stratos_did(&self) -> Result<String, WebError> {
        if let Some(did) = &self.stratos_did {
            return Ok(did.clone());
        }
        let doc = self.service_doc().await?;
        doc["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| WebError::Input("the service's DID document has no id".into()))
    }

    /// The session, refreshed first when its access token is about to expire.
    async fn fresh(&self, sid: &str) -> Result<Session, WebError> {
        let (session, ..) = self.session(sid).ok_or(WebError::SessionEnded)?;
        if session.needs_refresh(now_ms() / 1000, 60) {
            return self.refresh(sid, &session).await;
        }
        Ok(session)
    }

    async fn refresh(&self, sid: &str, session: &Session) -> Result<Session, WebError> {
        match self.oauth.refresh(session).await {
            Ok(s) => {
                self.store_session(sid, s.clone());
                Ok(s)
            }
            Err(PdsClientError::ReauthorizationRequired(_)) => {
                lock(&self.sessions).remove(sid);
                Err(WebError::SessionEnded)
            }
            Err(e) => Err(WebError::Pds(e)),
        }
    }

    /// A service-auth token from the account's PDS for the Stratos method `lxm`.
    async fn service_token(&self, sid: &str, lxm: &str) -> Result<String, WebError> {
        let session = self.fresh(sid).await?;
        let key = (session.did.clone(), lxm.to_owned());
        let now = now_ms() / 1000;
        if let Some((token, exp)) = lock(&self.tokens).get(&key)
            && now < exp - 60
        {
            return Ok(token.clone());
        }
        let aud = self.stratos_did().await?;
        let nsid = Nsid::parse(lxm).map_err(|e| WebError::Input(e.to_string()))?;
        let exp = now + TOKEN_SECS;
        let answer = match self.oauth.service_auth(&session, &aud, &nsid, exp).await {
            Err(PdsClientError::TokenRejected(_)) => {
                let session = self.refresh(sid, &session).await?;
                self.oauth.service_auth(&session, &aud, &nsid, exp).await
            }
            other => other,
        };
        let (token, changed) = answer.map_err(WebError::Pds)?;
        if let Some(s) = changed {
            self.store_session(sid, s);
        }
        lock(&self.tokens).insert(key, (token.clone(), exp));
        Ok(token)
    }

    async fn stratos_as(&self, sid: &str, lxm: &str) -> Result<StratosClient, WebError> {
        let token = self.service_token(sid, lxm).await?;
        Ok(StratosClient::new(&self.stratos_url)
            .map_err(WebError::Stratos)?
            .with_auth(Auth::Bearer(token)))
    }

    /// A record write on the PDS, refreshing once when the PDS refuses the token.
    async fn pds_write(
        &self,
        sid: &str,
        collection: &Nsid,
        rkey: &RecordKey,
        record: Option<&Value>,
    ) -> Result<(), WebError> {
        let mut session = self.fresh(sid).await?;
        let mut retried = false;
        loop {
            let result = match record {
                Some(r) => self.oauth.put_record(&session, collection, rkey, r).await,
                None => self.oauth.delete_record(&session, collection, rkey).await,
            };
            match result {
                Ok(w) => {
                    if let Some(s) = w.session {
                        self.store_session(sid, s);
                    }
                    return Ok(());
                }
                Err(PdsClientError::TokenRejected(_)) if !retried => {
                    retried = true;
                    session = self.refresh(sid, &session).await?;
                }
                Err(e) => return Err(WebError::Pds(e)),
            }
        }
    }

    async fn handle_of(&self, did: &Did) -> String {
        match self.identity.resolve_did(did).await {
            Ok(Some(doc)) => DidDocument::from_json(&doc)
                .ok()
                .and_then(|d| {
                    d.also_known_as()
                        .iter()
                        .find_map(|a| a.strip_prefix("at://").map(str::to_owned))
                })
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    async fn status(&self, sid: &str, did: &Did) -> ServiceStatus {
        let client = match self.stratos_as(sid, "zone.stratos.enrollment.status").await {
            Ok(c) => c,
            Err(e) => return ServiceStatus::Unknown(e.to_string()),
        };
        match client.enrollment_status(did).await {
            Ok(s) if s.enrolled => ServiceStatus::Enrolled {
                boundaries: feed::boundary_values(&s.boundaries),
                needs_authorization: s.needs_authorization.unwrap_or(false),
            },
            Ok(_) => ServiceStatus::NotEnrolled,
            Err(e) => ServiceStatus::Unknown(e.to_string()),
        }
    }

    async fn pds_record(&self, did: &Did) -> PdsRecordStatus {
        let (doc, service_did) = match (self.service_doc().await, self.stratos_did().await) {
            (Ok(doc), Ok(s)) => (doc, s),
            (Err(e), _) | (_, Err(e)) => return PdsRecordStatus::Unknown(e.to_string()),
        };
        let Ok(service_did) = Did::parse(&service_did) else {
            return PdsRecordStatus::Unknown("the service DID does not parse".into());
        };
        let Ok(rkey) = stratos_domain::enrollment::enrollment_rkey(&service_did) else {
            return PdsRecordStatus::Unknown("no record key for the service DID".into());
        };
        let Ok(collection) = Nsid::parse(stratos_domain::enrollment::ENROLLMENT_COLLECTION) else {
            return PdsRecordStatus::Unknown("collection".into());
        };
        let records = match self.identity.list_records(did, &collection, 20).await {
            Ok(r) => r,
            Err(e) => return PdsRecordStatus::Unknown(e.to_string()),
        };
        let Some((_, value)) = records.into_iter().find(|(k, _)| *k == rkey) else {
            return PdsRecordStatus::Missing;
        };
        let mut last = String::from("the service's DID document lists no key");
        for key in stratos_client::discovery::document_keys(&doc) {
            match stratos_client::verify::enrollment_record(did, &value, &key) {
                Ok(_) => return PdsRecordStatus::Verified,
                Err(e) => last = e.to_string(),
            }
        }
        PdsRecordStatus::Unverified(last)
    }

    /// Public posts and stubs of one author, from their PDS.
    async fn author_records(&self, did: Did) -> (Did, String, Vec<FeedItem>, Vec<FeedItem>, bool) {
        let (Ok(public), Ok(private)) = (Nsid::parse(PUBLIC_POST), Nsid::parse(PRIVATE_POST))
        else {
            return (did, String::new(), vec![], vec![], false);
        };
        let (handle, posts, stubs) = futures_util::join!(
            self.handle_of(&did),
            self.identity.list_records(&did, &public, PER_AUTHOR),
            self.identity.list_records(&did, &private, PER_AUTHOR),
        );
        let ok = posts.is_ok() && stubs.is_ok();
        let posts = posts
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| feed::public_item(&did, k.as_str(), v))
            .collect();
        let stubs = stubs
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, v)| feed::stub_item(&did, k.as_str(), v))
            .collect();
        (did, handle, posts, stubs, ok)
    }

    /// The viewer's merged feed, the authors' handles, and a warning when a part is missing.
    async fn feed(&self, viewer: &Did) -> (Vec<FeedItem>, HashMap<Did, String>, Option<String>) {
        let mut authors: BTreeSet<Did> = lock(&self.known).clone();
        authors.insert(viewer.clone());
        let mut warning = None;
        match self.index.enrollments().await {
            Ok(list) => authors.extend(list.into_iter().map(|e| e.did)),
            Err(e) => {
                tracing::warn!(error = %e, "indexed enrollments");
                warning = Some("The list of enrolled accounts could not be read.".to_owned());
            }
        }
        let params = FeedParams {
            limit: Some(100),
            ..FeedParams::default()
        };
        let timeline = self.appview.timeline(Some(viewer), &params);
        let records = join_all(
            authors
                .into_iter()
                .take(MAX_AUTHORS)
                .map(|d| self.author_records(d)),
        );
        let (timeline, records) = futures_util::join!(timeline, records);
        let private: Vec<FeedItem> = match timeline {
            Ok(page) => page.feed.iter().map(feed::private_item).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "timeline");
                warning = Some(format!("Private posts could not be read: {e}"));
                vec![]
            }
        };
        let mut handles = HashMap::new();
        let (mut public, mut stubs) = (vec![], vec![]);
        for (did, handle, p, s, ok) in records {
            if !ok {
                warning.get_or_insert_with(|| {
                    format!(
                        "The PDS of {} did not answer.",
                        feed::short_did(did.as_str())
                    )
                });
            }
            handles.insert(did, handle);
            public.extend(p);
            stubs.extend(s);
        }
        (feed::merge(public, private, stubs), handles, warning)
    }

    async fn reply_target(&self, viewer: &Did, uri: &str) -> Option<ReplyTarget> {
        let parsed = AtUri::parse(uri).ok()?;
        let author = did_of(&parsed)?;
        let private = parsed.collection().map(|c| c.as_str()) == Some(PRIVATE_POST);
        if private {
            // Only a post the viewer may read can be replied to.
            self.appview.get_post(Some(viewer), &parsed).await.ok()?;
        }
        let handle = self.handle_of(&author).await;
        Some(ReplyTarget {
            uri: uri.to_owned(),
            author: if handle.is_empty() {
                feed::short_did(author.as_str())
            } else {
                format!("@{handle}")
            },
            private,
        })
    }

    /// `{root, parent}` strong references for a reply to `uri`.
    async fn reply_refs(&self, viewer: &Did, uri: &str) -> Result<(Value, bool), WebError> {
        let bad = || WebError::Input("the post replied to is not available".into());
        let parsed = AtUri::parse(uri).map_err(|_| bad())?;
        let author = did_of(&parsed).ok_or_else(bad)?;
        let collection = parsed.collection().ok_or_else(bad)?;
        let rkey = parsed.rkey().ok_or_else(bad)?;
        if collection.as_str() == PRIVATE_POST {
            let post = self
                .appview
                .get_post(Some(viewer), &parsed)
                .await
                .map_err(|_| bad())?;
            let parent = json!({ "uri": uri, "cid": post.row.cid.to_string() });
            let root = match (&post.row.reply_root, &post.row.reply_root_cid) {
                (Some(u), Some(c)) => json!({ "uri": u, "cid": c }),
                _ => parent.clone(),
            };
            return Ok((json!({ "root": root, "parent": parent }), true));
        }
        let doc = self
            .identity
            .resolve_did(&author)
            .await
            .ok()
            .flatten()
            .ok_or_else(bad)?;
        let pds = stratos_domain::did_doc::pds_endpoint(&doc).ok_or_else(bad)?;
        let record = self
            .oauth
            .get_record_public(&pds, &author, collection, rkey)
            .await
            .map_err(WebError::Pds)?
            .ok_or_else(bad)?;
        let parent = json!({ "uri": uri, "cid": record.cid.ok_or_else(bad)? });
        let root = record
            .value
            .get("reply")
            .and_then(|r| r.get("root"))
            .cloned()
            .unwrap_or_else(|| parent.clone());
        Ok((json!({ "root": root, "parent": parent }), false))
    }
}

/// The author of a URI named by DID (a handle authority is not resolved here).
fn did_of(uri: &AtUri) -> Option<Did> {
    match uri.authority() {
        AtIdentifier::Did(d) => Some(d.clone()),
        AtIdentifier::Handle(_) => None,
    }
}

trait CookieValue {
    fn cookie_value(&self, name: &str) -> Option<String>;
}

impl CookieValue for HttpRequest {
    fn cookie_value(&self, name: &str) -> Option<String> {
        self.headers()
            .get_all(header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

fn session_cookie(state: &State, value: &str, max_age: Option<i64>) -> String {
    let mut c = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if state.secure_cookie {
        c.push_str("; Secure");
    }
    c
}

/// `GET /`: the sign-in page, or the signed-in page.
pub async fn index(
    state: web::Data<State>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let Some(sid) = State::session_id(&req) else {
        return html(render::login_page(None));
    };
    let Some((session, handle, csrf, flash)) = state.session(&sid) else {
        return html(render::login_page(None));
    };
    let did = session.did.clone();
    let mut notice = query.get("notice").and_then(|n| Notice::parse(n));
    if query.get("stratos_enrolled").map(String::as_str) == Some("true") {
        // Back from the service's enrollment: the boundaries changed.
        state.appview.invalidate(&did);
        notice = Some(Notice::Enrolled);
    }
    let tab = query.get("tab").cloned();
    let reply = query.get("reply").cloned();
    let domains = async {
        match StratosClient::new(&state.stratos_url) {
            Ok(c) => c.list_domains().await.unwrap_or_default(),
            Err(_) => vec![],
        }
    };
    let reply_target = async {
        match &reply {
            Some(uri) => state.reply_target(&did, uri).await,
            None => None,
        }
    };
    let (status, pds_record, domains, (items, handles, feed_warning), reply_to) = futures_util::join!(
        state.status(&sid, &did),
        state.pds_record(&did),
        domains,
        state.feed(&did),
        reply_target,
    );
    let held: Vec<String> = match &status {
        ServiceStatus::Enrolled { boundaries, .. } => boundaries.clone(),
        _ => vec![],
    };
    let tab = tab.filter(|t| held.contains(t));
    let shown = feed::filter(&items, tab.as_deref());
    let enroll_url = format!(
        "{}/oauth/authorize?handle={}&redirect_uri={}",
        state.stratos_url,
        render::query_escape(did.as_str()),
        render::query_escape(&format!("{}/", state.public_url))
    );
    let view = MainView {
        did,
        handle,
        csrf,
        enroll_url,
        status,
        pds_record,
        domains,
        tab,
        feed: feed::threads(&shown),
        handles,
        reply_to,
        notice,
        error: flash,
        feed_warning,
        now_ms: now_ms(),
    };
    html(render::main_page(&view))
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    handle: String,
}

/// `POST /login`: starts the OAuth flow with the account's authorization server.
pub async fn login(state: web::Data<State>, form: web::Form<LoginForm>) -> HttpResponse {
    let target = match AuthorizationTarget::parse(&form.handle) {
        Ok(t) => t,
        Err(_) => {
            return HttpResponse::BadRequest()
                .content_type("text/html; charset=utf-8")
                .body(render::login_page(Some(
                    "That is not a handle, a DID or an https:// address.",
                )));
        }
    };
    match state
        .oauth
        .start_authorization(&target, &StartOptions::default())
        .await
    {
        Ok((request, flow)) => {
            let mut flows = lock(&state.flows);
            // Abandoned flows expire; prune them so the map stays bounded by live sign-ins.
            let now = now_ms() / 1000;
            flows.retain(|_, f| f.expires_at() > now);
            if flows.len() >= MAX_PENDING_FLOWS {
                return HttpResponse::ServiceUnavailable()
                    .content_type("text/html; charset=utf-8")
                    .body(render::login_page(Some(
                        "Too many sign-ins are in progress. Try again in a few minutes.",
                    )));
            }
            flows.insert(request.state.clone(), flow);
            see_other(&request.url)
        }
        Err(e) => {
            tracing::info!(error = %e, "sign-in could not start");
            HttpResponse::BadRequest()
                .content_type("text/html; charset=utf-8")
                .body(render::login_page(Some(&format!(
                    "Could not start signing in: {e}"
                ))))
        }
    }
}

/// `GET /oauth/callback`: finishes the flow and signs the browser in.
pub async fn callback(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    let params = CallbackParams::from_query(req.query_string());
    let flow = params
        .state
        .as_ref()
        .and_then(|s| lock(&state.flows).remove(s));
    let Some(flow) = flow else {
        return HttpResponse::BadRequest()
            .content_type("text/html; charset=utf-8")
            .body(render::error_page(
                "Sign-in failed",
                "This sign-in is unknown or expired. Start again.",
            ));
    };
    let session = match state.oauth.finish_authorization(flow, &params).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "sign-in refused");
            return HttpResponse::BadRequest()
                .content_type("text/html; charset=utf-8")
                .body(render::error_page("Sign-in failed", &e.to_string()));
        }
    };
    let handle = state.handle_of(&session.did).await;
    lock(&state.known).insert(session.did.clone());
    let sid = random_token();
    let mut sessions = lock(&state.sessions);
    let now = now_ms();
    sessions.retain(|_, s| now - s.created_ms <= SESSION_MAX_AGE_MS);
    if sessions.len() >= MAX_SESSIONS
        && let Some(oldest) = sessions
            .iter()
            .min_by_key(|(_, s)| s.created_ms)
            .map(|(k, _)| k.clone())
    {
        sessions.remove(&oldest);
    }
    // Expired service-auth tokens go too.
    lock(&state.tokens).retain(|_, (_, exp)| *exp * 1000 > now);
    sessions.insert(
        sid.clone(),
        WebSession {
            created_ms: now,
            oauth: session,
            handle,
            csrf: random_token(),
            flash: None,
        },
    );
    drop(sessions);
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .insert_header((
            header::SET_COOKIE,
            session_cookie(&state, &sid, Some(SESSION_MAX_AGE_MS / 1000)),
        ))
        .finish()
}

/// The session of a form post whose CSRF token matches, or `None`.
fn form_session(state: &State, req: &HttpRequest, csrf: &str) -> Option<(String, Did)> {
    let sid = State::session_id(req)?;
    let (session, _, expected, _) = state.session(&sid)?;
    // Constant time is not needed against a 256-bit random token compared once per request,
    // but costs nothing.
    let same = expected.len() == csrf.len()
        && expected
            .bytes()
            .zip(csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same.then_some((sid, session.did))
}

fn refused() -> HttpResponse {
    HttpResponse::Forbidden()
        .content_type("text/html; charset=utf-8")
        .body(render::error_page(
            "Not allowed",
            "This form is from another session. Reload the page and try again.",
        ))
}

/// Forms with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /logout`: revokes the OAuth session and forgets the browser.
pub async fn logout(
    state: web::Data<State>,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let Some((sid, _)) = form_session(&state, &req, &form.csrf) else {
        return refused();
    };
    let removed = lock(&state.sessions).remove(&sid);
    if let Some(s) = removed
        && let Err(e) = state.oauth.revoke(&s.oauth).await
    {
        tracing::info!(error = %e, "revocation failed; the session is forgotten anyway");
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .insert_header((header::SET_COOKIE, session_cookie(&state, "", Some(0))))
        .finish()
}

/// The composer.
#[derive(Debug, Deserialize)]
pub struct PostForm {
    csrf: String,
    text: String,
    #[serde(default)]
    private: Option<String>,
    #[serde(default)]
    boundary: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
}

async fn write_post(state: &State, sid: &str, did: &Did, form: &PostForm) -> Result<(), WebError> {
    let text = form.text.trim();
    if text.is_empty() {
        return Err(WebError::Input("A post needs text.".into()));
    }
    let created_at = stratos_domain::syntax::Datetime::from_unix_millis(now_ms()).to_string();
    let (reply, parent_private) = match form.reply_to.as_deref().filter(|s| !s.is_empty()) {
        Some(uri) => {
            let (refs, private) = state.reply_refs(did, uri).await?;
            (Some(refs), private)
        }
        None => (None, false),
    };
    let private = form.private.is_some() || parent_private;
    if private {
        // Never fall back to a public post: a private post without a boundary is an error
        // (the original silently posted it publicly).
        let boundary = form
            .boundary
            .as_deref()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| WebError::Input("Choose a boundary for a private post.".into()))?;
        let mut record = json!({
            "$type": PRIVATE_POST,
            "text": text,
            "boundary": {
                "$type": "zone.stratos.boundary.defs#Domains",
                "values": [{ "value": boundary }],
            },
            "createdAt": created_at,
        });
        if let Some(r) = reply {
            record["reply"] = r;
        }
        let collection = Nsid::parse(PRIVATE_POST).map_err(|e| WebError::Input(e.to_string()))?;
        state
            .stratos_as(sid, "com.atproto.repo.createRecord")
            .await?
            .create_record(did, &collection, None, &record)
            .await
            .map_err(WebError::Stratos)?;
    } else {
        let mut record = json!({ "$type": PUBLIC_POST, "text": text, "createdAt": created_at });
        if let Some(r) = reply {
            record["reply"] = r;
        }
        let collection = Nsid::parse(PUBLIC_POST).map_err(|e| WebError::Input(e.to_string()))?;
        let rkey = RecordKey::parse(stratos_domain::tid::next().as_str())
            .map_err(|e| WebError::Input(e.to_string()))?;
        state
            .pds_write(sid, &collection, &rkey, Some(&record))
            .await?;
    }
    Ok(())
}

/// `POST /post`: a private post to Stratos, or a public one to the PDS.
pub async fn post(
    state: web::Data<State>,
    req: HttpRequest,
    form: web::Form<PostForm>,
) -> HttpResponse {
    let Some((sid, did)) = form_session(&state, &req, &form.csrf) else {
        return refused();
    };
    match write_post(&state, &sid, &did, &form).await {
        Ok(()) => see_other(&format!("/?notice={}", Notice::Posted.code())),
        Err(e) => {
            tracing::info!(error = %e, "post failed");
            state.flash(&sid, format!("Not posted: {e}"));
            see_other("/")
        }
    }
}

/// The delete button.
#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    csrf: String,
    uri: String,
}

async fn delete_post(state: &State, sid: &str, did: &Did, uri: &str) -> Result<(), WebError> {
    let bad = || WebError::Input("Only your own posts can be deleted.".into());
    let parsed = AtUri::parse(uri).map_err(|_| bad())?;
    if did_of(&parsed).as_ref() != Some(did) {
        return Err(bad());
    }
    let collection = parsed.collection().ok_or_else(bad)?.clone();
    let rkey = parsed.rkey().ok_or_else(bad)?.clone();
    match collection.as_str() {
        PRIVATE_POST => {
            state
                .stratos_as(sid, "com.atproto.repo.deleteRecord")
                .await?
                .delete_record(did, &collection, &rkey)
                .await
                .map_err(WebError::Stratos)?;
        }
        PUBLIC_POST => state.pds_write(sid, &collection, &rkey, None).await?,
        _ => return Err(bad()),
    }
    Ok(())
}

/// `POST /delete`.
pub async fn delete(
    state: web::Data<State>,
    req: HttpRequest,
    form: web::Form<DeleteForm>,
) -> HttpResponse {
    let Some((sid, did)) = form_session(&state, &req, &form.csrf) else {
        return refused();
    };
    match delete_post(&state, &sid, &did, &form.uri).await {
        Ok(()) => see_other(&format!("/?notice={}", Notice::Deleted.code())),
        Err(e) => {
            state.flash(&sid, format!("Not deleted: {e}"));
            see_other("/")
        }
    }
}

/// `POST /unenroll`: leaves the Stratos service (its private data is deleted there).
pub async fn unenroll(
    state: web::Data<State>,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let Some((sid, did)) = form_session(&state, &req, &form.csrf) else {
        return refused();
    };
    let result = async {
        state
            .stratos_as(&sid, "zone.stratos.enrollment.unenroll")
            .await?
            .unenroll()
            .await
            .map_err(WebError::Stratos)
    }
    .await;
    state.appview.invalidate(&did);
    match result {
        Ok(()) => see_other(&format!("/?notice={}", Notice::Unenrolled.code())),
        Err(e) => {
            state.flash(&sid, format!("Could not leave: {e}"));
            see_other("/")
        }
    }
}

/// `GET /style.css`.
pub async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(include_str!("../static/style.css"))
}

/// `GET /health`.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "ok": true }))
}

/// The routes, for [`actix_web::App::configure`].
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::post().to(login))
        .route("/oauth/callback", web::get().to(callback))
        .route("/logout", web::post().to(logout))
        .route("/post", web::post().to(post))
        .route("/delete", web::post().to(delete))
        .route("/unenroll", web::post().to(unenroll))
        .route("/style.css", web::get().to(style))
        .route("/health", web::get().to(health));
}

/// Response headers every page gets: no framing, no scripts, no sniffing, no referrer leaks.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "same-origin"))
}

/// The address a server is listening on.
pub type Addr = SocketAddr;
