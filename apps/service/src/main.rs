//! `stratos`: the service's command line. `stratos` or `stratos serve` runs the service with the
//! configuration from the environment (and `./.env`); `stratos migrate-service-did --from <old>`
//! moves a data directory to the configured service DID; `--help` and `--version` only print.
//! The hidden `stratos config-doc` prints (or, with `--write <file>`, updates) the variable tables
//! of docs/configuration.md from the settings table.

use clap::{Arg, ArgAction, Command};
use stratos_domain::syntax::Did;
use stratos_service::config::{self, Config};
use stratos_service::identity::{self, Migration};

// Measured with stratos-loadgen (docs/performance.md): glibc malloc's arena locking across the
// storage driver's many threads cost 10-25 % of throughput; mimalloc's per-thread heaps do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cli() -> Command {
    Command::new("stratos")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Stratos: private, boundary-aware records for AT Protocol (the XRPC service)")
        .after_help(
            "Every setting is a STRATOS_* environment variable, also read from ./.env when \
             present (the environment wins): see docs/configuration.md and .env.example.",
        )
        .subcommand(Command::new("serve").about("Run the service (what `stratos` alone does)"))
        .subcommand(
            Command::new("migrate-service-did")
                .about(
                    "Make the data directory belong to the configured service DID instead of \
                     the one recorded at its first start (docs/operators.md)",
                )
                .arg(
                    Arg::new("from")
                        .long("from")
                        .value_name("OLD_DID")
                        .required(true)
                        .help("The DID the data directory belongs to now (start-up names it)"),
                ),
        )
        .subcommand(
            // For maintainers, not operators: hidden from --help.
            Command::new("config-doc")
                .hide(true)
                .about("Print the variable tables of docs/configuration.md")
                .arg(
                    Arg::new("write")
                        .long("write")
                        .value_name("FILE")
                        .action(ArgAction::Set)
                        .help("Replace the generated part of FILE instead of printing"),
                ),
        )
}

fn main() {
    let matches = cli().get_matches();
    let code = match matches.subcommand() {
        None | Some(("serve", _)) => serve(),
        Some(("migrate-service-did", args)) => {
            migrate(args.get_one::<String>("from").map_or("", String::as_str))
        }
        Some(("config-doc", args)) => config_doc(args.get_one::<String>("write")),
        // clap accepts only the subcommands declared above.
        Some(_) => 2,
    };
    std::process::exit(code);
}

/// Prints the generated tables, or splices them into `write`.
fn config_doc(write: Option<&String>) -> i32 {
    let Some(path) = write else {
        print!("{}", config::reference_markdown());
        return 0;
    };
    let result = std::fs::read_to_string(path).and_then(|doc| {
        let updated = config::update_reference(&doc).ok_or_else(|| {
            std::io::Error::other("no `stratos config-doc` marker comments in the file")
        })?;
        if updated != doc {
            std::fs::write(path, updated)?;
            println!("updated {path}");
        } else {
            println!("{path} is up to date");
        }
        Ok(())
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {path}: {e}");
            1
        }
    }
}

fn load_config() -> Result<Config, i32> {
    Config::from_env().map_err(|e| {
        eprintln!("configuration error:\n{e}");
        2
    })
}

fn migrate(from: &str) -> i32 {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Ok(from) = Did::parse(from) else {
        eprintln!("error: --from must be a DID, got {from:?}");
        return 2;
    };
    let to = &config.service_did;
    match identity::migrate(&config.data_dir, &from, to) {
        Ok(Migration::Changed) => {
            println!(
                "the data directory {} now belongs to the service {to} (it belonged to {from}).\n\
                 Existing records and enrollments keep boundaries of {from}: give accounts \
                 their boundaries again with zone.stratos.admin.setBoundaries (docs/operators.md).",
                config.data_dir.display()
            );
            0
        }
        Ok(Migration::AlreadyDone) => {
            println!(
                "the data directory {} already belongs to the service {to}: nothing to do",
                config.data_dir.display()
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn serve() -> i32 {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    // RUST_LOG (checked by the configuration) replaces LOG_LEVEL.
    let directive = config
        .log_filter
        .clone()
        .unwrap_or_else(|| config.log_level.filter_directive().to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: escape codes in a log file or collector are noise.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match config.log_format {
        config::LogFormat::Text => logs.init(),
        // One object per line; the event's fields at the top level, the request span (with its
        // trace_id) under "span".
        config::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    if std::path::Path::new(config::DOTENV_FILE).is_file() {
        tracing::info!(
            "read {} from the working directory (the environment wins over it)",
            config::DOTENV_FILE
        );
    }
    tracing::info!(
        "effective configuration (secrets redacted):\n{}",
        config.redacted()
    );
    // The configuration's warnings include dev mode's: it is said once, here.
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async move {
                let server = stratos_service::start(config, workers).await?;
                tracing::info!("listening on {}", server.url());
                server.wait().await
            })
        });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
