//! XRPC query strings and the syntax parsers their parameters reach. The service decodes query
//! strings with actix's `web::Query` (serde_urlencoded) into structs of `Option<String>` fields
//! and hands each field to a domain parser; this target does the same for the union of those
//! fields, then runs every parser on the raw input too. Nothing may panic, and what a parser
//! accepts must read back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use stratos_domain::boundary::Boundary;
use stratos_domain::cid;
use stratos_domain::syntax::{
    AtIdentifier, AtUri, Datetime, Did, Handle, Language, Nsid, RecordKey, Tid,
    is_valid_cid_syntax, is_valid_uri,
};

/// Every query parameter of the service's XRPC methods (getRecord, listRecords, describeRepo,
/// getBlob, listBlobs, sync.*, zone.stratos.* queries, subscribeRecords).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    repo: Option<String>,
    did: Option<String>,
    collection: Option<String>,
    rkey: Option<String>,
    cid: Option<String>,
    uri: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    reverse: Option<String>,
    since: Option<String>,
    domain: Option<String>,
    sync_token: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();
    if let Ok(p) = serde_urlencoded::from_str::<Params>(s) {
        for value in [&p.repo, &p.did].into_iter().flatten() {
            did(value);
        }
        if let Some(c) = &p.collection {
            nsid(c);
        }
        if let Some(r) = &p.rkey {
            record_key(r);
        }
        if let Some(c) = &p.cid {
            cid_string(c);
        }
        if let Some(u) = &p.uri {
            at_uri(u);
        }
        if let Some(l) = &p.limit {
            let _ = l.parse::<usize>();
        }
        if let Some(c) = &p.cursor {
            // listRecords: a record key; listBlobs: a CID; subscribeRecords: a u64.
            record_key(c);
            cid_string(c);
            let _ = c.parse::<u64>();
        }
        if let Some(s) = &p.since {
            tid(s);
        }
        if let Some(d) = &p.domain {
            boundary(d);
        }
        let _ = (&p.reverse, &p.sync_token);
    }
    did(s);
    nsid(s);
    record_key(s);
    tid(s);
    cid_string(s);
    at_uri(s);
    boundary(s);
    handle(s);
    datetime(s);
    if let Ok(l) = Language::parse(s) {
        assert_eq!(l.as_str(), s);
    }
    let _ = is_valid_uri(s);
    let _ = is_valid_cid_syntax(s);
});

fn did(s: &str) {
    if let Ok(d) = Did::parse(s) {
        assert_eq!(d.as_str(), s);
        assert!(s.starts_with("did:"));
        assert!(!d.method().is_empty());
        assert_eq!(Did::parse(d.as_str()).expect("accepted DID re-parses"), d);
    }
}

fn nsid(s: &str) {
    if let Ok(n) = Nsid::parse(s) {
        assert_eq!(n.as_str(), s);
        assert_eq!(format!("{}.{}", n.authority(), n.name()), s);
    }
}

fn record_key(s: &str) {
    if let Ok(k) = RecordKey::parse(s) {
        assert_eq!(k.as_str(), s);
        assert!(!s.is_empty() && s != "." && s != "..");
        assert!(!s.contains('/'), "a record key must not split a path");
    }
}

fn tid(s: &str) {
    if let Ok(t) = Tid::parse(s) {
        // The syntax admits first characters up to `j` (a 64-bit value); only values below
        // 2^63 (first character up to `b`) are a 53-bit timestamp and a clock id, and those
        // encode back byte for byte. Generated TIDs are always of that kind.
        if s.as_bytes()[0] <= b'b' {
            assert_eq!(
                Tid::from_parts(t.timestamp_micros(), t.clock_id()).as_str(),
                s
            );
        } else {
            assert!(t.timestamp_micros() >= 1 << 53);
        }
        assert!(RecordKey::parse(s).is_ok(), "every TID is a record key");
    }
}

fn cid_string(s: &str) {
    if let Ok(c) = cid::parse(s) {
        let again = cid::parse(&c.to_string()).expect("canonical CID string re-parses");
        assert_eq!(again, c);
    }
}

fn at_uri(s: &str) {
    if let Ok(u) = AtUri::parse(s) {
        assert_eq!(u.as_str(), s);
        let mut rebuilt = format!("at://{}", u.authority());
        if let Some(c) = u.collection() {
            rebuilt.push('/');
            rebuilt.push_str(c.as_str());
        }
        if let Some(r) = u.rkey() {
            rebuilt.push('/');
            rebuilt.push_str(r.as_str());
        }
        assert_eq!(rebuilt, s);
        assert!(u.rkey().is_none() || u.collection().is_some());
        if let AtIdentifier::Did(d) = u.authority() {
            assert!(Did::parse(d.as_str()).is_ok());
        }
    }
}

fn boundary(s: &str) {
    if let Ok(b) = Boundary::parse(s) {
        assert_eq!(b.as_str(), s);
        assert!(Did::parse(b.service_did()).is_ok());
        assert!(!b.name().is_empty());
        assert_eq!(format!("{}/{}", b.service_did(), b.name()), s);
        assert_eq!(Boundary::parse(b.as_str()).expect("re-parses").as_str(), s);
    }
    // A bare name qualified for a service, as subscribeRecords' `domain` and enrollment do.
    if let Ok(service) = Did::parse("did:web:nerv.tokyo.jp")
        && let Ok(b) = Boundary::qualify(&service, s)
    {
        assert_eq!(b.service_did(), "did:web:nerv.tokyo.jp");
    }
}

fn handle(s: &str) {
    if let Ok(h) = Handle::parse(s) {
        assert_eq!(h.as_str(), s);
        let lower = h.normalized();
        assert_eq!(
            Handle::parse(lower.as_str()).expect("normalised handle re-parses"),
            lower
        );
    }
}

fn datetime(s: &str) {
    if let Ok(d) = Datetime::parse(s) {
        assert_eq!(d.as_str(), s);
        assert!(Datetime::is_valid_syntax(s));
    }
}
