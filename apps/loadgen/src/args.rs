//! The command line. Hand-written so the generator pulls in no argument-parsing crate; every flag
//! takes `--flag value` or `--flag=value`.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// What the workers send during the measured run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Create,
    Get,
    List,
    Mixed,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Get => "get",
            Workload::List => "list",
            Workload::Mixed => "mixed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "create" => Ok(Workload::Create),
            "get" => Ok(Workload::Get),
            "list" => Ok(Workload::List),
            "mixed" => Ok(Workload::Mixed),
            other => bail!("unknown workload `{other}` (create, get, list, mixed)"),
        }
    }
}

/// Relative weights of the mixed workload; only their ratios matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub create: u32,
    pub get: u32,
    pub list: u32,
}

impl Mix {
    fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [create, get, list] = parts.as_slice() else {
            bail!("--mix takes three weights: create,get,list (e.g. 10,70,20)");
        };
        let weight = |what: &str, v: &str| -> Result<u32> {
            v.parse::<u32>()
                .with_context(|| format!("--mix: {what} weight `{v}` is not a whole number"))
        };
        let mix = Mix {
            create: weight("create", create)?,
            get: weight("get", get)?,
            list: weight("list", list)?,
        };
        if u64::from(mix.create) + u64::from(mix.get) + u64::from(mix.list) == 0 {
            bail!("--mix: the weights add up to zero");
        }
        Ok(mix)
    }
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub base: String,
    pub workload: Workload,
    pub actors: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub threads: usize,
    pub json: bool,
    pub quiet: bool,
    pub admin_password: Option<String>,
    pub enroll: bool,
    pub did_prefix: String,
    pub boundary: String,
    pub other_boundary: String,
    pub seed: usize,
    pub denied_fraction: f64,
    pub mix: Mix,
    pub list_limit: u32,
    pub timeout: Duration,
    /// The service's process, whose CPU time in the window is reported.
    pub pid: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base: "http://127.0.0.1:3100".into(),
            workload: Workload::Create,
            actors: 50,
            concurrency: 50,
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(5),
            threads: 1,
            json: false,
            quiet: false,
            admin_password: None,
            enroll: true,
            did_prefix: "did:plc:loadgen".into(),
            boundary: "general".into(),
            other_boundary: "other".into(),
            seed: 20,
            denied_fraction: 0.5,
            mix: Mix {
                create: 10,
                get: 70,
                list: 20,
            },
            list_limit: 50,
            timeout: Duration::from_secs(10),
            pid: None,
        }
    }
}

impl Config {
    /// The DID of author `i`.
    pub fn actor_did(&self, i: usize) -> String {
        format!("{}{i:04}", self.did_prefix)
    }

    /// The viewer who holds the records' boundary.
    pub fn viewer_did(&self) -> String {
        format!("{}viewer", self.did_prefix)
    }

    /// The viewer who holds only the other boundary, so every read must look like "not found".
    pub fn stranger_did(&self) -> String {
        format!("{}stranger", self.did_prefix)
    }

    /// The share of gets made as the denied viewer. It only applies to the `get` workload: the
    /// mixed workload models ordinary traffic, where readers share the boundary.
    pub fn effective_denied_fraction(&self) -> f64 {
        match self.workload {
            Workload::Get => self.denied_fraction,
            _ => 0.0,
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

pub const USAGE: &str = "\
stratos-loadgen: HTTP load generator for a Stratos service in development-auth mode

USAGE: stratos-loadgen [FLAGS]

  --base URL              service base URL, plain http only [http://127.0.0.1:3100]
  --workload KIND         create | get | list | mixed [create]
  --actors N              authoring actors to enroll and write as [50]
  --concurrency C         requests in flight (one keep-alive connection each) [50]
  --duration D            measured window, e.g. 30s, 500ms, 2m [30s]
  --warmup D              load before measuring, not counted [5s]
  --threads N             tokio worker threads; 1 = current-thread runtime [1]
  --json                  print the summary as JSON on stdout
  --quiet                 no progress lines on stderr
  --admin-password PW     admin bearer for enrollActor [env STRATOS_ADMIN_PASSWORD]
  --no-enroll             skip enrollment (actors are enrolled already)
  --did-prefix P          actor DIDs are P0000, P0001, ..., Pviewer, Pstranger [did:plc:loadgen]
  --boundary NAME         boundary of the records and of the viewer [general]
  --other-boundary NAME   boundary of the denied viewer [other]
  --seed N                records created per actor before get/list/mixed runs [20]
  --denied-fraction F     share of gets made as the denied viewer (get workload) [0.5]
  --mix C,G,L             create,get,list weights of the mixed workload [10,70,20]
  --list-limit N          listRecords page size [50]
  --timeout D             per-request timeout [10s]
  --pid PID               the service's process: report its CPU time per request [none]
  -h, --help              this text

Exit status: 0 when at most 1 % of the measured requests failed unexpectedly, 1 when more did,
2 on a usage or setup error.
";

/// Parses the arguments after the program name. `env` looks up environment variables, so tests
/// do not depend on the process environment.
pub fn parse<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cfg = Config::default();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            bail!("unexpected argument `{arg}` (see --help)");
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag, None),
        };
        // Boolean flags never take a value, so `--json` followed by another flag is unambiguous.
        let boolean = |v: &mut bool| -> Result<()> {
            if inline.is_some() {
                bail!("--{name} takes no value");
            }
            *v = true;
            Ok(())
        };
        match name {
            "json" => {
                boolean(&mut cfg.json)?;
                continue;
            }
            "quiet" => {
                boolean(&mut cfg.quiet)?;
                continue;
            }
            "no-enroll" => {
                let mut skip = false;
                boolean(&mut skip)?;
                cfg.enroll = !skip;
                continue;
            }
            _ => {}
        }
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .ok_or_else(|| anyhow!("--{name} needs a value"))?,
        };
        let ctx = || format!("--{name} {value}");
        match name {
            "base" => cfg.base = value.trim_end_matches('/').to_owned(),
            "workload" => cfg.workload = Workload::parse(&value)?,
            "actors" => cfg.actors = positive(&value).with_context(ctx)?,
            "concurrency" => cfg.concurrency = positive(&value).with_context(ctx)?,
            "duration" => cfg.duration = parse_duration(&value).with_context(ctx)?,
            "warmup" => cfg.warmup = parse_duration(&value).with_context(ctx)?,
            "threads" => cfg.threads = positive(&value).with_context(ctx)?,
            "admin-password" => cfg.admin_password = Some(value),
            "did-prefix" => cfg.did_prefix = value,
            "boundary" => cfg.boundary = value,
            "other-boundary" => cfg.other_boundary = value,
            "seed" => cfg.seed = positive(&value).with_context(ctx)?,
            "denied-fraction" => cfg.denied_fraction = fraction(&value).with_context(ctx)?,
            "mix" => cfg.mix = Mix::parse(&value)?,
            "list-limit" => {
                cfg.list_limit = u32::try_from(positive(&value).with_context(ctx)?)
                    .map_err(|_| anyhow!("--list-limit {value}: too large"))?;
            }
            "timeout" => cfg.timeout = parse_duration(&value).with_context(ctx)?,
            "pid" => {
                cfg.pid = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| anyhow!("--pid {value}: not a process id"))?,
                );
            }
            other => bail!("unknown flag --{other} (see --help)"),
        }
    }
    if cfg.admin_password.is_none() {
        cfg.admin_password = env("STRATOS_ADMIN_PASSWORD").filter(|v| !v.is_empty());
    }
    if cfg.enroll && cfg.admin_password.is_none() {
        bail!("enrollment needs --admin-password or STRATOS_ADMIN_PASSWORD (or pass --no-enroll)");
    }
    if cfg.duration.is_zero() {
        bail!("--duration must be longer than zero");
    }
    if cfg.timeout.is_zero() {
        bail!("--timeout must be longer than zero");
    }
    if cfg.boundary == cfg.other_boundary {
        bail!("--boundary and --other-boundary must differ, or nothing would be denied");
    }
    Ok(Command::Run(Box::new(cfg)))
}

fn positive(s: &str) -> Result<usize> {
    let n: usize = s.parse().map_err(|_| anyhow!("not a whole number"))?;
    if n == 0 {
        bail!("must be at least 1");
    }
    Ok(n)
}

fn fraction(s: &str) -> Result<f64> {
    let f: f64 = s.parse().map_err(|_| anyhow!("not a number"))?;
    if !(0.0..=1.0).contains(&f) {
        bail!("must be between 0 and 1");
    }
    Ok(f)
}

/// Parses `500ms`, `30s`, `2m`, `1h`, `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        bail!("`{s}` is not a duration (e.g. 30s, 500ms, 2m)");
    }
    let n: f64 = number
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => bail!("unknown duration unit `{other}` (ms, s, m, h)"),
    };
    Duration::try_from_secs_f64(n * seconds_per_unit).map_err(|e| anyhow!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn run(args: &[&str]) -> Config {
        match parse(args.iter().copied(), no_env).unwrap() {
            Command::Run(c) => *c,
            Command::Help => panic!("unexpected help"),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "s", "ms", "10x", "-1s", "1..2s", "3 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn defaults() {
        let c = run(&["--admin-password", "pw"]);
        assert_eq!(c.base, "http://127.0.0.1:3100");
        assert_eq!(c.workload, Workload::Create);
        assert_eq!(
            (c.actors, c.concurrency, c.threads, c.seed),
            (50, 50, 1, 20)
        );
        assert_eq!(c.duration, Duration::from_secs(30));
        assert_eq!(c.warmup, Duration::from_secs(5));
        assert_eq!(c.actor_did(7), "did:plc:loadgen0007");
        assert_eq!(c.viewer_did(), "did:plc:loadgenviewer");
        assert_eq!(c.stranger_did(), "did:plc:loadgenstranger");
        assert!(!c.json && c.enroll);
    }

    #[test]
    fn every_flag_both_spellings() {
        let c = run(&[
            "--base=http://10.0.0.1:8080/",
            "--workload",
            "mixed",
            "--actors",
            "8",
            "--concurrency=16",
            "--duration",
            "2m",
            "--warmup=500ms",
            "--threads",
            "2",
            "--json",
            "--quiet",
            "--admin-password=s3cret",
            "--did-prefix",
            "did:plc:x",
            "--boundary",
            "a",
            "--other-boundary",
            "b",
            "--seed",
            "3",
            "--denied-fraction",
            "0.25",
            "--mix",
            "1, 2,3",
            "--list-limit",
            "10",
            "--timeout",
            "2s",
        ]);
        assert_eq!(c.base, "http://10.0.0.1:8080");
        assert_eq!(c.workload, Workload::Mixed);
        assert_eq!((c.actors, c.concurrency, c.threads, c.seed), (8, 16, 2, 3));
        assert_eq!(c.duration, Duration::from_secs(120));
        assert_eq!(c.warmup, Duration::from_millis(500));
        assert!(c.json && c.quiet);
        assert_eq!(c.admin_password.as_deref(), Some("s3cret"));
        assert_eq!(c.actor_did(12), "did:plc:x0012");
        assert_eq!((c.boundary.as_str(), c.other_boundary.as_str()), ("a", "b"));
        assert!((c.denied_fraction - 0.25).abs() < 1e-12);
        assert_eq!(
            c.mix,
            Mix {
                create: 1,
                get: 2,
                list: 3
            }
        );
        assert_eq!(c.list_limit, 10);
        assert_eq!(c.timeout, Duration::from_secs(2));
        // Denials are part of the get workload only.
        assert_eq!(c.effective_denied_fraction(), 0.0);
    }

    #[test]
    fn admin_password_from_env_or_not_needed() {
        let env = |k: &str| (k == "STRATOS_ADMIN_PASSWORD").then(|| "from-env".to_owned());
        let Command::Run(c) = parse(["--workload", "get"], env).unwrap() else {
            panic!("expected a run");
        };
        assert_eq!(c.admin_password.as_deref(), Some("from-env"));
        assert!(parse(["--workload", "get"], no_env).is_err());
        let c = run(&["--no-enroll"]);
        assert!(!c.enroll && c.admin_password.is_none());
    }

    #[test]
    fn rejects_bad_input() {
        let bad: &[&[&str]] = &[
            &["--admin-password", "p", "--workload", "delete"],
            &["--admin-password", "p", "--actors", "0"],
            &["--admin-password", "p", "--concurrency", "many"],
            &["--admin-password", "p", "--duration", "0s"],
            &["--admin-password", "p", "--denied-fraction", "1.5"],
            &["--admin-password", "p", "--mix", "1,2"],
            &["--admin-password", "p", "--mix", "0,0,0"],
            &[
                "--admin-password",
                "p",
                "--boundary",
                "x",
                "--other-boundary",
                "x",
            ],
            &["--admin-password", "p", "--bogus", "1"],
            &["--admin-password", "p", "--json=yes"],
            &["--admin-password", "p", "stray"],
            &["--admin-password"],
        ];
        for args in bad {
            assert!(
                parse(args.iter().copied(), no_env).is_err(),
                "{args:?} should be rejected"
            );
        }
        assert!(matches!(parse(["--help"], no_env).unwrap(), Command::Help));
    }
}
