//! The command line. Every option can also come from a `RENTABOT_*` environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::store::PersistUrl;
pub use crate::telemetry::LogFormat;

/// What `rentabot --version` prints after the name: the package version and the git
/// commit it was built from (`build.rs`; `unknown` when built without git).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RENTABOT_BUILD_COMMIT"),
    ")"
);

/// rentabot: lock and reserve shared lab resources (boards, rigs, licences) over HTTP.
/// Speaks the Rent-A-Bot 1.0 API.
#[derive(Debug, Parser)]
#[command(name = "rentabot", version = VERSION, args_conflicts_with_subcommands = true,
          after_help = crate::client::exit::HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serving is the default: `rentabot --port 9000` is `rentabot serve --port 9000`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (the default).
    // Boxed: the serve flags outweigh every other command's (clippy::large_enum_variant).
    Serve(Box<ServeArgs>),
    /// Validate a resource descriptor and print what it would load.
    Check {
        /// The descriptor (YAML) to check.
        file: PathBuf,
    },
    /// Copy a state file to FILE with SQLite's online backup: safe while the service
    /// runs; the copy is a state file the service can start on.
    Backup {
        /// The state to copy (as the service's --persist).
        #[arg(long, env = "RENTABOT_PERSIST", hide_env_values = true, value_name = "URL", value_parser = PersistParser)]
        persist: PersistUrl,
        /// The new file (never overwritten).
        file: PathBuf,
    },
    /// Print the state: every row as JSON (for `import`), or the resources as a
    /// descriptor. Safe while the service runs.
    Export {
        /// The state to read (as the service's --persist).
        #[arg(long, env = "RENTABOT_PERSIST", hide_env_values = true, value_name = "URL", value_parser = PersistParser)]
        persist: PersistUrl,
        /// `json`: the whole state; `descriptor`: the resources, as a YAML descriptor.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
    },
    /// Create a new state file from a JSON export (`rentabot export`).
    Import {
        /// The state file to create (it must not exist).
        #[arg(long, env = "RENTABOT_PERSIST", hide_env_values = true, value_name = "URL", value_parser = PersistParser)]
        persist: PersistUrl,
        /// The export to read (`-` for standard input).
        file: PathBuf,
    },
    /// Ask a running service's /health: exit 0 when it answers 200, 1 otherwise (no
    /// answer within the timeout, refused, another status). The container image's health
    /// check: it needs no shell or curl.
    Health {
        /// The service's base URL (`/health` is appended). Default:
        /// http://127.0.0.1:PORT, with PORT from --port.
        #[arg(long, env = "RENTABOT_URL", value_name = "URL")]
        url: Option<String>,
        /// The port of the service on this host, when no --url is given (as the
        /// service's --port, so the same environment configures both).
        #[arg(long, env = "RENTABOT_PORT", default_value_t = 8000)]
        port: u16,
        /// Seconds the whole probe may take: connecting, asking, reading the status.
        #[arg(long, value_name = "SECS", default_value_t = 5,
              value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout: u64,
    },
    /// The client commands (README § Command-line client).
    // Boxed like Serve: `run`'s flags outweigh the state tools'.
    #[command(flatten)]
    Client(Box<crate::client::ClientCommand>),
}

/// What `rentabot export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    Descriptor,
}

/// Parses `--persist`. Not a plain function: clap's error for one repeats the raw value,
/// and a PostgreSQL URL's may hold a password. This one says only what
/// [`PersistUrl::parse`] says, which shows the value with its password replaced.
#[derive(Clone)]
struct PersistParser;

impl clap::builder::TypedValueParser for PersistParser {
    type Value = PersistUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PersistUrl, clap::Error> {
        use clap::error::ErrorKind;
        let raw = value.to_str().ok_or_else(|| {
            clap::Error::raw(ErrorKind::InvalidUtf8, "--persist: the URL is not UTF-8\n")
                .with_cmd(cmd)
        })?;
        PersistUrl::parse(raw).map_err(|e| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{e}\n")).with_cmd(cmd)
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Resource descriptor (YAML). Without it rentabot looks for ./.rentabot.yaml,
    /// ./rentabot.yaml, ~/.rentabot/config.yaml, then $RENTABOT_RESOURCE_DESCRIPTOR,
    /// and starts empty if none exists.
    #[arg(long, short = 'c', env = "RENTABOT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "RENTABOT_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "RENTABOT_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Keep the state in this store, and restore it at start: sqlite:///relative/path.db
    /// or sqlite:////absolute/path.db (three slashes, then the path), or
    /// postgres://user:password@host/database (no TLS; prefer RENTABOT_PERSIST to
    /// keep the password off the command line). Without it the state lives in memory and
    /// a restart forgets it.
    #[arg(long, env = "RENTABOT_PERSIST", hide_env_values = true, value_name = "URL", value_parser = PersistParser)]
    pub persist: Option<PersistUrl>,

    /// With a postgres:// store (the HA pair): seconds the active service's leader
    /// session may stay silent (the process paused, the network cut) before PostgreSQL
    /// ends it and a standby takes over. It pings at a third of this; it is also the TCP
    /// user timeout of its connections (the leader's and the writer's), so a cut-off
    /// active answers 503 and steps down after as long. A dead process is replaced at
    /// once.
    #[arg(long, env = "RENTABOT_HA_LEADER_TIMEOUT", value_name = "SECS", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub ha_leader_timeout: u64,

    /// With a postgres:// store: after a takeover, lock expiries, claim windows and
    /// queue waits due within this many seconds are postponed to its end, so that no
    /// lock ends early because the new active's clock runs ahead of the old one's.
    #[arg(long, env = "RENTABOT_HA_GRACE", value_name = "SECS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub ha_grace: u64,

    /// Require API keys (or JWTs) as this YAML file says: keys, roles, rate limits. Read
    /// again on SIGHUP and POST /api/v1/admin/reload. Without it the service is open to
    /// anyone who can reach it, as Rent-A-Bot 1.0 was.
    #[arg(long, env = "RENTABOT_AUTH_CONFIG", value_name = "FILE")]
    pub auth_config: Option<PathBuf>,
    /// Append the audit log to this file, one JSON object a line (created with mode
    /// 0600). Never trimmed: rotate it with your log tooling.
    #[arg(long, env = "RENTABOT_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Audit entries kept for GET /api/v1/audit: in memory, and in the store with
    /// --persist (older ones are deleted as new ones come).
    #[arg(long, env = "RENTABOT_AUDIT_RETENTION", value_name = "N",
          default_value_t = crate::audit::DEFAULT_RETENTION,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    pub audit_retention: usize,

    /// Log level: error, warn, info, debug, trace, off, or 1.0's warning and critical;
    /// or directives such as `rentabot=debug,actix_server=warn`. Anything else is refused.
    #[arg(long, env = "RENTABOT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format: `text` (one line per event) or `json` (one object per line).
    #[arg(long, env = "RENTABOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Export request spans over OTLP/HTTP to this collector (a base URL such as
    /// http://127.0.0.1:4318; spans go to its /v1/traces). Needs a build with
    /// `--features otel`, which also reads the standard OTEL_EXPORTER_OTLP_* variables;
    /// a build without it refuses this option.
    #[arg(long, env = "RENTABOT_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Seconds of waiting that improve a queued reservation's priority by one level, so
    /// that nothing waits forever.
    #[arg(long, env = "RENTABOT_QUEUE_AGING", value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub queue_aging: u64,

    /// Seconds a fulfilled reservation waits to be claimed before its resources are
    /// released.
    #[arg(long, env = "RENTABOT_CLAIM_WINDOW", value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub claim_window: u64,

    /// Seconds before its end at which a lock shows `expiring-soon: true`.
    #[arg(long, env = "RENTABOT_EXPIRY_WARNING", value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub expiry_warning: u64,

    /// Most reservations that may wait in the queue at once; a new one that would wait
    /// beyond that is refused with 429 and Retry-After. Each release may look at every
    /// waiter, so this bounds what it costs.
    #[arg(long, env = "RENTABOT_MAX_PENDING_RESERVATIONS", value_name = "N",
          default_value_t = crate::domain::DEFAULT_MAX_PENDING,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_pending_reservations: usize,

    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "RENTABOT_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Seconds a request body may take to arrive, once its headers have; a slower one
    /// is answered 408 and its connection closed.
    #[arg(long, env = "RENTABOT_BODY_TIMEOUT", value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,

    /// Origins (`scheme://host[:port]`) besides rentabot's own whose web pages may change
    /// things (POST, PATCH, DELETE, the WebSocket); repeat it, or separate with commas.
    /// Needed behind a proxy that rewrites the Host header. Requests without an Origin
    /// header (curl, CI jobs) are never refused.
    #[arg(long = "allowed-origin", env = "RENTABOT_ALLOWED_ORIGINS", value_name = "ORIGIN",
          value_delimiter = ',', value_parser = parse_origin)]
    pub allowed_origins: Vec<String>,

    /// Open connections served at once (long-polls and sockets count); more wait in the
    /// listen backlog. Shared evenly among the workers. Lowered at start if the open
    /// file limit (`ulimit -n`) cannot hold it.
    #[arg(long, env = "RENTABOT_MAX_CONNECTIONS", value_name = "N",
          default_value_t = limits::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Seconds a client has to send a request's head (request line and headers) once it
    /// connected or, on a kept-alive connection, once it began: a slower one gets a 408
    /// and the connection closes.
    #[arg(long, env = "RENTABOT_HEAD_TIMEOUT", value_name = "SECS",
          default_value_t = limits::DEFAULT_HEAD_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub head_timeout: u64,

    /// Seconds an idle kept-alive connection stays open for the next request (0: close
    /// after each response).
    #[arg(long, env = "RENTABOT_KEEP_ALIVE", value_name = "SECS",
          default_value_t = limits::DEFAULT_KEEP_ALIVE_SECS,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub keep_alive: u64,
}

fn parse_origin(raw: &str) -> Result<String, String> {
    crate::api::guard::parse_origin(raw)
}

/// The defaults of the connection limits, shared by the flags and the documentation.
pub mod limits {
    /// `--max-connections`: far below the usual `ulimit -n` of 1024 once the process's
    /// own files are counted, and enough for a lab of a few hundred jobs long-polling.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 1000;
    /// `--head-timeout`: a request head is a few hundred bytes; 5 s is generous on any
    /// network a lab uses, and short enough that slow-head clients cannot pile up.
    pub const DEFAULT_HEAD_TIMEOUT_SECS: u64 = 5;
    /// `--keep-alive`: long enough for a job's lock, work, unlock bursts to reuse one
    /// connection, short enough not to hoard connections.
    pub const DEFAULT_KEEP_ALIVE_SECS: u64 = 5;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serving_is_the_default_and_takes_the_1_0_flags() {
        let cli =
            Cli::try_parse_from(["rentabot", "--config", "x.yaml", "--port", "9000"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.config, Some(PathBuf::from("x.yaml")));
        assert_eq!(cli.serve.port, 9000);
        assert_eq!(cli.serve.host, "127.0.0.1");
    }

    #[test]
    fn the_audit_log_keeps_100_000_entries_and_no_file_unless_told() {
        let cli = Cli::try_parse_from(["rentabot"]).unwrap();
        assert_eq!(cli.serve.audit_log, None);
        assert_eq!(cli.serve.audit_retention, 100_000);
        let cli = Cli::try_parse_from([
            "rentabot",
            "--audit-log",
            "/var/log/rentabot/audit.jsonl",
            "--audit-retention",
            "500",
        ])
        .unwrap();
        assert_eq!(
            cli.serve.audit_log,
            Some(PathBuf::from("/var/log/rentabot/audit.jsonl"))
        );
        assert_eq!(cli.serve.audit_retention, 500);
        for bad in ["0", "-1", "many"] {
            assert!(
                Cli::try_parse_from(["rentabot", "--audit-retention", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn log_format_and_connection_limits_have_documented_defaults() {
        let cli = Cli::try_parse_from(["rentabot"]).unwrap();
        assert_eq!(cli.serve.log_format, LogFormat::Text);
        assert_eq!(cli.serve.max_connections, 1000);
        assert_eq!(cli.serve.head_timeout, 5);
        assert_eq!(cli.serve.keep_alive, 5);

        let cli = Cli::try_parse_from([
            "rentabot",
            "--log-format",
            "json",
            "--max-connections",
            "50",
        ])
        .unwrap();
        assert_eq!(cli.serve.log_format, LogFormat::Json);
        assert_eq!(cli.serve.max_connections, 50);
        for bad in [
            ["--log-format", "yaml"],
            ["--max-connections", "0"],
            ["--head-timeout", "0"],
            ["--keep-alive", "-1"],
        ] {
            assert!(
                Cli::try_parse_from(["rentabot", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn request_bounds_and_allowed_origins_have_defaults_and_are_checked() {
        let plain = Cli::try_parse_from(["rentabot"]).unwrap();
        assert_eq!(plain.serve.body_timeout, 10);
        assert!(plain.serve.allowed_origins.is_empty());

        let cli = Cli::try_parse_from([
            "rentabot",
            "--body-timeout",
            "30",
            "--allowed-origin",
            "https://Dash.Example.com:443,http://10.0.0.5:8080",
            "--allowed-origin",
            "http://ci.example.com",
        ])
        .unwrap();
        assert_eq!(cli.serve.body_timeout, 30);
        assert_eq!(
            cli.serve.allowed_origins,
            [
                "https://dash.example.com",
                "http://10.0.0.5:8080",
                "http://ci.example.com"
            ]
        );
        for bad in [
            ["--allowed-origin", "dash.example.com"],
            ["--allowed-origin", "https://dash.example.com/"],
            ["--body-timeout", "0"],
        ] {
            assert!(
                Cli::try_parse_from(["rentabot", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_pending_reservation_cap_defaults_and_refuses_zero() {
        let cli = Cli::try_parse_from(["rentabot"]).unwrap();
        assert_eq!(cli.serve.max_pending_reservations, 10_000);
        let cli = Cli::try_parse_from(["rentabot", "--max-pending-reservations", "50"]).unwrap();
        assert_eq!(cli.serve.max_pending_reservations, 50);
        assert!(Cli::try_parse_from(["rentabot", "--max-pending-reservations", "0"]).is_err());
    }

    #[test]
    fn check_takes_a_file() {
        let cli = Cli::try_parse_from(["rentabot", "check", "d.yaml"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Check { file }) if file == Path::new("d.yaml"))
        );
    }
}
