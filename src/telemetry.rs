//! Logging: `tracing` to stdout, filtered by `--log-level`.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is a level name or an `EnvFilter` directive.
pub fn init(level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level.to_ascii_lowercase()).with_context(|| {
        format!("invalid --log-level {level:?}: use error, warn, info, debug or trace")
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!(e))
        .context("installing the log subscriber")
}
