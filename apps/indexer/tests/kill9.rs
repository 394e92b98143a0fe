//! The `stratos-indexer` binary SIGKILLed in the middle of a stream, three times, while accounts
//! create, update and delete posts: after the last restart every account's indexed posts are
//! exactly the service's (nothing lost, nothing resurrected, the latest text of each), and the
//! binary's `/ready` and `/metrics` answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::process::{Child, Command};

fn spawn_indexer(vars: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stratos-indexer"))
        .env_clear()
        .envs(vars.iter().cloned())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_every_post_lands_exactly_once() {
    let Some(pg) = postgres_url() else { return };
    let service = Service::start().await;
    let (index, schema) = fresh_index(&pg).await;
    let accounts = [
        did("did:plc:k9one"),
        did("did:plc:k9two"),
        did("did:plc:k9three"),
    ];
    for a in &accounts {
        service.enroll(a, &["swordsmith"]).await;
    }
    let vars = indexer_vars(&service, &pg, &schema);
    let health = vars
        .iter()
        .find(|(k, _)| k == "HEALTH_PORT")
        .map(|(_, v)| v.clone())
        .unwrap();
    let mut indexer = spawn_indexer(&vars);

    // The workload: posts, updates and deletes, interleaved across accounts, written while the
    // indexer is killed and restarted under it.
    let writer = {
        let s = service.writer();
        let accounts = accounts.clone();
        tokio::spawn(async move {
            for round in 0..60 {
                for a in &accounts {
                    let rkey = s.post(a, &format!("post {round}"), &["swordsmith"]).await;
                    if round % 3 == 1 {
                        s.update(a, &rkey, &format!("post {round} edited"), &["swordsmith"])
                            .await;
                    }
                    if round % 5 == 2 {
                        s.delete(a, &rkey).await;
                    }
                }
            }
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        indexer.kill().await.unwrap();
        let _ = indexer.wait().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        indexer = spawn_indexer(&vars);
    }
    writer.await.unwrap();
    for a in &accounts {
        let expected = service.posts_of(a).await;
        assert_eq!(expected.len(), 60 - 12, "the workload's net posts");
        eventually(60, "the index to catch up", || async {
            indexed_posts(&pg, &schema, a).await == expected
        })
        .await;
    }
    let http = stratos_testkit::http_client();
    let ready = http
        .get(format!("http://127.0.0.1:{health}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = http
        .get(format!("http://127.0.0.1:{health}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stratos_indexer_verification_failures_total 0"),
        "{metrics}"
    );
    indexer.kill().await.unwrap();
    index.drop_schema().await.unwrap();
}
