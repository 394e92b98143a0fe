//! `stratos-loadgen`: drives a running Stratos service (or anything that answers the same XRPC
//! requests) with development auth and reports throughput, latency percentiles and failures.
//!
//! A run is: enroll the actors and the two viewers, seed records when the workload reads, then
//! `concurrency` closed-loop workers, each on its own keep-alive connection, for warm-up plus the
//! measured window. Only answers that arrive inside the window are counted.

pub mod args;
pub mod cpu;
pub mod histogram;
pub mod http;
pub mod report;
pub mod stamp;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Uri};

use crate::args::{Config, Mix, Workload};
use crate::http::{Answer, Call, Conn, Failure, Target, encode_query_value};
use crate::report::{Report, Setup};
use crate::stats::{Op, Stats, excerpt};

const COLLECTION: &str = "zone.stratos.feed.post";
const CREATE: &str = "com.atproto.repo.createRecord";
const GET: &str = "com.atproto.repo.getRecord";
const LIST: &str = "com.atproto.repo.listRecords";
const ENROLL: &str = "zone.stratos.admin.enrollActor";
const LIST_DOMAINS: &str = "zone.stratos.server.listDomains";

/// After a failed connect or a reset the server is likely down or overloaded: pausing keeps
/// the workers from spinning on the CPU the service needs.
const FAILURE_PAUSE: Duration = Duration::from_millis(5);

/// Runs the whole thing: setup, warm-up, measurement.
pub async fn run(cfg: &Config) -> Result<Report> {
    let progress = |msg: &str| {
        if !cfg.quiet {
            eprintln!("stratos-loadgen: {msg}");
        }
    };
    let target = Target::resolve(&cfg.base).await?;
    let mut setup = Setup::default();

    let mut record_boundary = None;
    if cfg.enroll {
        record_boundary = enroll(cfg, &target, &mut setup).await?;
        progress(&format!(
            "enrolled {} accounts ({} failed)",
            setup.enrolled, setup.enroll_failed
        ));
    }
    let record_boundary = match record_boundary {
        Some(b) => b,
        None => qualify_from_list_domains(cfg, &target).await,
    };
    setup.record_boundary = record_boundary.clone();

    let plan = Arc::new(Plan::new(cfg, target, &record_boundary)?);

    let gets: Arc<[Uri]> = if cfg.workload == Workload::Create {
        Arc::from(Vec::new())
    } else {
        let started = Instant::now();
        let seeded = seed(cfg, &plan, &mut setup).await?;
        progress(&format!(
            "seeded {} records ({} failed) in {:.1} s",
            seeded.len(),
            setup.seed_failed,
            started.elapsed().as_secs_f64()
        ));
        Arc::from(seeded)
    };

    progress(&format!(
        "{} workload: {} connections, warm-up {:.1} s, measuring {:.1} s",
        cfg.workload.name(),
        cfg.concurrency,
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64()
    ));
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    let clock_seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut handles = Vec::with_capacity(cfg.concurrency);
    for w in 0..cfg.concurrency {
        let worker = Worker {
            index: w,
            plan: Arc::clone(&plan),
            gets: Arc::clone(&gets),
            rng: Rng::new(clock_seed ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            own_actors: own_actors(w, cfg.concurrency, cfg.actors),
        };
        handles.push(tokio::spawn(worker.run(start, end)));
    }
    // CPU at the window's edges, sampled off the workers.
    let pid = cfg.pid;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let first = cpu::Sample::take(pid);
        tokio::time::sleep_until(end.into()).await;
        first.until(cpu::Sample::take(pid))
    });
    let mut stats = Stats::default();
    let mut warmup_requests = 0;
    for h in handles {
        let (s, warm) = h.await.context("a worker stopped abnormally")?;
        stats.merge(s);
        warmup_requests += warm;
    }
    let cpu = cpu.await.context("the CPU sampler stopped abnormally")?;
    Ok(Report {
        cpu,
        pid: cfg.pid,
        workload: cfg.workload,
        base: cfg.base.clone(),
        actors: cfg.actors,
        concurrency: cfg.concurrency,
        threads: cfg.threads,
        window: cfg.duration,
        warmup: cfg.warmup,
        warmup_requests,
        setup,
        stats,
    })
}

/// Everything the workers share, prepared once so a request costs as few allocations as
/// possible.
#[derive(Debug)]
struct Plan {
    target: Target,
    timeout: Duration,
    workload: Workload,
    mix: Mix,
    denied_fraction: f64,
    actors: Vec<Actor>,
    create_uri: Uri,
    /// The create body from the end of `text` to the start of the `createdAt` value.
    body_middle: String,
    viewer: HeaderValue,
    stranger: HeaderValue,
}

#[derive(Debug)]
struct Actor {
    did: String,
    auth: HeaderValue,
    /// The create body up to the start of the `text` value.
    body_head: String,
    list_uri: Uri,
}

fn bearer(token: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .with_context(|| format!("`{token}` cannot be sent in an Authorization header"))
}

impl Plan {
    fn new(cfg: &Config, target: Target, record_boundary: &str) -> Result<Plan> {
        let collection = encode_query_value(COLLECTION);
        let actors = (0..cfg.actors)
            .map(|i| {
                let did = cfg.actor_did(i);
                let head = format!(
                    r#"{{"repo":{},"collection":"{COLLECTION}","record":{{"$type":"{COLLECTION}","text":""#,
                    serde_json::to_string(&did)?
                );
                let list_query = format!(
                    "repo={}&collection={collection}&limit={}",
                    encode_query_value(&did),
                    cfg.list_limit
                );
                Ok(Actor {
                    auth: bearer(&did)?,
                    body_head: head,
                    list_uri: target.xrpc_uri(LIST, &list_query)?,
                    did,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let body_middle = format!(
            r#"","boundary":{{"$type":"zone.stratos.boundary.defs#Domains","values":[{{"value":{}}}]}},"createdAt":""#,
            serde_json::to_string(record_boundary)?
        );
        Ok(Plan {
            create_uri: target.xrpc_uri(CREATE, "")?,
            timeout: cfg.timeout,
            workload: cfg.workload,
            mix: cfg.mix,
            denied_fraction: cfg.effective_denied_fraction(),
            actors,
            body_middle,
            viewer: bearer(&cfg.viewer_did())?,
            stranger: bearer(&cfg.stranger_did())?,
            target,
        })
    }

    /// A createRecord call; `text` must need no JSON escaping.
    fn create_call(&self, actor: &Actor, text: &str) -> Call {
        let created_at = stamp::now();
        let mut body = String::with_capacity(
            actor.body_head.len() + text.len() + self.body_middle.len() + created_at.len() + 3,
        );
        body.push_str(&actor.body_head);
        body.push_str(text);
        body.push_str(&self.body_middle);
        body.push_str(&created_at);
        body.push_str("\"}}");
        Call {
            method: Method::POST,
            uri: self.create_uri.clone(),
            auth: actor.auth.clone(),
            body: Some(Bytes::from(body)),
        }
    }

    fn get_uri(&self, actor: &Actor, rkey: &str) -> Result<Uri> {
        let query = format!(
            "repo={}&collection={}&rkey={}",
            encode_query_value(&actor.did),
            encode_query_value(COLLECTION),
            encode_query_value(rkey)
        );
        self.target.xrpc_uri(GET, &query)
    }
}

/// Which actors worker `w` writes as. With no more workers than actors each actor has a single
/// writer, so the run measures writes rather than compare-and-swap conflicts on one repository.
fn own_actors(w: usize, workers: usize, actors: usize) -> Vec<usize> {
    if workers <= actors {
        (w..actors).step_by(workers).collect()
    } else {
        vec![w % actors]
    }
}

/// Enrolls every actor and both viewers. Returns the qualified record boundary when the service
/// reported it (the Rust service qualifies names as `{serviceDid}/{name}` and records must carry
/// the qualified value).
async fn enroll(cfg: &Config, target: &Target, setup: &mut Setup) -> Result<Option<String>> {
    let Some(password) = cfg.admin_password.as_deref() else {
        bail!("enrollment needs --admin-password or STRATOS_ADMIN_PASSWORD");
    };
    let admin = bearer(password).context("the admin password")?;
    let uri = target.xrpc_uri(ENROLL, "")?;
    let mut accounts: Vec<(String, &str)> = (0..cfg.actors)
        .map(|i| (cfg.actor_did(i), cfg.boundary.as_str()))
        .collect();
    accounts.push((cfg.viewer_did(), cfg.boundary.as_str()));
    accounts.push((cfg.stranger_did(), cfg.other_boundary.as_str()));
    let calls = accounts
        .iter()
        .map(|(did, boundary)| {
            let body = serde_json::json!({ "did": did, "boundaries": [boundary] });
            Ok(Call {
                method: Method::POST,
                uri: uri.clone(),
                auth: admin.clone(),
                body: Some(Bytes::from(serde_json::to_vec(&body)?)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let answers = send_all(target, cfg.timeout, calls, cfg.concurrency).await?;
    let mut qualified = None;
    let mut first_error = None;
    for (i, answer) in answers.iter().enumerate() {
        match answer {
            Ok(a) if enrollment_accepted(a) => {
                setup.enrolled += 1;
                if qualified.is_none() && i < cfg.actors {
                    qualified = held_boundary(&a.body, &cfg.boundary);
                }
            }
            other => {
                setup.enroll_failed += 1;
                if first_error.is_none() {
                    first_error = Some(describe(other));
                }
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("stratos-loadgen: enrollment failed: {e}");
        if setup.enrolled == 0 {
            bail!("no account could be enrolled: {e}");
        }
    }
    Ok(qualified)
}

/// 200/201, or a conflict meaning "already enrolled": either way the account can be used.
fn enrollment_accepted(a: &Answer) -> bool {
    match a.status {
        200 | 201 | 409 => true,
        400 => stats::xrpc_error(&a.body).is_some_and(|e| e.to_lowercase().contains("already")),
        _ => false,
    }
}

/// The entry of the enrollment answer's `boundaries` that is `name`, bare or qualified.
fn held_boundary(body: &[u8], name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    find_boundary(v.get("boundaries")?, name)
}

/// The entry of a JSON array of boundaries that is `name`, bare or qualified.
fn find_boundary(list: &serde_json::Value, name: &str) -> Option<String> {
    let suffix = format!("/{name}");
    list.as_array()?
        .iter()
        .filter_map(|b| b.as_str())
        .find(|b| *b == name || b.ends_with(&suffix))
        .map(str::to_owned)
}

/// Without enrollment the qualified form comes from the service's boundary list, when it has
/// one; otherwise `--boundary` is used as given.
async fn qualify_from_list_domains(cfg: &Config, target: &Target) -> String {
    let given = cfg.boundary.clone();
    let (Ok(uri), Ok(auth)) = (target.xrpc_uri(LIST_DOMAINS, ""), bearer(&cfg.viewer_did())) else {
        return given;
    };
    let call = Call {
        method: Method::GET,
        uri,
        auth,
        body: None,
    };
    let mut conn = Conn::new(target.clone(), cfg.timeout);
    let Ok(answer) = conn.send(&call).await else {
        return given;
    };
    serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| find_boundary(v.get("domains")?, &cfg.boundary))
        .unwrap_or(given)
}

/// Sends `calls` over up to `lanes` connections; answers come back in call order.
async fn send_all(
    target: &Target,
    timeout: Duration,
    calls: Vec<Call>,
    lanes: usize,
) -> Result<Vec<Result<Answer, Failure>>> {
    let n = calls.len();
    let lanes = lanes.clamp(1, n.max(1));
    let calls: Arc<[Call]> = Arc::from(calls);
    let mut handles = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        let calls = Arc::clone(&calls);
        let mut conn = Conn::new(target.clone(), timeout);
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (lane..calls.len()).step_by(lanes) {
                out.push((i, conn.send(&calls[i]).await));
            }
            out
        }));
    }
    let mut slots: Vec<Option<Result<Answer, Failure>>> = (0..n).map(|_| None).collect();
    for h in handles {
        for (i, r) in h.await.context("a setup task stopped abnormally")? {
            slots[i] = Some(r);
        }
    }
    Ok(slots
        .into_iter()
        .map(|s| s.unwrap_or(Err(Failure::Transport("not sent".into()))))
        .collect())
}

fn describe(r: &Result<Answer, Failure>) -> String {
    match r {
        Ok(a) => format!("HTTP {}: {}", a.status, excerpt(&a.body)),
        Err(Failure::Transport(e)) => e.clone(),
        Err(Failure::Timeout) => "no answer in time".into(),
    }
}

/// Creates `--seed` records per actor, each actor on one connection so its writes never
/// conflict, and returns the getRecord targets of the records created.
async fn seed(cfg: &Config, plan: &Arc<Plan>, setup: &mut Setup) -> Result<Vec<Uri>> {
    let lanes = cfg.concurrency.min(cfg.actors).max(1);
    let per_actor = cfg.seed;
    let mut handles = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        let plan = Arc::clone(plan);
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::new(plan.target.clone(), plan.timeout);
            let mut uris = Vec::new();
            let mut failed = 0usize;
            let mut first_error = None;
            for a in (lane..plan.actors.len()).step_by(lanes) {
                let actor = &plan.actors[a];
                for n in 0..per_actor {
                    let call = plan.create_call(actor, &format!("loadgen seed {a} {n}"));
                    let answer = conn.send(&call).await;
                    match created_rkey(&answer).map(|rkey| plan.get_uri(actor, &rkey)) {
                        Some(Ok(uri)) => uris.push(uri),
                        Some(Err(e)) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                        None => {
                            failed += 1;
                            first_error.get_or_insert_with(|| describe(&answer));
                            if answer.is_err() {
                                tokio::time::sleep(FAILURE_PAUSE).await;
                            }
                        }
                    }
                }
            }
            (uris, failed, first_error)
        }));
    }
    let mut all = Vec::with_capacity(cfg.actors * per_actor);
    let mut first = None;
    for h in handles {
        let (uris, failed, first_error) = h.await.context("a seeding task stopped abnormally")?;
        all.extend(uris);
        setup.seed_failed += failed;
        if first.is_none() {
            first = first_error;
        }
    }
    setup.seeded = all.len();
    if let Some(e) = &first {
        eprintln!("stratos-loadgen: seeding failed: {e}");
    }
    if all.is_empty() {
        bail!(
            "no record could be seeded, so there is nothing to read: {}",
            first.unwrap_or_default()
        );
    }
    Ok(all)
}

/// The record key of a successful createRecord answer, from its `uri`
/// (`at://{did}/{collection}/{rkey}`).
fn created_rkey(answer: &Result<Answer, Failure>) -> Option<String> {
    let a = answer.as_ref().ok()?;
    if !(200..300).contains(&a.status) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
    let uri = v.get("uri")?.as_str()?;
    let rkey = uri.strip_prefix("at://")?.rsplit('/').next()?;
    (!rkey.is_empty()).then(|| rkey.to_owned())
}

/// A small, fast PRNG (SplitMix64): request choice needs speed and spread, not secrecy.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must not be zero.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug)]
struct Worker {
    index: usize,
    plan: Arc<Plan>,
    gets: Arc<[Uri]>,
    rng: Rng,
    own_actors: Vec<usize>,
}

impl Worker {
    /// Sends requests back to back until `end`; returns the tallies of the answers that arrived
    /// in `[start, end)` and the number that arrived before `start`.
    async fn run(mut self, start: Instant, end: Instant) -> (Stats, u64) {
        let mut conn = Conn::new(self.plan.target.clone(), self.plan.timeout);
        let mut stats = Stats::default();
        let mut warmup = 0u64;
        let mut sent = 0u64;
        loop {
            let began = Instant::now();
            if began >= end {
                break;
            }
            let (op, call) = self.next_call(sent);
            sent += 1;
            let result = conn.send(&call).await;
            let done = Instant::now();
            if done < start {
                warmup += 1;
            } else if done < end {
                let micros = u64::try_from((done - began).as_micros()).unwrap_or(u64::MAX);
                stats.record(op, &result, micros);
            }
            if matches!(result, Err(Failure::Transport(_))) {
                tokio::time::sleep(FAILURE_PAUSE).await;
            }
        }
        (stats, warmup)
    }

    fn next_call(&mut self, n: u64) -> (Op, Call) {
        let op = match self.plan.workload {
            Workload::Create => Op::Create,
            Workload::List => Op::List,
            Workload::Get => Op::Get,
            Workload::Mixed => {
                let Mix { create, get, list } = self.plan.mix;
                let total = u64::from(create) + u64::from(get) + u64::from(list);
                let r = self.rng.next_u64() % total.max(1);
                if r < u64::from(create) {
                    Op::Create
                } else if r < u64::from(create) + u64::from(get) {
                    Op::Get
                } else {
                    Op::List
                }
            }
        };
        let plan = &self.plan;
        match op {
            Op::Create => {
                let idx = self.own_actors[(n as usize) % self.own_actors.len().max(1)];
                let actor = &plan.actors[idx];
                let call = plan.create_call(actor, &format!("loadgen {} {n}", self.index));
                (Op::Create, call)
            }
            Op::List => {
                let actor = &plan.actors[self.rng.below(plan.actors.len())];
                let call = Call {
                    method: Method::GET,
                    uri: actor.list_uri.clone(),
                    auth: plan.viewer.clone(),
                    body: None,
                };
                (Op::List, call)
            }
            Op::Get | Op::GetDenied => {
                let uri = self.gets[self.rng.below(self.gets.len())].clone();
                let denied = plan.denied_fraction > 0.0 && self.rng.unit() < plan.denied_fraction;
                let (op, auth) = if denied {
                    (Op::GetDenied, plan.stranger.clone())
                } else {
                    (Op::Get, plan.viewer.clone())
                };
                let call = Call {
                    method: Method::GET,
                    uri,
                    auth,
                    body: None,
                };
                (op, call)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_never_share_an_actor_when_there_are_enough() {
        let (workers, actors) = (7, 20);
        let mut seen = vec![0; actors];
        for w in 0..workers {
            for a in own_actors(w, workers, actors) {
                seen[a] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
        assert_eq!(own_actors(5, 8, 3), vec![2]);
    }

    #[tokio::test]
    async fn create_bodies_are_the_documented_json() {
        let target = Target::resolve("http://127.0.0.1:1").await.unwrap();
        let cfg = Config {
            did_prefix: "did:plc:q\"".into(),
            ..Config::default()
        };
        let plan = Plan::new(&cfg, target, "did:web:x/general").unwrap();
        let call = plan.create_call(&plan.actors[3], "hello 1");
        let v: serde_json::Value = serde_json::from_slice(call.body.as_ref().unwrap()).unwrap();
        assert_eq!(v["repo"], "did:plc:q\"0003");
        assert_eq!(v["collection"], COLLECTION);
        assert_eq!(v["record"]["$type"], COLLECTION);
        assert_eq!(v["record"]["text"], "hello 1");
        assert_eq!(
            v["record"]["boundary"],
            serde_json::json!({"$type": "zone.stratos.boundary.defs#Domains",
                               "values": [{"value": "did:web:x/general"}]})
        );
        assert!(v["record"]["createdAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(call.auth, "Bearer did:plc:q\"0003");
        assert_eq!(
            plan.actors[0].list_uri.to_string(),
            "/xrpc/com.atproto.repo.listRecords?repo=did:plc:q%220000&collection=zone.stratos.feed.post&limit=50"
        );
    }

    #[test]
    fn rkeys_and_boundaries_from_answers() {
        let ok = |s: &str| {
            Ok(Answer {
                status: 200,
                body: Bytes::copy_from_slice(s.as_bytes()),
            })
        };
        assert_eq!(
            created_rkey(&ok(
                r#"{"uri":"at://did:plc:a/zone.stratos.feed.post/3abc","cid":"x"}"#
            )),
            Some("3abc".into())
        );
        assert_eq!(created_rkey(&ok(r#"{"cid":"x"}"#)), None);
        assert_eq!(created_rkey(&Err(Failure::Timeout)), None);
        let body = br#"{"boundaries":["did:web:s/other","did:web:s/general"]}"#;
        assert_eq!(
            held_boundary(body, "general").as_deref(),
            Some("did:web:s/general")
        );
        assert_eq!(
            held_boundary(br#"{"boundaries":["general"]}"#, "general").as_deref(),
            Some("general")
        );
        assert_eq!(held_boundary(br#"{"did":"x"}"#, "general"), None);
    }

    #[test]
    fn rng_spreads() {
        let mut r = Rng::new(1);
        let mut buckets = [0u32; 4];
        let mut below_half = 0;
        for _ in 0..40_000 {
            buckets[r.below(4)] += 1;
            if r.unit() < 0.5 {
                below_half += 1;
            }
        }
        assert!(
            buckets.iter().all(|&b| (9_000..11_000).contains(&b)),
            "{buckets:?}"
        );
        assert!((19_000..21_000).contains(&below_half));
    }
}
