//! CAR reader on arbitrary bytes: must return Ok or a typed error, never panic, and whatever it
//! accepts must re-encode to a CAR that reads back to the same blocks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratos_domain::car::{self, CarLimits};

fuzz_target!(|data: &[u8]| {
    let limits = CarLimits {
        max_total: 1 << 20,
        max_block: 64 << 10,
        max_header: 4096,
    };
    if let Ok(parsed) = car::read(data, limits) {
        let mut out = car::encode_header(&parsed.roots).expect("roots re-encode");
        for cid in &parsed.order {
            car::encode_block(&mut out, cid, parsed.blocks.get(cid).expect("listed block"));
        }
        let again = car::read(&out, limits).expect("re-encoded CAR reads back");
        assert_eq!(again.blocks, parsed.blocks);
        assert_eq!(again.roots, parsed.roots);
        // Walking a repo from any root must not panic either.
        for root in &parsed.roots {
            let _ = car::walk_repo(&parsed.blocks, root, &mut |_, _| Ok(()));
        }
    }
});
