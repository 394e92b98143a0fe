//! Peak memory of reading a hostile import CAR: a one-record repository padded with `N` tiny
//! blocks nothing references (issue 14, finding 4). Prints the peak resident set growth of the
//! read step for the old whole-CAR reader (`car::read`, every block copied and hashed) and for
//! `import::read_repo_car`, each in its own process so the peaks do not mix.
//!
//! `cargo run --release -p stratos-testkit --example import_memory -- 1000000`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a measuring tool

use std::process::Command;

use stratos_domain::{car, import};
use stratos_testkit::hostile::{post_bytes, unreferenced_blocks_car};

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let path = std::env::temp_dir().join(format!("stratos-import-memory-{n}.car"));
    match args.get(2).map(String::as_str) {
        None => {
            let did = stratos_domain::syntax::Did::parse("did:plc:alice").unwrap();
            std::fs::write(&path, unreferenced_blocks_car(&did, &post_bytes("kept"), n)).unwrap();
            let size = std::fs::metadata(&path).unwrap().len();
            println!("CAR: {n} unreferenced blocks, {:.1} MB", size as f64 / 1e6);
            let me = std::env::current_exe().unwrap();
            for mode in ["old", "new"] {
                let out = Command::new(&me)
                    .args([&n.to_string(), mode])
                    .output()
                    .unwrap();
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
            let _ = std::fs::remove_file(&path);
        }
        Some(mode) => {
            let bytes = std::fs::read(&path).unwrap();
            let before = peak_kib();
            let start = std::time::Instant::now();
            let blocks = match mode {
                "old" => car::read(&bytes, car::CarLimits::default())
                    .unwrap()
                    .blocks
                    .len(),
                _ => import::read_repo_car(&bytes, import::ImportLimits::default())
                    .unwrap()
                    .records
                    .len(),
            };
            let grew = peak_kib().saturating_sub(before);
            println!(
                "{mode}: peak RSS +{:.1} MiB over the CAR itself, {:.0} ms ({blocks} blocks/records kept)",
                grew as f64 / 1024.0,
                start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
