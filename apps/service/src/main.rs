//! `stratos`: the service's command line. `stratos` or `stratos serve` runs the service with the
//! configuration from the environment (and `./.env`); `stratos migrate-service-did --from <old>`
//! moves a data directory to the configured service DID; `stratos migrate-from-ts` imports the
//! TypeScript original's data; `--help` and `--version` only print.
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
            Command::new("migrate-from-ts")
                .about(
                    "Import the TypeScript original's enrollments, boundaries, signing keys and \
                     records into this service's storage (docs/operators.md); run it with the \
                     service stopped",
                )
                .arg(
                    Arg::new("from")
                        .long("from")
                        .value_name("TS_DATA_DIR")
                        .help("The original's STRATOS_DATA_DIR (SQLite backend)"),
                )
                .arg(
                    Arg::new("from-postgres")
                        .long("from-postgres")
                        .value_name("URL")
                        .conflicts_with("from")
                        .help("The original's PostgreSQL database (PostgreSQL backend)"),
                )
                .arg(
                    Arg::new("schema")
                        .long("schema")
                        .value_name("SCHEMA")
                        .default_value("public")
                        .requires("from-postgres")
                        .help("The schema of the original's service tables"),
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
        Some(("migrate-from-ts", args)) => migrate_from_ts(
            args.get_one::<String>("from").map(String::as_str),
            args.get_one::<String>("from-postgres").map(String::as_str),
            args.get_one::<String>("schema")
                .map_or("public", String::as_str),
        ),
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

/// `stratos migrate-from-ts`: reads the original's data and imports it through the service's
/// own use cases, into the storage the configuration names.
fn migrate_from_ts(from: Option<&str>, postgres: Option<&str>, schema: &str) -> i32 {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Warnings (the adopted service key, the configuration's) go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(import_ts(config, from, postgres, schema)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn import_ts(
    config: Config,
    from: Option<&str>,
    postgres: Option<&str>,
    schema: &str,
) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    use stratos_ports::legacy_source::LegacySource;

    let source: Box<dyn LegacySource> = match (from, postgres) {
        (Some(dir), _) => {
            let dir = std::path::Path::new(dir);
            let source = stratos_sqlite::TsSqliteSource::open(dir)?;
            let same = std::fs::create_dir_all(&config.data_dir).is_ok()
                && std::fs::canonicalize(dir).ok() == std::fs::canonicalize(&config.data_dir).ok();
            anyhow::ensure!(
                !same,
                "--from is this service's own data directory ({}): import into another one \
                 (STRATOS_DATA_DIR) and keep the original's as it is",
                config.data_dir.display()
            );
            adopt_ts_service_key(dir, &config)?;
            Box::new(source)
        }
        #[cfg(feature = "postgres")]
        (None, Some(url)) => {
            Box::new(stratos_postgres::TsPostgresSource::connect(url, schema).await?)
        }
        #[cfg(not(feature = "postgres"))]
        (None, Some(_)) => {
            let _ = schema;
            anyhow::bail!(
                "--from-postgres needs the `postgres` feature, which this build of stratos was \
                 compiled without: build with `cargo build --release -p stratos-service \
                 --features postgres`"
            )
        }
        (None, None) => {
            anyhow::bail!("name the original's data: --from DIR or --from-postgres URL")
        }
    };
    let state = stratos_service::state::AppState::build(config)
        .await
        .context("opening this service's storage")?;
    let report = state
        .stratos
        .import_legacy(source.as_ref())
        .await
        .context("importing")?;
    println!("{report}");
    if report.imported() > 0 {
        println!(
            "Each imported account authorizes once more (sign in through /oauth/authorize): the \
             original's OAuth sessions cannot be carried over, and its enrollment record and \
             stubs with corrected CIDs wait in the outbox until then."
        );
    }
    Ok(if report.failed() > 0 { 1 } else { 0 })
}

/// The original kept its service key in `{data}/signing_key`. When this service has no key of
/// its own yet, the original's is copied there, where the start-up adopts it (with a warning
/// naming it), so existing attestations keep verifying.
fn adopt_ts_service_key(ts_dir: &std::path::Path, config: &Config) -> anyhow::Result<()> {
    let ours = config.data_dir.join("service_key");
    let theirs = ts_dir.join("signing_key");
    let staged = config.data_dir.join("signing_key");
    if config.service_key_file.is_none() && !ours.exists() && !staged.exists() && theirs.is_file() {
        std::fs::copy(&theirs, &staged)
            .map_err(|e| anyhow::anyhow!("copying {}: {e}", theirs.display()))?;
    }
    Ok(())
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
