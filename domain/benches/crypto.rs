//! Signing and verification costs.
//!
//! Run: `cargo bench -p stratos-domain --bench crypto`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stratos_domain::crypto::{KeyAlgorithm, Keypair, PublicKey};

fn bench(c: &mut Criterion) {
    // A commit's unsigned bytes are ~150 bytes.
    let msg = [7u8; 150];
    for (name, alg) in [("p256", KeyAlgorithm::P256), ("k256", KeyAlgorithm::K256)] {
        let key = Keypair::generate(alg);
        let sig = key.sign(&msg).unwrap();
        c.bench_function(&format!("{name}/sign_low_s"), |b| {
            b.iter(|| key.sign(black_box(&msg)).unwrap())
        });
        c.bench_function(&format!("{name}/verify"), |b| {
            b.iter(|| {
                key.public_key()
                    .verify(black_box(&msg), black_box(&sig))
                    .unwrap()
            })
        });
        let did = key.did_key();
        c.bench_function(&format!("{name}/did_key_parse"), |b| {
            b.iter(|| PublicKey::from_did_key(black_box(&did)).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
