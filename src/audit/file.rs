//! The JSON-lines file (`--audit-log FILE`): one record a line, appended by a thread of
//! its own.
//!
//! The publisher and the envelope only queue an entry ([`FileSink::send`]: `try_send` on
//! a bounded channel of [`QUEUE`] entries), so no request ever waits for the disk. The
//! thread serializes and writes what is queued, and flushes whenever the queue is empty
//! (it does not fsync: the file is a log for people and log shippers; the durable record
//! is the store's `audit` table with `--persist`).
//!
//! When a write fails (a full disk, a removed mount) the thread logs an error once, keeps
//! writing the next lines (so the file resumes when the disk does), and `/readiness`
//! says 503 with the reason until a write succeeds. When the queue is full (the disk is
//! far slower than the requests), entries are dropped, counted and logged, and readiness
//! says so until the queue has room again: requests are never held up by the file.
//! The file is append-only: retention does not trim it (rotate it with logrotate's
//! `copytruncate`, or a log shipper).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;

use super::Entry;

/// Entries waiting for the file thread, at most.
pub const QUEUE: usize = 65_536;

enum Line {
    Entry(Entry),
    /// Write what is queued, then end.
    Close,
}

/// Where entries go to be written to the file. Cheap to call: a channel send.
pub struct FileSink {
    tx: SyncSender<Line>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Shared {
    path: PathBuf,
    /// The last write failed, for this reason.
    failure: Mutex<Option<String>>,
    failing: AtomicBool,
    /// The queue was full at the last send.
    full: AtomicBool,
    dropped: AtomicU64,
    written: AtomicU64,
}

/// How the file's writer is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStatus {
    pub path: PathBuf,
    pub written: u64,
    /// Entries never written because the queue was full.
    pub dropped: u64,
    pub failure: Option<String>,
    pub full: bool,
}

impl FileStatus {
    /// What `/readiness` says, if anything is wrong now.
    pub fn problem(&self) -> Option<String> {
        if let Some(failure) = &self.failure {
            return Some(format!(
                "the audit log {} cannot be written: {failure}",
                self.path.display()
            ));
        }
        self.full.then(|| {
            format!(
                "the audit log {} falls behind: {} entries dropped",
                self.path.display(),
                self.dropped
            )
        })
    }
}

impl FileSink {
    /// Opens (or creates, mode 0600) `path` for appending and starts the thread that
    /// writes it.
    ///
    /// # Errors
    /// The file cannot be opened or created, or the thread cannot be spawned.
    pub fn open(path: &Path) -> anyhow::Result<FileSink> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(path)
            .with_context(|| format!("opening the audit log {}", path.display()))?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            ..Shared::default()
        });
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("rentabot-audit".to_owned())
            .spawn({
                let shared = shared.clone();
                move || run(rx, file, &shared)
            })?;
        Ok(FileSink {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `entry`; drops it (counted, logged, readiness told) if the queue is full.
    pub fn send(&self, entry: Entry) {
        match self.tx.try_send(Line::Entry(entry)) {
            Ok(()) => {
                if self.shared.full.load(Ordering::Relaxed) {
                    self.shared.full.store(false, Ordering::Relaxed);
                }
            }
            Err(TrySendError::Full(_)) => {
                let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if !self.shared.full.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        path = %self.shared.path.display(),
                        dropped,
                        "the audit log falls behind: dropping entries until its queue has room"
                    );
                }
            }
            // The thread has ended (closed at shutdown): nothing more is written.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub fn status(&self) -> FileStatus {
        FileStatus {
            path: self.shared.path.clone(),
            written: self.shared.written.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failure: if self.shared.failing.load(Ordering::Acquire) {
                self.shared
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            } else {
                None
            },
            full: self.shared.full.load(Ordering::Relaxed),
        }
    }

    /// Writes what is queued and joins the thread.
    pub fn close(&self) {
        let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        // Blocks only while the queue is full, which the thread is draining.
        let _ = self.tx.send(Line::Close);
        if thread.join().is_err() {
            tracing::error!("the audit log's writer panicked");
        }
    }
}

fn run(rx: Receiver<Line>, file: File, shared: &Shared) {
    let mut out = BufWriter::new(file);
    let mut line = Vec::with_capacity(512);
    let mut pending = 0u64;
    loop {
        // Block for the next entry when everything is written; otherwise take what is
        // there and flush once the queue is empty.
        let next = if pending == 0 {
            rx.recv().ok()
        } else {
            match rx.try_recv() {
                Ok(next) => Some(next),
                Err(mpsc::TryRecvError::Empty) => {
                    flush(&mut out, shared, &mut pending);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => None,
            }
        };
        let Some(Line::Entry(entry)) = next else {
            break; // closed, or every sender is gone
        };
        line.clear();
        entry.write_json(&mut line);
        line.push(b'\n');
        match out.write_all(&line) {
            Ok(()) => pending += 1,
            Err(e) => failed(shared, &e),
        }
    }
    flush(&mut out, shared, &mut pending);
    tracing::debug!("audit log writer stopped");
}

fn flush(out: &mut BufWriter<File>, shared: &Shared, pending: &mut u64) {
    match out.flush() {
        Ok(()) => {
            shared.written.fetch_add(*pending, Ordering::Relaxed);
            if shared.failing.swap(false, Ordering::AcqRel) {
                tracing::info!(path = %shared.path.display(), "the audit log is written again");
            }
        }
        Err(e) => failed(shared, &e),
    }
    *pending = 0;
}

fn failed(shared: &Shared, e: &std::io::Error) {
    *shared.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    if !shared.failing.swap(true, Ordering::AcqRel) {
        tracing::error!(path = %shared.path.display(), error = %e, "cannot write the audit log");
    }
}
