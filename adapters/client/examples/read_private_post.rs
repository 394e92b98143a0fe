//! An AppView reading one private post: discover the author's enrollment on their PDS (checked
//! against the Stratos service's DID document), then fetch the post from that service with a
//! service-auth JWT and verify its proof with the author's key.
//!
//! ```text
//! AUTHOR=did:plc:… URI_RKEY=3k… APPVIEW_DID=did:web:appview.example \
//! APPVIEW_KEY_HEX=<32-byte secp256k1 private key, hex> \
//! cargo run -p stratos-client --example read_private_post
//! ```
//! `PLC_URL` (default `https://plc.directory`) picks the PLC directory.

use std::sync::Arc;

use stratos_client::discovery::Discovery;
use stratos_client::xrpc::{Auth, StratosClient};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_network::{HttpIdentityResolver, IdentityConfig};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or(""), 16).map_err(|e| e.to_string()))
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let author = Did::parse(&env("AUTHOR")?).map_err(|e| e.to_string())?;
    let rkey = RecordKey::parse(&env("URI_RKEY")?).map_err(|e| e.to_string())?;
    let appview = Did::parse(&env("APPVIEW_DID")?).map_err(|e| e.to_string())?;
    let key = Keypair::from_private_bytes(KeyAlgorithm::K256, &hex(&env("APPVIEW_KEY_HEX")?)?)
        .map_err(|e| e.to_string())?;
    let mut config = IdentityConfig::default();
    if let Ok(plc) = env("PLC_URL") {
        config.plc_url = plc;
    }
    // One resolver serves both ports: DID documents, and the author's records on their PDS
    // (held to public addresses: the PDS is the author's choice).
    let resolver = Arc::new(HttpIdentityResolver::new(config).map_err(|e| e.to_string())?);
    let discovery = Discovery::new(resolver.clone(), resolver);
    let found = discovery
        .enrollments(&author)
        .await
        .map_err(|e| e.to_string())?;
    for (rkey, why) in &found.rejected {
        eprintln!("ignored enrollment {rkey}: {why}");
    }
    let Some(enrollment) = found.enrollments.first() else {
        return Err(format!("{author} is not enrolled in any Stratos service"));
    };
    let client = StratosClient::new(&enrollment.service_url)
        .map_err(|e| e.to_string())?
        .with_auth(Auth::service_jwt(
            Arc::new(key),
            appview,
            enrollment.service_did.as_str(),
        ));
    let posts = Nsid::parse("zone.stratos.feed.post").map_err(|e| e.to_string())?;
    match client
        .get_verified_record(&enrollment.signing_key, &author, &posts, &rkey)
        .await
    {
        Ok(Some(post)) => println!("verified at rev {}: {:?}", post.rev, post.record),
        Ok(None) => println!("the proof shows no such post"),
        Err(e) => println!("not readable by this AppView: {e}"),
    }
    Ok(())
}
