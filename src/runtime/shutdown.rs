//! [`Shutdown`]: the service is stopping, and the responses that would otherwise run on
//! end now.
//!
//! A long-poll may wait five minutes, a WebSocket or an event stream for hours; actix's
//! graceful stop waits for them (up to its timeout) without telling them. So on SIGTERM
//! `app` first calls [`Shutdown::begin`]: long-polls answer with the state they have,
//! sockets send a close frame, event streams end; then actix stops accepting and closes
//! the connections as their responses finish. Each of those responses holds a [`Watch`]
//! while it waits, which is how the stop (and a test) can tell how many are open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

/// Cheap to clone: every clone shares one state. Built once in `app::build` and
/// registered as app data.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    begun: CancellationToken,
    /// Responses that wait for something: long-polls, event streams, sockets.
    watchers: AtomicUsize,
    /// The same, by [`Waiting`] kind (those that said which they are).
    by_kind: [AtomicUsize; 3],
}

/// What kind of response waits, for `/metrics` (`rentabot_connected_clients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// `GET /api/v1/events` (SSE).
    EventStream = 0,
    /// `/ws/reservations/{rid}`.
    WebSocket = 1,
    /// A reservation's long-poll.
    LongPoll = 2,
}

impl Waiting {
    pub const ALL: [Waiting; 3] = [Waiting::EventStream, Waiting::WebSocket, Waiting::LongPoll];

    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::EventStream => "sse",
            Waiting::WebSocket => "websocket",
            Waiting::LongPoll => "long_poll",
        }
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Tells every waiting response, and every later one, to finish now. Idempotent.
    pub fn begin(&self) {
        self.shared.begun.cancel();
    }

    pub fn is_begun(&self) -> bool {
        self.shared.begun.is_cancelled()
    }

    /// Resolves once [`begin`](Self::begin) has been called (at once if it has been).
    /// Cancel-safe: use it in `select!`.
    pub async fn begun(&self) {
        self.shared.begun.cancelled().await;
    }

    /// Counts the caller as a waiting response until the guard drops. Take it after
    /// subscribing to what it waits for, so that once it is counted, nothing it waits
    /// for can be missed.
    pub fn watch(&self) -> Watch {
        self.shared.watchers.fetch_add(1, Ordering::SeqCst);
        Watch {
            shared: self.shared.clone(),
            kind: None,
        }
    }

    /// [`watch`](Self::watch), also counted as a `kind` in [`Shutdown::waiting`].
    pub fn watch_as(&self, kind: Waiting) -> Watch {
        self.shared.by_kind[kind as usize].fetch_add(1, Ordering::SeqCst);
        self.shared.watchers.fetch_add(1, Ordering::SeqCst);
        Watch {
            shared: self.shared.clone(),
            kind: Some(kind),
        }
    }

    /// How many responses of `kind` are waiting now.
    pub fn waiting(&self, kind: Waiting) -> usize {
        self.shared.by_kind[kind as usize].load(Ordering::SeqCst)
    }

    /// How many responses are waiting now (long-polls, event streams, sockets).
    pub fn watchers(&self) -> usize {
        self.shared.watchers.load(Ordering::SeqCst)
    }
}

/// One waiting response, counted in [`Shutdown::watchers`] while it lives.
#[derive(Debug)]
pub struct Watch {
    shared: Arc<Shared>,
    kind: Option<Waiting>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(kind) = self.kind {
            self.shared.by_kind[kind as usize].fetch_sub(1, Ordering::SeqCst);
        }
        self.shared.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn begun_resolves_for_waiters_before_and_after_the_call() {
        let shutdown = Shutdown::new();
        let early = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.begun().await }
        });
        assert!(!shutdown.is_begun());

        shutdown.begin();

        early.await.unwrap();
        shutdown.begun().await;
        assert!(shutdown.is_begun());
    }

    #[test]
    fn watchers_count_the_live_guards() {
        let shutdown = Shutdown::new();
        let a = shutdown.watch();
        let b = shutdown.clone().watch();
        assert_eq!(shutdown.watchers(), 2);
        drop(a);
        assert_eq!(shutdown.watchers(), 1);
        drop(b);
        assert_eq!(shutdown.watchers(), 0);
    }
}
