//! Frames as the service encodes them (`stratos_ports::usecases::stream::commit_frame`), decoded
//! and verified by the client: genuine frames pass and chain; a wrong key, a dropped or
//! reordered frame, a forged record, a tampered slice and a filtered frame are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use ipld_core::ipld::Ipld;
use stratos_client::ClientError;
use stratos_client::frame::{self, CommitFrame, Frame};
use stratos_domain::blocks::BlockMap;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::repo::{self, Action, CommitOutput, RecordWrite, RepoHead};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_domain::tid::TidGenerator;
use stratos_domain::{Cid, data, mst};
use stratos_ports::repo_store::EventProof;
use stratos_ports::usecases::stream::{self, CommitEvent, CommitOp};

const POST: &str = "zone.stratos.feed.post";

struct Account {
    did: Did,
    key: Keypair,
    store: BlockMap,
    head: Option<RepoHead>,
    tids: TidGenerator,
    seq: u64,
}

fn record(text: &str) -> Vec<u8> {
    data::encode(&Ipld::Map(
        [
            ("$type".to_owned(), Ipld::String(POST.into())),
            ("text".to_owned(), Ipld::String(text.into())),
        ]
        .into(),
    ))
    .unwrap()
}

impl Account {
    fn new() -> Self {
        Self {
            did: Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
            key: Keypair::generate(KeyAlgorithm::P256),
            store: BlockMap::new(),
            head: None,
            tids: TidGenerator::with_clock_id(4),
            seq: 0,
        }
    }

    fn create(&mut self, text: &str) -> RecordWrite {
        RecordWrite::Create {
            collection: Nsid::parse(POST).unwrap(),
            rkey: RecordKey::parse(self.tids.next_now().as_str()).unwrap(),
            record: record(text),
        }
    }

    /// Commits `writes` and returns the frame the service would send (unfiltered or filtered).
    fn commit(&mut self, writes: &[RecordWrite], domain: Option<&str>) -> (CommitOutput, Vec<u8>) {
        let rev = self.tids.next_now();
        let out = repo::apply_writes(
            &self.store,
            &self.did,
            self.head.as_ref(),
            writes,
            rev,
            &self.key,
        )
        .unwrap();
        for cid in &out.removed_nodes {
            self.store.remove(cid);
        }
        self.store.extend(out.new_blocks.clone());
        self.seq += 1;
        let event = CommitEvent {
            did: self.did.clone(),
            seq: self.seq,
            rev: out.head.rev.clone(),
            commit: out.head.commit,
            time: "2026-12-07T10:00:00.000Z".parse().unwrap(),
            ops: out
                .ops
                .iter()
                .map(|op| {
                    let (c, r) = op.path.split_once('/').unwrap();
                    CommitOp {
                        action: op.action,
                        collection: Nsid::parse(c).unwrap(),
                        rkey: RecordKey::parse(r).unwrap(),
                        cid: op.cid,
                        prev: op.prev,
                        boundaries: vec!["did:web:stratos.example/general".parse().unwrap()],
                        record: op
                            .cid
                            .and_then(|c| out.new_blocks.get(&c))
                            .map(<[u8]>::to_vec),
                    }
                })
                .collect(),
            proof: Some(EventProof {
                since: self.head.as_ref().map(|h| h.rev.clone()),
                prev_data: self.head.as_ref().map(|h| h.data),
                blocks: out.relevant_car.clone().unwrap(),
            }),
        };
        self.head = Some(out.head.clone());
        let bytes = stream::commit_frame(&event, domain).unwrap().unwrap();
        (out, bytes)
    }
}

fn commit_of(bytes: &[u8]) -> CommitFrame {
    match frame::decode(bytes).unwrap() {
        Frame::Commit(c) => *c,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn genuine_frames_verify_and_chain() {
    let mut a = Account::new();
    let writes: Vec<_> = (0..50).map(|i| a.create(&format!("post {i}"))).collect();
    let (_, first) = a.commit(&writes, None);
    let w = a.create("one more");
    let (_, second) = a.commit(&[w], None);
    let first = commit_of(&first);
    let second = commit_of(&second);
    assert_eq!(first.ops.len(), 50);
    let v1 = first
        .verify(a.key.public_key(), Some(mst::empty_root()))
        .unwrap();
    let v2 = second.verify(a.key.public_key(), Some(v1.data)).unwrap();
    assert_eq!(Some(v2.data), a.head.as_ref().map(|h| h.data));
    assert_eq!(second.since, Some(first.rev.clone()));
    assert!(matches!(&second.ops[0].record, Some(Ipld::Map(m)) if m.contains_key("text")));
}

#[test]
fn wrong_keys_gaps_reordering_forged_records_and_tampering_are_refused() {
    let mut a = Account::new();
    let writes: Vec<_> = (0..20).map(|i| a.create(&format!("post {i}"))).collect();
    let (out0, f0) = a.commit(&writes, None);
    let frames: Vec<CommitFrame> = (0..3)
        .map(|i| {
            let w = a.create(&format!("live {i}"));
            commit_of(&a.commit(&[w], None).1)
        })
        .collect();
    let key = a.key.public_key();
    let f0 = commit_of(&f0);
    let v0 = f0.verify(key, None).unwrap();
    assert_eq!(v0.data, out0.head.data);

    let other = Keypair::generate(KeyAlgorithm::P256);
    assert!(matches!(
        frames[0].verify(other.public_key(), Some(v0.data)),
        Err(ClientError::Unverified { .. })
    ));
    // frames[1] after f0: frames[0] was dropped.
    assert!(matches!(
        frames[1].verify(key, Some(v0.data)),
        Err(ClientError::BrokenChain(_))
    ));
    // Reordered: frames[0] after frames[1].
    let v1 = frames[0].verify(key, Some(v0.data)).unwrap();
    let v2 = frames[1].verify(key, Some(v1.data)).unwrap();
    assert!(matches!(
        frames[0].verify(key, Some(v2.data)),
        Err(ClientError::BrokenChain(_))
    ));
    // A record that is not the proven block.
    let mut forged = frames[2].clone();
    forged.ops[0].record = Some(Ipld::String("forged".into()));
    assert!(matches!(
        forged.verify(key, Some(v2.data)),
        Err(ClientError::Unverified { .. })
    ));
    // A changed CID, a dropped op's action, a flipped byte in the slice.
    let mut forged = frames[2].clone();
    forged.ops[0].cid = Some(Cid::default());
    assert!(forged.verify(key, Some(v2.data)).is_err());
    let mut forged = frames[2].clone();
    forged.ops[0].action = Action::Update;
    assert!(forged.verify(key, Some(v2.data)).is_err());
    let mut forged = frames[2].clone();
    let blocks = forged.blocks.as_mut().unwrap();
    let last = blocks.len() - 1;
    blocks[last] ^= 1;
    assert!(forged.verify(key, Some(v2.data)).is_err());
    assert!(frames[2].verify(key, Some(v2.data)).is_ok());
}

#[test]
fn filtered_frames_carry_no_proof() {
    let mut a = Account::new();
    let w = a.create("x");
    let (_, bytes) = a.commit(&[w], Some("did:web:stratos.example/general"));
    let c = commit_of(&bytes);
    assert_eq!((c.blocks.as_ref(), c.prev_data), (None, None));
    assert!(matches!(
        c.verify(a.key.public_key(), None),
        Err(ClientError::NoProof(1))
    ));
}

#[test]
fn malformed_and_oversized_frames_are_errors_not_panics() {
    for bytes in [&b""[..], b"\xa1", b"\xff\xff", b"\xa2bop\x01at\x67#commit"] {
        assert!(frame::decode(bytes).is_err());
    }
    let huge = vec![0u8; frame::MAX_FRAME_BYTES + 1];
    assert!(matches!(
        frame::decode(&huge),
        Err(ClientError::FrameTooLarge(_))
    ));
    let error = stream::error_frame("AuthRequired", "nope");
    assert_eq!(
        frame::decode(&error).unwrap(),
        Frame::Error {
            error: "AuthRequired".into(),
            message: "nope".into()
        }
    );
    let info = stream::info_frame("OutdatedCursor", "old").unwrap();
    assert!(
        matches!(frame::decode(&info).unwrap(), Frame::Info { name, .. } if name == "OutdatedCursor")
    );
}
