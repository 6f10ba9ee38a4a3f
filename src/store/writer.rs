//! The writer thread: commits the change stream to a [`Backend`] in groups, in order.
//!
//! [`Writer::submit`] runs under the broker mutex and only queues the change on a channel.
//! The thread takes everything queued (while one transaction syncs, the next batch
//! gathers: group commit), commits it in one transaction, then publishes the events and
//! advances the [`Ledger`], which releases the answers waiting for those changes.
//!
//! A change made by a request with an `Idempotency-Key` waits for that request's answer
//! ([`Writer::attach`]), so that the answer is committed in the same transaction: the
//! thread commits up to such a change and no further until the answer (or word that
//! there is none) arrives. The request sends it right after its handler returns, and a
//! drop guard sends "none" whatever happens, so the wait is a few microseconds.
//!
//! A failed commit fails closed: the ledger reports the failure (waiters answer 503,
//! `/readiness` says why) and the thread retries the same batch with backoff. Nothing is
//! acknowledged until it commits; if it does, service resumes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::bail;

use super::StoreError;
use super::{Backend, Batch};
use crate::audit;
use crate::domain::Clock;
use crate::runtime::ha::Lease;
use crate::runtime::{Change, Committer, IdempotencyRecord, Ledger, Publisher};

/// The most changes committed in one transaction: bounds a transaction's size and the
/// time its waiters wait, when thousands queue at once.
pub const MAX_BATCH: usize = 4096;
/// How long a change waits for its request's remembered answer before it is committed
/// without one (a safety net: the answer normally arrives within microseconds).
const RECORD_WAIT: Duration = Duration::from_secs(2);
/// Backoff between retries of a failing commit.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

enum Message {
    Change(Change),
    Record(u64, Option<IdempotencyRecord>),
    /// The audit entry of a request's answer (a refusal, or an accepted request that
    /// changed nothing): stored with the next transaction, waited for by nobody.
    Answer(audit::Entry),
    /// Commit what is queued, then end.
    Close,
}

/// Audit entries of requests' answers that may wait for the writer at once. While the
/// store fails, every request is refused (503) and recorded: without a bound they would
/// pile up in memory for as long as the outage lasts.
pub const MAX_QUEUED_ANSWERS: usize = 65_536;

/// The committer of a service with persistence. Cheap to share: it is a channel sender.
pub struct Writer {
    tx: Sender<Message>,
    /// Refusals sent and not yet taken by the thread.
    answers: Arc<AtomicUsize>,
    /// Some were not stored since the last one that was (warned once).
    answers_dropped: Arc<AtomicBool>,
}

impl Writer {
    /// Queues the audit entry of a request's answer for the next transaction. Never
    /// blocks and never waits for the commit: the request changed nothing to
    /// acknowledge. Beyond
    /// [`MAX_QUEUED_ANSWERS`] waiting, the entry is not stored (the audit log's memory
    /// and file still have it) and a warning says so, once per outage.
    pub fn store_answer(&self, entry: audit::Entry) {
        if self.answers.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_ANSWERS {
            self.answers.fetch_sub(1, Ordering::AcqRel);
            if !self.answers_dropped.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    "{MAX_QUEUED_ANSWERS} requests' answers wait for the store: the audit \
                     records of more are kept in memory and the file only"
                );
            }
            return;
        }
        self.answers_dropped.store(false, Ordering::Release);
        let _ = self.tx.send(Message::Answer(entry));
    }
}

impl Committer for Writer {
    fn submit(&self, change: Change) {
        // Sending on an unbounded channel never blocks. It fails only once the thread
        // has stopped, and then no answer waiting for this change will ever be given.
        let _ = self.tx.send(Message::Change(change));
    }

    fn attach(&self, seq: u64, record: Option<IdempotencyRecord>) {
        let _ = self.tx.send(Message::Record(seq, record));
    }

    fn wants_rows(&self) -> bool {
        true
    }

    fn close(&self) {
        let _ = self.tx.send(Message::Close);
    }
}

/// A crash on purpose, for the crash tests (`RENTABOT_FAILPOINT`): the process aborts
/// before the `n`th commit (so its changes are lost, and were never acknowledged), or
/// right after it (committed, but no answer went out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failpoint {
    BeforeCommit(u64),
    AfterCommit(u64),
}

impl Failpoint {
    /// The environment variable that sets one.
    pub const ENV: &str = "RENTABOT_FAILPOINT";

    /// Reads `before-commit:N` or `after-commit:N`.
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(text: &str) -> anyhow::Result<Failpoint> {
        let (kind, n) = text.split_once(':').unwrap_or((text, ""));
        let n: u64 = match n.parse() {
            Ok(n) if n > 0 => n,
            _ => bail!(
                "{}={text:?}: expected before-commit:N or after-commit:N with N >= 1",
                Self::ENV
            ),
        };
        match kind {
            "before-commit" => Ok(Failpoint::BeforeCommit(n)),
            "after-commit" => Ok(Failpoint::AfterCommit(n)),
            _ => bail!(
                "{}={text:?}: expected before-commit:N or after-commit:N",
                Self::ENV
            ),
        }
    }
}

/// What the thread needs besides its backend.
pub struct WriterContext {
    pub ledger: Arc<Ledger>,
    pub publisher: Arc<Publisher>,
    pub clock: Arc<dyn Clock>,
    pub failpoint: Option<Failpoint>,
    /// Set at shutdown: a failing commit stops being retried (its changes were never
    /// acknowledged, so giving up loses nothing anyone was told).
    pub stopping: Arc<AtomicBool>,
    /// Dropped when the thread ends, however it ends (its receiver learns of it).
    pub ended: tokio::sync::oneshot::Sender<()>,
    /// The HA term this writer commits under: deposed when the store refuses it.
    pub lease: Option<Lease>,
}

/// Starts the writer thread. It ends when every [`Writer`] is dropped and the queue is
/// committed.
///
/// # Errors
/// The thread cannot be spawned.
pub fn spawn(
    backend: Box<dyn Backend>,
    context: WriterContext,
) -> anyhow::Result<(Writer, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let answers = Arc::new(AtomicUsize::new(0));
    let thread = std::thread::Builder::new()
        .name("rentabot-writer".to_owned())
        .spawn({
            let answers = answers.clone();
            move || run(rx, backend, context, &answers)
        })?;
    let writer = Writer {
        tx,
        answers,
        answers_dropped: Arc::new(AtomicBool::new(false)),
    };
    Ok((writer, thread))
}

fn run(
    rx: Receiver<Message>,
    mut backend: Box<dyn Backend>,
    cx: WriterContext,
    queued_answers: &AtomicUsize,
) {
    // Held until the thread ends (returns or unwinds): dropping it tells the app.
    let _ended = &cx.ended;
    let mut queue: VecDeque<Change> = VecDeque::new();
    let mut records: HashMap<u64, Option<IdempotencyRecord>> = HashMap::new();
    let mut answers: Vec<audit::Entry> = Vec::new();
    let mut commits = 0u64;
    let mut open = true;
    loop {
        // Block for work when there is none; otherwise take what is there.
        if queue.is_empty() {
            if !answers.is_empty() {
                // Only answers: their own transaction, which no answer waits for.
                let next_event = cx.publisher.next_event();
                if !commit(&mut *backend, &[], &[], &answers, next_event, &cx) {
                    break;
                }
                answers.clear();
                // A failure it may have reported is over (nothing new is committed).
                cx.ledger.advance(cx.ledger.committed());
                continue;
            }
            if !open {
                break;
            }
            match rx.recv() {
                Ok(message) => {
                    open &= take(
                        message,
                        &mut queue,
                        &mut records,
                        &mut answers,
                        queued_answers,
                    )
                }
                Err(_) => break,
            }
        }
        while open && queue.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(message) => {
                    open &= take(
                        message,
                        &mut queue,
                        &mut records,
                        &mut answers,
                        queued_answers,
                    )
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if queue.is_empty() {
            continue; // a record, an answer or the word to close, and no change
        }
        let ready = queue
            .iter()
            .take(MAX_BATCH)
            .take_while(|c| !c.awaits_record || records.contains_key(&c.seq))
            .count();
        if ready == 0 {
            // The head waits for its request's answer.
            let head = queue.front().expect("not empty").seq;
            match rx.recv_timeout(RECORD_WAIT) {
                Ok(message) => {
                    open &= take(
                        message,
                        &mut queue,
                        &mut records,
                        &mut answers,
                        queued_answers,
                    )
                }
                Err(RecvTimeoutError::Timeout) => {
                    tracing::warn!(
                        seq = head,
                        "no Idempotency-Key answer arrived for a change; committing it without"
                    );
                    records.insert(head, None);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    records.insert(head, None);
                }
            }
            continue;
        }
        let batch: Vec<Change> = queue.drain(..ready).collect();
        let remembered: Vec<IdempotencyRecord> = batch
            .iter()
            .filter_map(|c| records.remove(&c.seq).flatten())
            .collect();
        let events: usize = batch.iter().map(|c| c.events.len()).sum();
        let next_event = cx.publisher.next_event() + events as u64;
        commits += 1;
        if cx.failpoint == Some(Failpoint::BeforeCommit(commits)) {
            eprintln!("rentabot: failpoint before-commit:{commits}: aborting");
            std::process::abort();
        }
        let started = std::time::Instant::now();
        if !commit(
            &mut *backend,
            &batch,
            &remembered,
            &answers,
            next_event,
            &cx,
        ) {
            break; // stopping while the store fails: nothing of this was acknowledged
        }
        answers.clear();
        if cx.failpoint == Some(Failpoint::AfterCommit(commits)) {
            eprintln!("rentabot: failpoint after-commit:{commits}: aborting");
            std::process::abort();
        }
        cx.ledger.stats().observe(batch.len(), started.elapsed());
        let last = batch.last().expect("not empty").seq;
        cx.publisher.publish(batch);
        cx.ledger.advance(last);
    }
    tracing::debug!("writer stopped");
}

/// Files `message`; `false` when it asks the thread to end.
fn take(
    message: Message,
    queue: &mut VecDeque<Change>,
    records: &mut HashMap<u64, Option<IdempotencyRecord>>,
    answers: &mut Vec<audit::Entry>,
    queued_answers: &AtomicUsize,
) -> bool {
    match message {
        Message::Change(change) => queue.push_back(change),
        Message::Answer(entry) => {
            queued_answers.fetch_sub(1, Ordering::AcqRel);
            answers.push(entry);
        }
        Message::Record(seq, record) => {
            records.insert(seq, record);
        }
        Message::Close => return false,
    }
    true
}

/// Commits one batch, retrying while it fails. `false` if it gave up: stopping, or
/// deposed (another service took over: the store will refuse every commit of this one).
fn commit(
    backend: &mut dyn Backend,
    changes: &[Change],
    records: &[IdempotencyRecord],
    answers: &[audit::Entry],
    next_event: u64,
    cx: &WriterContext,
) -> bool {
    let mut backoff = RETRY_FIRST;
    loop {
        let batch = Batch {
            changes,
            records,
            next_event,
            now: cx.clock.now(),
            answers,
        };
        match backend.commit(&batch) {
            Ok(()) => return true,
            Err(StoreError::Deposed(reason)) => {
                tracing::error!(error = %reason, "commit refused: stepping down, answering 503");
                cx.ledger.fail(&reason);
                if let Some(lease) = &cx.lease {
                    lease.depose();
                }
                return false;
            }
            Err(e) => {
                let reason = e.to_string();
                if cx.ledger.failure().is_none() {
                    tracing::error!(error = %reason, "commit failed: answering 503 until a commit succeeds");
                }
                cx.ledger.fail(&reason);
                if cx.stopping.load(Ordering::Acquire) {
                    tracing::error!("stopping with uncommitted changes; none was acknowledged");
                    return false;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_waiting_for_the_store_are_bounded() {
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            tx,
            answers: Arc::new(AtomicUsize::new(0)),
            answers_dropped: Arc::new(AtomicBool::new(false)),
        };
        let entry = audit::Entry::refused(
            crate::domain::Timestamp::from_millis(0),
            crate::runtime::Cause::anonymous(),
            "lock",
            None,
            None,
            audit::Answer {
                method: "POST".into(),
                route: "/api/v1/resources/lock".into(),
                status: 503,
                code: Some("store_unavailable"),
            },
        );
        for _ in 0..MAX_QUEUED_ANSWERS + 10 {
            writer.store_answer(entry.clone());
        }
        // The thread takes what waits (here: the test), and there is room again.
        let (mut queue, mut records, mut answers) = (VecDeque::new(), HashMap::new(), Vec::new());
        for message in rx.try_iter() {
            assert!(take(
                message,
                &mut queue,
                &mut records,
                &mut answers,
                &writer.answers
            ));
        }
        assert_eq!(
            answers.len(),
            MAX_QUEUED_ANSWERS,
            "the rest were not queued"
        );
        writer.store_answer(entry);
        assert_eq!(rx.try_iter().count(), 1);
    }

    #[test]
    fn failpoints_parse_and_refuse_the_rest() {
        assert_eq!(
            Failpoint::parse("before-commit:3").unwrap(),
            Failpoint::BeforeCommit(3)
        );
        assert_eq!(
            Failpoint::parse("after-commit:1").unwrap(),
            Failpoint::AfterCommit(1)
        );
        for bad in [
            "",
            "before-commit",
            "before-commit:0",
            "after:2",
            "after-commit:x",
        ] {
            assert!(Failpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
