//! The command line. Every option can also come from a `RENTABOT_*` environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// rentabot: lock and reserve shared lab resources (boards, rigs, licences) over HTTP.
/// Speaks the Rent-A-Bot 1.0 API.
#[derive(Debug, Parser)]
#[command(name = "rentabot", version, args_conflicts_with_subcommands = true)]
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
    Serve(ServeArgs),
    /// Validate a resource descriptor and print what it would load.
    Check {
        /// The descriptor (YAML) to check.
        file: PathBuf,
    },
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

    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// `rentabot=debug,actix_web=info`.
    #[arg(long, env = "RENTABOT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

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
