//! Follows one account's private records on a Stratos service, verifying every commit, as an
//! AppView's indexer would:
//!
//! ```text
//! STRATOS_URL=http://localhost:3100 STRATOS_DID=did:plc:… STRATOS_KEY=did:key:… \
//! STRATOS_SYNC_TOKEN=… cargo run -p stratos-client --example follow_account
//! ```
//! `STRATOS_KEY` is the account's signing key (`signingKey` of its enrollment record, whose
//! attestation `stratos_client::verify::enrollment_record` checks). Stops after `LIMIT`
//! commits (default: never).

use stratos_client::stream::{RecordStream, StreamAuth, StreamItem};
use stratos_domain::crypto::PublicKey;
use stratos_domain::syntax::Did;

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let url = env("STRATOS_URL")?;
    let did = Did::parse(&env("STRATOS_DID")?).map_err(|e| e.to_string())?;
    let key = PublicKey::from_did_key(&env("STRATOS_KEY")?).map_err(|e| e.to_string())?;
    let limit: Option<usize> = std::env::var("LIMIT").ok().and_then(|l| l.parse().ok());
    let mut builder = RecordStream::builder(&url, did, key);
    if let Ok(token) = env("STRATOS_SYNC_TOKEN") {
        builder = builder.auth(StreamAuth::SyncToken(token));
    }
    let mut stream = builder.build();
    let mut seen = 0;
    while limit.is_none_or(|l| seen < l) {
        match stream.next().await.map_err(|e| e.to_string())? {
            StreamItem::Commit { frame, .. } => {
                for op in &frame.ops {
                    println!(
                        "{} {} {} (verified)",
                        frame.seq,
                        op.action.as_str(),
                        op.path
                    );
                }
                seen += 1;
            }
            StreamItem::Resync { frame } => {
                println!(
                    "{}: commit too large to prove, re-read the account",
                    frame.seq
                );
            }
            StreamItem::OutdatedCursor { message } => {
                println!(
                    "cursor outdated, backfill needed: {}",
                    message.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
