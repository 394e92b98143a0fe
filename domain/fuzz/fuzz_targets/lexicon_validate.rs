//! Record data (atproto JSON or DAG-CBOR) through the lexicon validator and the rest of the
//! write rules, against the Stratos lexicons and the atproto interop catalog (which uses every
//! field type). Nothing may panic, and whatever the rules accept must be storable: it encodes
//! to DAG-CBOR, reads back equal, converts to JSON and back, and gets a stub — the steps the
//! service takes after validation, where a failure would be a 500 instead of a 400.
//!
//! Input: byte 0 picks the catalog (bit 0), the encoding (bit 1: JSON or DAG-CBOR) and the mode
//! (bits 2-3: record, record with `$type` filled in as the service does, a named definition, a
//! lexicon document); byte 1 picks the collection or definition; the rest is the data.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use ipld_core::ipld::Ipld;
use libfuzzer_sys::fuzz_target;
use stratos_domain::boundary::Boundary;
use stratos_domain::lexicon::{Catalog, LexiconDoc, STRATOS_LEXICONS};
use stratos_domain::syntax::{AtUri, Datetime, Did, Nsid, RecordKey};
use stratos_domain::write::{WriteContext, WritePolicy};
use stratos_domain::{data, stub};

/// The interop catalog's files, read once at start-up from `STRATOS_FIXTURES_DIR` or
/// `shared/fixtures` beside the checkout, as the test suites do.
const FIXTURE_CATALOG: &[&str] = &[
    "record.json",
    "query.json",
    "procedure.json",
    "subscription.json",
    "permission-set.json",
];

fn fixture_catalog() -> Vec<String> {
    let dir = std::env::var("STRATOS_FIXTURES_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures").to_owned()
    });
    FIXTURE_CATALOG
        .iter()
        .map(|name| {
            let path = format!("{dir}/atproto-interop/lexicon/catalog/{name}");
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{path}: {e} (set STRATOS_FIXTURES_DIR)"))
        })
        .collect()
}

struct Loaded {
    catalog: Catalog,
    /// NSIDs of the record lexicons.
    records: Vec<String>,
    /// Every definition as `nsid#name`.
    defs: Vec<String>,
}

struct Setup {
    loaded: [Loaded; 2],
    policy: WritePolicy,
    held: BTreeSet<String>,
}

fn load(texts: &[&str], catalog: Catalog) -> Loaded {
    let mut catalog = catalog;
    let (mut records, mut defs) = (Vec::new(), Vec::new());
    for text in texts {
        let doc = LexiconDoc::parse(text).expect("catalog document parses");
        for (name, def) in &doc.defs {
            if name == "main" && matches!(def, stratos_domain::lexicon::Def::Record { .. }) {
                records.push(doc.id.to_string());
            }
            defs.push(format!("{}#{name}", doc.id));
        }
        catalog.add(doc).expect("catalog document added");
    }
    Loaded {
        catalog,
        records,
        defs,
    }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let stratos: Vec<&str> = STRATOS_LEXICONS.iter().map(|(_, t)| *t).collect();
        let fixtures = fixture_catalog();
        let fixtures: Vec<&str> = fixtures.iter().map(String::as_str).collect();
        let service = Did::parse("did:web:nerv.tokyo.jp").expect("service DID");
        let allowed: Vec<Boundary> = ["general", "other"]
            .iter()
            .map(|n| Boundary::qualify(&service, n).expect("boundary"))
            .collect();
        let held = allowed.iter().map(|b| b.to_string()).collect();
        Setup {
            loaded: [
                load(
                    &stratos,
                    Catalog::new()
                        .with_external_refs(stratos_domain::lexicon::ExternalRefs::AcceptObjects),
                ),
                load(&fixtures, Catalog::new()),
            ],
            policy: WritePolicy {
                service_did: service,
                allowed,
            },
            held,
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let [flags, pick, rest @ ..] = input else {
        return;
    };
    let s = setup();
    let loaded = &s.loaded[usize::from(flags & 1)];
    let json = flags & 2 == 0;
    match (flags >> 2) & 3 {
        mode @ (0 | 1) => {
            let collection = &loaded.records[usize::from(*pick) % loaded.records.len()];
            let Some(mut value) = decode(rest, json) else {
                return;
            };
            if let (1, Ipld::Map(map)) = (mode, &mut value) {
                map.entry("$type".to_owned())
                    .or_insert_with(|| Ipld::String(collection.clone()));
            }
            if loaded.catalog.validate_record(collection, &value).is_ok() {
                storable(&value);
            }
            let nsid = Nsid::parse(collection).expect("catalog NSID");
            let ctx = WriteContext {
                author_boundaries: &s.held,
                parent_boundaries: None,
            };
            if s.policy
                .check_record(&loaded.catalog, &nsid, &value, ctx)
                .is_ok()
            {
                storable(&value);
                let uri = AtUri::for_record(
                    &s.policy.service_did,
                    &nsid,
                    &RecordKey::parse("3kaaaaaaaaaa2").expect("rkey"),
                );
                let (cid, _) = data::record_cid(&value).expect("accepted record has a CID");
                let stub = stub::stub_for(
                    &value,
                    &uri,
                    &cid,
                    "did:web:nerv.tokyo.jp#atproto_pns",
                    &Datetime::from_unix_millis(0),
                )
                .expect("accepted record gets a stub");
                data::ipld_to_json(&stub).expect("stub converts to JSON");
            }
            if let Ipld::String(rkey) = &value {
                let _ = loaded.catalog.check_record_key(collection, rkey);
            }
        }
        2 => {
            let reference = &loaded.defs[usize::from(*pick) % loaded.defs.len()];
            if let Some(value) = decode(rest, json) {
                let _ = loaded.catalog.validate_def(reference, &value);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest)
                && let Ok(doc) = LexiconDoc::parse(text)
            {
                // A parsed document must be usable in a catalog without panicking.
                let mut catalog = Catalog::new();
                if catalog.add(doc).is_ok() {
                    let _ = catalog.check_refs();
                }
            }
        }
    }
});

fn decode(bytes: &[u8], json: bool) -> Option<Ipld> {
    if json {
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        data::json_to_ipld(&value).ok()
    } else {
        data::decode(bytes).ok()
    }
}

/// What the service does with an accepted record after validation.
fn storable(value: &Ipld) {
    let bytes = data::encode(value).expect("accepted record encodes");
    assert_eq!(
        &data::decode(&bytes).expect("encoded record decodes"),
        value
    );
    let json = data::ipld_to_json(value).expect("accepted record converts to JSON");
    assert_eq!(
        &data::json_to_ipld(&json).expect("its JSON converts back"),
        value
    );
}
