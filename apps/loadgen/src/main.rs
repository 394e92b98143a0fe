//! `stratos-loadgen`: see `--help` and docs/loadgen.md.

use std::process::ExitCode;

use stratos_loadgen::args::{self, Command};

fn main() -> ExitCode {
    let cfg = match args::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("stratos-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    // One thread by default: the generator shares the machine with the service it measures,
    // and a current-thread runtime is the cheapest way to drive many connections.
    let runtime = if cfg.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stratos-loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(stratos_loadgen::run(&cfg)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stratos-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    if cfg.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
