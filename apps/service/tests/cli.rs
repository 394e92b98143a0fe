#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The `stratos` binary's command line (`--help`, `--version`, `serve`, `migrate-service-did`,
//! the hidden `config-doc`), its start-up warnings for the README's own example, `./.env` (the
//! README's `cp .env.example .env`), and the service DID kept with the data directory (a restart
//! under another DID is refused until migrated). Also `scripts/run`'s choice of the service's
//! Cargo features (with a stand-in `cargo`).
//!
//! The binary runs with a cleared environment, a temporary data directory and a free port, so
//! nothing here reads the caller's environment or touches a default port.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use stratos_service::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_stratos");

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(data_dir: &Path, port: u16, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .current_dir(data_dir.parent().unwrap())
        .env("STRATOS_DATA_DIR", data_dir)
        .env("STRATOS_PORT", port.to_string())
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child` to exit within `limit`; kills it (and fails) otherwise.
fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`stratos {what}` was still running after {limit:?} (it started the service?)\n\
                 stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version_print_and_exit_without_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["serve", "--help"],
        &["--version"],
        &["-V"],
    ] {
        let port = free_port();
        let child = command(&data, port, &[], args).spawn().unwrap();
        let out = finish(child, Duration::from_secs(10), &args.join(" "));
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {:?}\n{stdout}\n{}",
            out.status,
            text(&out.stderr)
        );
        if args.contains(&"--version") || args.contains(&"-V") {
            assert_eq!(
                stdout.trim(),
                format!("stratos {}", env!("CARGO_PKG_VERSION")),
                "{args:?}"
            );
        } else {
            assert!(stdout.contains("Usage: stratos"), "{args:?}: {stdout}");
            if args[0] != "serve" {
                assert!(stdout.contains("serve"), "{args:?}: {stdout}");
                assert!(stdout.contains("migrate-service-did"), "{args:?}: {stdout}");
                assert!(
                    stdout.contains("docs/configuration.md"),
                    "{args:?}: {stdout}"
                );
                assert!(stdout.contains(".env"), "{args:?}: {stdout}");
                // A maintainer's command, hidden from operators.
                assert!(!stdout.contains("config-doc"), "{args:?}: {stdout}");
            }
        }
        // It did not start: no data directory, nothing listening.
        assert!(!data.exists(), "{args:?} created the data directory");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{args:?}"
        );
    }
    // A mistake is a usage error (exit 2), not a started service.
    let child = command(&data, free_port(), &[], &["--bogus"])
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(10), "--bogus");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Usage: stratos"));
    assert!(!data.exists());
}

/// Starts the binary and collects its log up to "listening on" (or its exit).
fn run_until_listening(data: &Path, port: u16, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut child = command(data, port, env, args).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.contains("listening on");
            if tx.send(line).is_err() || done {
                break;
            }
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    // The child is ours: stop it by its handle.
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        log.contains("listening on"),
        "the service did not start:\n{log}\nstderr: {}",
        text(&out.stderr)
    );
    log
}

/// The README's own example (`STRATOS_DEV_MODE=true STRATOS_ADMIN_PASSWORD=secret
/// STRATOS_ALLOWED_DOMAINS=general`): the dev-mode warning once, and no claim that nobody can
/// enroll (the operator can, through the admin endpoints).
#[test]
fn the_readme_example_starts_with_truthful_warnings_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = run_until_listening(
        &data,
        free_port(),
        &[
            ("STRATOS_DEV_MODE", "true"),
            ("STRATOS_ADMIN_PASSWORD", "secret"),
            ("STRATOS_ALLOWED_DOMAINS", "general"),
        ],
        &[],
    );
    assert_eq!(
        log.matches("STRATOS_DEV_MODE is on").count(),
        1,
        "the dev-mode warning once:\n{log}"
    );
    assert!(!log.contains("nobody can enroll"), "{log}");
    assert!(
        log.contains("zone.stratos.admin.enrollActor"),
        "says how accounts can be enrolled:\n{log}"
    );
    // `serve` is the same as no subcommand. (Another data directory: this one belongs to the
    // first run's service DID, which came from its port.)
    let log = run_until_listening(
        &dir.path().join("data2"),
        free_port(),
        &[("STRATOS_ALLOWED_DOMAINS", "general")],
        &["serve"],
    );
    // Without an admin password nobody can enroll indeed, and the warning says so.
    assert!(log.contains("nobody can enroll"), "{log}");
    assert!(!log.contains("STRATOS_DEV_MODE is on"), "{log}");
}

/// The README's `cp .env.example .env`: the binary reads `./.env` from its working directory
/// before parsing, a variable of the environment wins over the file, and the file's secrets are
/// redacted in the start-up summary like any other.
#[test]
fn a_dotenv_file_in_the_working_directory_configures_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let example = include_str!("../../../.env.example");
    // The copy, with three lines uncommented the way an operator would.
    let dotenv = example
        .replace(
            "# STRATOS_ALLOWED_DOMAINS=\n",
            "STRATOS_ALLOWED_DOMAINS=general\n",
        )
        .replace(
            "# STRATOS_ADMIN_PASSWORD=\n",
            "STRATOS_ADMIN_PASSWORD='dotenv-admin-secret'\n",
        )
        // `command` sets STRATOS_PORT in the environment, which must win.
        .replace("# STRATOS_PORT=3100\n", "STRATOS_PORT=1\n");
    assert_eq!(
        dotenv.lines().filter(|l| !l.starts_with('#')).count(),
        example.lines().filter(|l| !l.starts_with('#')).count() + 3
    );
    std::fs::write(dir.path().join(".env"), dotenv).unwrap();
    let port = free_port();
    let log = run_until_listening(&data, port, &[], &[]);
    assert!(
        log.contains("read .env from the working directory"),
        "{log}"
    );
    assert!(log.contains(&format!("STRATOS_PORT={port}\n")), "{log}");
    assert!(
        log.contains(&format!(
            "STRATOS_ALLOWED_DOMAINS=did:web:localhost%3A{port}/general\n"
        )),
        "{log}"
    );
    assert!(log.contains("STRATOS_ADMIN_PASSWORD=<redacted>\n"), "{log}");
    assert!(!log.contains("dotenv-admin-secret"), "{log}");
    // With the admin password from the file, the operator can enroll accounts.
    assert!(!log.contains("nobody can enroll"), "{log}");

    // The example copied as it is starts on the defaults.
    std::fs::write(dir.path().join(".env"), example).unwrap();
    let log = run_until_listening(&dir.path().join("data2"), free_port(), &[], &[]);
    assert!(
        log.contains("STRATOS_ADMIN_PASSWORD=(unset: admin endpoints disabled)"),
        "{log}"
    );

    // A broken file stops the start with the file named and its value kept out.
    std::fs::write(
        dir.path().join(".env"),
        "STRATOS_ADMIN_PASSWORD=\"dotenv-unclosed-secret\n",
    )
    .unwrap();
    let child = command(&data, free_port(), &[], &[]).spawn().unwrap();
    let out = finish(child, Duration::from_secs(10), "(serve, broken .env)");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(".env: cannot parse the line of STRATOS_ADMIN_PASSWORD"),
        "{stderr}"
    );
    assert!(!stderr.contains("dotenv-unclosed-secret"), "{stderr}");
}

/// `stratos config-doc` prints the variable tables of docs/configuration.md and, with
/// `--write`, replaces them between the marker comments of a file.
#[test]
fn config_doc_prints_and_updates_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child = command(&data, free_port(), &[], &["config-doc"])
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(10), "config-doc");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        stratos_service::config::reference_markdown()
    );
    let file = dir.path().join("doc.md");
    std::fs::write(
        &file,
        "# Doc\n\n<!-- BEGIN generated by `stratos config-doc` from the settings table \
         (apps/service/src/config/table.rs); do not edit by hand -->\nstale\n\
         <!-- END generated by `stratos config-doc` -->\n\nprose\n",
    )
    .unwrap();
    let args = ["config-doc", "--write", file.to_str().unwrap()];
    let child = command(&data, free_port(), &[], &args).spawn().unwrap();
    let out = finish(child, Duration::from_secs(10), "config-doc --write");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with("# Doc\n"));
    assert!(written.ends_with("\n\nprose\n"));
    assert!(written.contains("| `STRATOS_PORT` | int 1..65535 | `3100` |"));
    assert!(!written.contains("stale"));
    assert!(!data.exists(), "config-doc started the service");
}

/// A configuration over `data_dir` whose service DID is the default for `port`.
fn config_on_port(data_dir: &Path, port: u16) -> Config {
    let mut config = Config::from_pairs([
        ("STRATOS_DATA_DIR", data_dir.to_str().unwrap()),
        ("STRATOS_PORT", &port.to_string()),
        ("STRATOS_ALLOWED_DOMAINS", "general"),
        ("STRATOS_SQLITE_DURABILITY", "relaxed"),
    ])
    .unwrap();
    config.port = 0;
    config
}

/// Restarting on another port with the same data directory would silently change the default
/// service DID (`did:web:localhost%3A3105` instead of `…3100`) and strand every record and
/// enrollment under the old one: the start is refused with both DIDs named, until the operator
/// migrates with `stratos migrate-service-did --from <old>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_service_did_on_the_same_data_directory_is_refused_until_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (a, b) = ("did:web:localhost%3A3100", "did:web:localhost%3A3105");

    let first = stratos_service::start(config_on_port(&data, 3100), 1)
        .await
        .unwrap();
    first.stop().await.unwrap();
    // The same DID starts again.
    let again = stratos_service::start(config_on_port(&data, 3100), 1)
        .await
        .unwrap();
    again.stop().await.unwrap();

    let refused = stratos_service::start(config_on_port(&data, 3105), 1)
        .await
        .expect_err("another service DID on the same data directory");
    let message = format!("{refused:#}");
    assert!(message.contains(a), "{message}");
    assert!(message.contains(b), "{message}");
    assert!(
        message.contains(&format!("stratos migrate-service-did --from {a}")),
        "{message}"
    );

    // The binary refuses the same way, promptly, without serving.
    let child = command(&data, 3105, &[], &[]).spawn().unwrap();
    let out = finish(child, Duration::from_secs(30), "(serve, mismatched DID)");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(a), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(b), "{}", text(&out.stderr));

    // A migration must name the DID it migrates from.
    let child = command(
        &data,
        3105,
        &[],
        &["migrate-service-did", "--from", "did:web:elsewhere.example"],
    )
    .spawn()
    .unwrap();
    let out = finish(child, Duration::from_secs(30), "migrate-service-did");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(a), "{}", text(&out.stderr));
    let child = command(&data, 3105, &[], &["migrate-service-did", "--from", a])
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(30), "migrate-service-did");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(b), "{}", text(&out.stdout));

    // Now B is the data directory's DID, and A is the stranger.
    let migrated = stratos_service::start(config_on_port(&data, 3105), 1)
        .await
        .unwrap();
    migrated.stop().await.unwrap();
    let refused = stratos_service::start(config_on_port(&data, 3100), 1)
        .await
        .expect_err("the old DID after the migration");
    assert!(format!("{refused:#}").contains(b));
}

/// What `scripts/run` would build and run for `env`, `.env` text and `args`: the arguments it
/// gives `cargo` (a stand-in first on PATH prints them, with what it sees of
/// `STRATOS_BUILD_FEATURES`, instead of building).
fn scripts_run_cargo_args(env: &[(&str, &str)], dotenv: Option<&str>, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("scripts")).unwrap();
    std::fs::copy(root.join("scripts/run"), tmp.path().join("scripts/run")).unwrap();
    if let Some(text) = dotenv {
        std::fs::write(tmp.path().join(".env"), text).unwrap();
    }
    let shim = tmp.path().join("bin");
    std::fs::create_dir_all(&shim).unwrap();
    std::fs::write(
        shim.join("cargo"),
        "#!/bin/sh\necho \"$* [build-features:${STRATOS_BUILD_FEATURES-unset}]\"\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(shim.join("cargo")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(shim.join("cargo"), perms).unwrap();
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(tmp.path().join("scripts/run"))
        .args(args)
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// `scripts/run` builds the service without its backend features unless the configuration
/// names them (environment first, then `./.env`), or `STRATOS_BUILD_FEATURES` says otherwise;
/// that variable is not passed on to the service.
#[test]
fn scripts_run_builds_the_backends_the_configuration_names() {
    let base = "run --release --locked -p stratos-service --bin stratos --no-default-features";
    assert_eq!(
        scripts_run_cargo_args(&[], None, &[]),
        format!("{base} -- [build-features:unset]")
    );
    assert_eq!(
        scripts_run_cargo_args(
            &[
                ("STORAGE_BACKEND", "postgres"),
                ("STRATOS_VALKEY_URL", "redis://127.0.0.1:6379")
            ],
            None,
            &[]
        ),
        format!("{base} --features postgres,valkey -- [build-features:unset]")
    );
    // From ./.env, where the environment does not say; the environment wins where it does.
    assert_eq!(
        scripts_run_cargo_args(
            &[("STORAGE_BACKEND", "sqlite")],
            Some("export STRATOS_BLOB_STORAGE=\"s3\"\nSTORAGE_BACKEND=postgres\n"),
            &[]
        ),
        format!("{base} --features s3 -- [build-features:unset]")
    );
    assert_eq!(
        scripts_run_cargo_args(
            &[],
            None,
            &["migrate-from-ts", "--from-postgres", "postgres://x"]
        ),
        format!(
            "{base} --features postgres -- migrate-from-ts --from-postgres postgres://x \
             [build-features:unset]"
        )
    );
    assert_eq!(
        scripts_run_cargo_args(&[("STRATOS_BUILD_FEATURES", "all")], None, &[]),
        format!("{base} --features postgres,s3,valkey -- [build-features:unset]")
    );
    assert_eq!(
        scripts_run_cargo_args(
            &[
                ("STRATOS_BUILD_FEATURES", ""),
                ("STORAGE_BACKEND", "postgres")
            ],
            None,
            &[]
        ),
        format!("{base} -- [build-features:unset]")
    );
}
