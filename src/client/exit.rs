//! The client's exit codes: one table, shown in `--help` and README § Command-line client.

/// It worked.
pub const OK: u8 = 0;
/// The command line was wrong (clap's own errors exit with this too), or a local error.
pub const USAGE: u8 = 1;
/// The service refused: locked, held, unavailable, conflicting, unauthorized, forbidden,
/// rate-limited, a bad value (every 4xx but 404); stderr names the API's `code`.
pub const REFUSED: u8 = 2;
/// No such resource or reservation (404), or the reservation ended.
pub const NOT_FOUND: u8 = 3;
/// The service could not be reached, or failed (5xx, an answer that is not JSON).
pub const UNREACHABLE: u8 = 4;
/// A wait ran out (`--timeout`).
pub const TIMEOUT: u8 = 5;
/// `run`: the lock was lost while CMD ran (extension refused, force-unlocked); CMD was
/// stopped.
pub const LOCK_LOST: u8 = 124;
/// `run`: the resources were never obtained (refused, not found, unreachable, timed
/// out); CMD did not run.
pub const NOT_OBTAINED: u8 = 125;
/// `run`: CMD could not be executed.
pub const CANNOT_EXECUTE: u8 = 126;
/// `run`: CMD was not found.
pub const COMMAND_NOT_FOUND: u8 = 127;

/// The table, for `rentabot --help`'s client commands.
pub const HELP: &str = "\
Exit codes of the client commands:
  0  ok
  1  usage: a wrong command line
  2  refused by the service (locked, unavailable, unauthorized, ...: its code is printed)
  3  not found (no such resource or reservation, or the reservation ended)
  4  the service is unreachable or failed (5xx)
  5  timed out while waiting (--timeout)";

/// `rentabot run --help`'s table.
pub const RUN_HELP: &str = "\
Exit status: CMD's own; 128+N when CMD was killed by signal N. And:
  124  the lock was lost while CMD ran (CMD got SIGTERM, then SIGKILL after --kill-after)
  125  the resources were never obtained (refused, not found, unreachable, --timeout)
  126  CMD could not be executed
  127  CMD was not found
CMD sees RENTABOT_RESOURCE_ID, RENTABOT_RESOURCE_NAME, RENTABOT_RESOURCE_ENDPOINT,
RENTABOT_LOCK_TOKEN and RENTABOT_FENCING_TOKEN (comma-separated lists for several).";
