//! The client's command line: one subcommand per API operation, and `run`.

use std::ffi::OsString;

use clap::{Args, Subcommand};

use super::exit;

/// The client commands, flattened into the top-level `rentabot` command.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Lock a resource now (by id, name, tags or expression), or fail at once.
    Lock(LockArgs),
    /// Release locks: one (`ID --token T`), or several at once (`--token T ...`).
    Unlock(UnlockArgs),
    /// Move a lock's expiry to now + --ttl.
    Extend(ExtendArgs),
    /// Queue a reservation; with --wait, wait until it is granted.
    Reserve(ReserveArgs),
    /// Wait for a reservation to be granted (a spinner on a terminal shows why it waits).
    Wait(WaitArgs),
    /// Claim a fulfilled reservation: its locks become yours.
    Claim(ReservationArgs),
    /// Withdraw a pending reservation.
    Cancel(ReservationArgs),
    /// One resource (by id or name) or reservation (res_...); without one, the service.
    Status(StatusArgs),
    /// List resources (filtered), or with --queue the reservations.
    Ls(LsArgs),
    /// Take a resource out of service, return it, or break its lock.
    Maintenance(MaintenanceArgs),
    /// Wait for the resources, run CMD while holding them, release them, and exit with
    /// CMD's status (README § rentabot run).
    Run(RunArgs),
}

/// Where the service is and who is asking; every client command takes these.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The service's base URL (http only).
    #[arg(long, env = "RENTABOT_URL", default_value = "http://127.0.0.1:8000",
          value_parser = parse_url)]
    pub url: String,
    /// API key, sent as X-API-Key (when the service has an auth config).
    #[arg(long, env = "RENTABOT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the API's JSON answer instead of a line for people.
    #[arg(long)]
    pub json: bool,
}

/// `--url`: `http://host[:port][/prefix]`. The client has no TLS.
fn parse_url(raw: &str) -> Result<String, String> {
    if raw.starts_with("https://") {
        return Err(
            "https is not supported by this client: reach the service over \
                    http (the plain side of its proxy, or a port-forward)"
                .into(),
        );
    }
    match raw.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(raw.to_owned()),
        _ => Err(format!(
            "{raw:?} is not a URL such as http://rentabot.lab:8000"
        )),
    }
}

/// Which resources: exactly one way of choosing.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct Select {
    /// The resource with this id.
    #[arg(long)]
    pub id: Option<u32>,
    /// The resource with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Resources carrying every one of these tags (repeat it, or separate with commas).
    #[arg(long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Resources matching a label expression, e.g. `linux && (x86 || arm) && !flaky`.
    #[arg(long)]
    pub expr: Option<String>,
}

/// Who holds a lock and why: shown on the resource.
#[derive(Debug, Clone, Args)]
pub struct LockTerms {
    /// Lock lifetime in seconds (the service's default is 3600).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: Option<u64>,
    /// Who holds the lock (a job URL, a user); shown as lock-holder.
    #[arg(long)]
    pub holder: Option<String>,
    /// Why; shown as lock-note.
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct LockArgs {
    #[command(flatten)]
    pub select: Select,
    /// How many resources (with --tag or --expr): all or none.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub quantity: Option<u32>,
    #[command(flatten)]
    pub terms: LockTerms,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct UnlockArgs {
    /// The resource; without it, every --token is released at once (all or none).
    pub id: Option<u32>,
    /// The lock token (repeat it, or separate with commas, to release several).
    #[arg(
        long = "token",
        env = "RENTABOT_LOCK_TOKEN",
        hide_env_values = true,
        value_delimiter = ',',
        required = true
    )]
    pub tokens: Vec<String>,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct ExtendArgs {
    /// The locked resource.
    pub id: u32,
    /// Its lock token.
    #[arg(long, env = "RENTABOT_LOCK_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The lock then ends this many seconds from now.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: u64,
    #[command(flatten)]
    pub conn: Connection,
}

/// A reservation request: what the queue is asked for.
#[derive(Debug, Clone, Args)]
pub struct Wanted {
    /// Resources carrying every one of these tags (repeat it, or separate with commas).
    #[arg(long = "tag", value_delimiter = ',', required_unless_present = "expr")]
    pub tags: Vec<String>,
    /// Resources matching a label expression, instead of --tag.
    #[arg(long, conflicts_with = "tags")]
    pub expr: Option<String>,
    /// How many resources, granted together.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub quantity: Option<u32>,
    /// 1 (served first) to 10; the service's default is 5.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub priority: Option<u8>,
    #[command(flatten)]
    pub terms: LockTerms,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct ReserveArgs {
    #[command(flatten)]
    pub wanted: Wanted,
    /// Seconds the reservation may wait in the queue (the service's default is 3600).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_wait: Option<u64>,
    /// Fulfilment is the claim: the locks are yours the moment they are granted.
    #[arg(long)]
    pub auto_claim: bool,
    /// Wait until it is granted (as `rentabot wait`), at most --timeout.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 5) and cancel it.
    #[arg(long, value_name = "SECS", default_value_t = 3600, requires = "wait")]
    pub timeout: u64,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct WaitArgs {
    /// The reservation (res_...).
    pub reservation: String,
    /// Give up after this many seconds (exit 5); the reservation stays queued.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct ReservationArgs {
    /// The reservation (res_...).
    pub reservation: String,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct StatusArgs {
    /// A resource id, a resource name, or a reservation id (res_...).
    pub what: Option<String>,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct LsArgs {
    /// The reservation queue instead of the resources.
    #[arg(long)]
    pub queue: bool,
    /// Resources carrying every tag (repeat it, or separate with commas); with --queue,
    /// reservations asking for the tag.
    #[arg(long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Resources matching a label expression.
    #[arg(long, conflicts_with = "queue")]
    pub expr: Option<String>,
    /// Resources whose name contains this, ignoring case.
    #[arg(long, conflicts_with = "queue")]
    pub name: Option<String>,
    /// Only locked resources.
    #[arg(long, conflicts_with_all = ["free", "queue"])]
    pub locked: bool,
    /// Only free resources.
    #[arg(long, conflicts_with = "queue")]
    pub free: bool,
    /// At most this many (the first page).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct MaintenanceArgs {
    #[command(subcommand)]
    pub action: MaintenanceAction,
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceAction {
    /// Out of service now (or, with --from, drain until then), with a reason.
    Start {
        /// The resource.
        id: u32,
        /// Why (required).
        #[arg(long)]
        reason: String,
        /// When the window opens (RFC 3339); default now.
        #[arg(long)]
        from: Option<String>,
        /// When it comes back by itself (RFC 3339); default: when someone says so.
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Back in service (or cancel the scheduled window).
    End {
        /// The resource.
        id: u32,
        #[command(flatten)]
        conn: Connection,
    },
    /// Break the resource's lock, with a reason.
    ForceUnlock {
        /// The resource.
        id: u32,
        /// Why (required).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Debug, Args)]
#[command(after_help = exit::RUN_HELP)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: Select,
    /// How many resources (with --tag or --expr), held together.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub quantity: Option<u32>,
    /// 1 (served first) to 10; the service's default is 5.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub priority: Option<u8>,
    #[command(flatten)]
    pub terms: LockTerms,
    /// Give up waiting for the resources after this many seconds (exit 125).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,
    /// Seconds CMD has to exit after SIGTERM, once the lock is lost, before SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub kill_after: u64,
    #[command(flatten)]
    pub conn: Connection,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}
