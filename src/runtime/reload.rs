//! Re-reading the descriptor while running: `POST /api/v1/admin/reload` and SIGHUP.
//!
//! The file is read and validated *outside* the broker mutex (it may be megabytes, and
//! reading it is IO); only the merge, [`Broker::reload`](crate::domain::Broker::reload),
//! runs under it. So a descriptor that cannot be used changes nothing, and requests are
//! never held up by the disk.

use std::path::{Path, PathBuf};

use crate::config;
use crate::domain::ReloadReport;
use crate::domain::descriptor::DescriptorError;

use super::handle::BrokerHandle;

/// The descriptor the service was started with, if any: what a reload reads again.
#[derive(Clone, Debug, Default)]
pub struct DescriptorSource(Option<PathBuf>);

impl DescriptorSource {
    /// `None`: started without a descriptor, so reloads are refused.
    pub fn new(path: Option<PathBuf>) -> Self {
        DescriptorSource(path)
    }

    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

/// A reload that was applied.
#[derive(Debug)]
pub struct Reloaded {
    pub path: PathBuf,
    pub report: ReloadReport,
    /// What loads but is probably a mistake (unknown keys, space-separated tags).
    pub warnings: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the service was started without a descriptor file: there is nothing to reload")]
    NoDescriptor,
    /// Unreadable or invalid; the message names the file, and the line, column and
    /// resource where the parser knows them.
    #[error("{error:#}")]
    Invalid { path: PathBuf, error: anyhow::Error },
}

impl ReloadError {
    /// Where the parser found the problem: line and column (1-based), and the resource.
    pub fn location(&self) -> (Option<usize>, Option<usize>, Option<&str>) {
        let ReloadError::Invalid { error, .. } = self else {
            return (None, None, None);
        };
        match error
            .chain()
            .find_map(|c| c.downcast_ref::<DescriptorError>())
        {
            Some(DescriptorError::Yaml { line, column, .. }) => (*line, *column, None),
            Some(DescriptorError::Resource { name, .. }) => (None, None, Some(name.as_str())),
            _ => (None, None, None),
        }
    }
}

/// Reads the descriptor again and merges it into the broker. Blocking (file IO): call it
/// from a blocking thread.
///
/// # Errors
/// [`ReloadError`]; the broker is untouched then.
pub fn reload(handle: &BrokerHandle, source: &DescriptorSource) -> Result<Reloaded, ReloadError> {
    let path = source.path().ok_or(ReloadError::NoDescriptor)?;
    let descriptor = config::load_descriptor(path).map_err(|error| ReloadError::Invalid {
        path: path.to_owned(),
        error,
    })?;
    let report = handle.reload(descriptor.resources);
    Ok(Reloaded {
        path: path.to_owned(),
        report,
        warnings: descriptor.warnings,
    })
}

/// Logs a reload's outcome: what changed at info, warnings and refusals at warn.
pub fn log_outcome(outcome: &Result<Reloaded, ReloadError>) {
    match outcome {
        Ok(Reloaded {
            path,
            report,
            warnings,
        }) => {
            for warning in warnings {
                tracing::warn!("{}: {warning}", path.display());
            }
            tracing::info!(
                descriptor = %path.display(),
                added = ?report.added,
                updated = ?report.updated,
                removed = ?report.removed,
                retiring = ?report.retiring,
                unchanged = report.unchanged,
                "descriptor reloaded"
            );
        }
        Err(e) => tracing::warn!("descriptor not reloaded, nothing changed: {e}"),
    }
}

/// Reloads on every SIGHUP until `cancel` fires. The handler is installed by the caller
/// (`hangups`) before the service announces itself, so that a SIGHUP sent as soon as it
/// listens reloads instead of killing the process (SIGHUP's default action).
#[cfg(unix)]
pub async fn run_reload_on_hangup(
    handle: BrokerHandle,
    source: DescriptorSource,
    mut hangups: tokio::signal::unix::Signal,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            got = hangups.recv() => if got.is_none() { break },
        }
        tracing::info!("SIGHUP: reloading the descriptor");
        // The service's own doing (the audit log's `system`), not a request's.
        let handle = handle.scoped(std::sync::Arc::new(super::RequestScope::new(
            super::Cause::system(),
        )));
        let source = source.clone();
        // Off the runtime's thread: it also runs the accept loop and the expiry timer.
        match tokio::task::spawn_blocking(move || reload(&handle, &source)).await {
            Ok(outcome) => log_outcome(&outcome),
            Err(e) => tracing::error!(error.cause_chain = ?e, "descriptor reload failed"),
        }
    }
    tracing::debug!("SIGHUP reloader stopped");
}
