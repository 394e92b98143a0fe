#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `HttpAllowList` against a tiny HTTP server run by the test: first fetch, keeping the previous
//! list on failures, refreshing (on demand and in the background) and mirroring into a cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stratos_domain::syntax::Did;
use stratos_network::{AllowListConfig, HttpAllowList, Mirror, NetworkError};
use stratos_ports::env::{AllowList, Cache};
use stratos_testkit::memory::{ManualClock, MemoryCache};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves whatever response is current to every request, one request per connection.
struct ListServer {
    url: String,
    response: Arc<Mutex<(u16, String)>>,
    requests: Arc<AtomicUsize>,
}

impl ListServer {
    async fn start(status: u16, body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/allow.txt", listener.local_addr().unwrap());
        let response = Arc::new(Mutex::new((status, body.to_owned())));
        let requests = Arc::new(AtomicUsize::new(0));
        let (current, count) = (response.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (status, body) = current.lock().unwrap().clone();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // Read the request head; the client sends no body with a GET.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 {status} Status\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url,
            response,
            requests,
        }
    }

    fn serve(&self, status: u16, body: &str) {
        *self.response.lock().unwrap() = (status, body.to_owned());
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

const FIRST: &str = "# Stratos early access\ndid:plc:rei\r\n\ndid:plc:sakura\nnot-a-did\n  did:web:kaoruko.example  \ndid:plc:bad space\n";
const CHANGED: &str = "did:plc:sakura\ndid:plc:asuka\n";

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

async fn on(list: &dyn AllowList, d: &str) -> bool {
    list.contains(&did(d)).await.unwrap()
}

/// A config that never refreshes on its own during a test.
fn manual(url: &str) -> AllowListConfig {
    AllowListConfig {
        refresh_every: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
        ..AllowListConfig::new(url)
    }
}

#[tokio::test]
async fn fetches_keeps_the_previous_list_on_failure_and_refreshes() {
    let server = ListServer::start(200, FIRST).await;
    let list = HttpAllowList::start(manual(&server.url), None)
        .await
        .unwrap();
    assert!(on(&list, "did:plc:rei").await);
    assert!(on(&list, "did:plc:sakura").await);
    assert!(on(&list, "did:web:kaoruko.example").await);
    assert!(!on(&list, "did:plc:asuka").await);
    let status = list.status();
    assert_eq!((status.dids, status.invalid_lines), (3, 2));
    assert_eq!((status.successes, status.failures), (1, 0));

    server.serve(500, "internal error");
    assert_eq!(list.refresh().await, Err(NetworkError::Status(500)));
    assert!(on(&list, "did:plc:rei").await, "the previous list is kept");
    assert_eq!(list.len(), 3);
    let status = list.status();
    assert_eq!((status.successes, status.failures), (1, 1));
    assert_eq!(status.last_error.as_deref(), Some("HTTP status 500"));

    server.serve(404, "");
    assert!(list.refresh().await.is_err());
    assert!(on(&list, "did:plc:rei").await, "any non-2xx keeps the list");

    server.serve(200, CHANGED);
    let report = list.refresh().await.unwrap();
    assert_eq!((report.dids, report.invalid_lines), (2, 0));
    assert!(
        !on(&list, "did:plc:rei").await,
        "a good fetch replaces the list"
    );
    assert!(on(&list, "did:plc:asuka").await);
    assert!(on(&list, "did:plc:sakura").await);
    assert_eq!(list.status().last_error, None);

    // A legitimately emptied list is honoured.
    server.serve(200, "# nobody for now\n");
    list.refresh().await.unwrap();
    assert!(list.is_empty());
}

#[tokio::test]
async fn refreshes_in_the_background() {
    let server = ListServer::start(200, FIRST).await;
    let config = AllowListConfig {
        refresh_every: Duration::from_millis(50),
        ..manual(&server.url)
    };
    let list = HttpAllowList::start(config, None).await.unwrap();
    assert!(on(&list, "did:plc:rei").await);

    server.serve(200, CHANGED);
    wait_until(|| async { on(&list, "did:plc:asuka").await }).await;
    assert!(!on(&list, "did:plc:rei").await);

    // Failing refreshes keep the last good list.
    server.serve(503, "");
    let seen = server.requests();
    wait_until(|| async { server.requests() >= seen + 3 }).await;
    assert!(list.status().failures >= 2);
    assert!(on(&list, "did:plc:asuka").await);

    // Dropping the list stops its refreshes.
    drop(list);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = server.requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests(), after_drop, "no fetch after the drop");
}

#[tokio::test]
async fn good_fetches_are_mirrored_into_the_cache() {
    let server = ListServer::start(200, FIRST).await;
    let cache = Arc::new(MemoryCache::new(ManualClock::at(0)));
    let mirror = Mirror {
        cache: cache.clone(),
        key: "stratos:allow-list".into(),
    };
    let list = HttpAllowList::start(manual(&server.url), Some(mirror))
        .await
        .unwrap();
    let in_cache = |d: &'static str| {
        let cache = cache.clone();
        async move { cache.set_contains("stratos:allow-list", d).await.unwrap() }
    };
    assert!(in_cache("did:plc:rei").await);
    assert!(in_cache("did:web:kaoruko.example").await);
    assert!(
        !in_cache("not-a-did").await,
        "invalid lines are not mirrored"
    );

    server.serve(500, "");
    assert!(list.refresh().await.is_err());
    assert!(
        in_cache("did:plc:rei").await,
        "a failed fetch leaves the mirror"
    );

    server.serve(200, CHANGED);
    let report = list.refresh().await.unwrap();
    assert_eq!(report.mirror_error, None);
    assert!(!in_cache("did:plc:rei").await, "the mirror is replaced");
    assert!(in_cache("did:plc:asuka").await);
}

#[tokio::test]
async fn an_unreachable_list_starts_empty_and_says_why() {
    // A port that was just free: nothing listens there.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/allow.txt", free.local_addr().unwrap());
    drop(free);
    let list = HttpAllowList::start(manual(&url), None).await.unwrap();
    assert!(list.is_empty());
    assert!(!on(&list, "did:plc:rei").await);
    let status = list.status();
    assert_eq!((status.successes, status.failures), (0, 1));
    let error = status.last_error.unwrap();
    assert!(error.starts_with("HTTP request failed"), "{error}");
    assert!(!error.contains("allow.txt"), "no URL in errors: {error}");
}

#[tokio::test]
async fn oversized_lists_are_refused() {
    let server = ListServer::start(200, FIRST).await;
    let config = AllowListConfig {
        max_bytes: FIRST.len(),
        ..manual(&server.url)
    };
    let list = HttpAllowList::start(config, None).await.unwrap();
    assert_eq!(list.len(), 3);
    server.serve(200, &format!("{FIRST}did:plc:onemore\n"));
    assert_eq!(
        list.refresh().await,
        Err(NetworkError::TooLarge(FIRST.len()))
    );
    assert_eq!(list.len(), 3, "the previous list is kept");
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    for uri in ["not a uri", "ftp://example.com/list", "file:///etc/passwd"] {
        assert!(
            matches!(
                HttpAllowList::start(manual(uri), None).await,
                Err(NetworkError::InvalidUri(_))
            ),
            "{uri}"
        );
    }
    let zero = AllowListConfig {
        refresh_every: Duration::ZERO,
        ..manual("http://127.0.0.1:9/allow.txt")
    };
    assert!(matches!(
        HttpAllowList::start(zero, None).await,
        Err(NetworkError::InvalidConfig(_))
    ));
}

/// Polls `condition` every 20 ms for up to 5 s.
async fn wait_until<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 5 s");
}
