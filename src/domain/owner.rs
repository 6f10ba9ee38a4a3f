//! Ownership: who made a lock or a reservation, who may act on it and see its token, and
//! how much each owner holds (for the per-key caps).
//!
//! The domain knows no keys or roles: the API layer turns the request's caller into a
//! [`Principal`] (auth off: [`Principal::anyone`], the 1.0 service where every caller may
//! do everything). The broker records the principal's name as the owner of what it makes
//! ([`LockMeta::owner`](super::LockMeta::owner)), refuses an unlock, extend, claim or
//! cancel by someone else (`NotOwner`), and keeps per-owner counts ([`Owned`]) so that a
//! cap costs one hash lookup per request, never a scan of the lab.

use std::sync::Arc;

/// Who acts on the broker, as its ownership rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The owner recorded on what it makes; `None` when auth is off or the caller is
    /// anonymous: nothing it makes is owned.
    pub name: Option<Arc<str>>,
    /// May act on every lock and reservation and see every token: admins, and everyone
    /// when auth is off.
    pub overrides: bool,
    pub caps: OwnerCaps,
}

/// Per-owner ceilings; `None` is no ceiling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerCaps {
    /// Locks held at once, direct or granted to its reservations.
    pub max_locks: Option<u32>,
    /// Reservations waiting at once (pending; fulfilled ones count as locks).
    pub max_pending: Option<u32>,
}

impl Principal {
    /// Everyone, when auth is off (and the system): owns nothing, may do everything, no
    /// caps. The 1.0 behaviour.
    pub fn anyone() -> Principal {
        Principal {
            name: None,
            overrides: true,
            caps: OwnerCaps::default(),
        }
    }

    /// A named caller without override rights (a `user` or `operator`).
    pub fn named(name: impl Into<Arc<str>>) -> Principal {
        Principal {
            name: Some(name.into()),
            overrides: false,
            caps: OwnerCaps::default(),
        }
    }

    /// Whether `owner` is this principal.
    pub fn is(&self, owner: Option<&Arc<str>>) -> bool {
        matches!((owner, &self.name), (Some(a), Some(b)) if a == b)
    }

    /// Whether it may unlock, extend, claim or cancel what `owner` made (given the
    /// token). Something nobody owns (made while auth was off) stays usable by whoever
    /// holds its token.
    pub fn may_act_on(&self, owner: Option<&Arc<str>>) -> bool {
        self.overrides || owner.is_none() || self.is(owner)
    }

    /// Whether it may see the lock tokens of what `owner` made: its own, or everything
    /// for those who override. An unowned lock's token is shown only to the latter.
    pub fn may_see_token_of(&self, owner: Option<&Arc<str>>) -> bool {
        self.overrides || self.is(owner)
    }
}

/// What one owner holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    pub locks: u32,
    /// Reservations still waiting in the queue.
    pub pending: u32,
}

impl Owned {
    pub(crate) fn is_empty(self) -> bool {
        self.locks == 0 && self.pending == 0
    }
}

/// Seconds a caller over its cap is told to wait (`Retry-After`): a hint. Locks last
/// minutes to hours, so a shorter one mostly costs refused retries.
pub const CAP_RETRY_SECS: u64 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_act_on_their_own_and_admins_on_everything() {
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        let user = Principal::named(alice.clone());
        assert!(user.may_act_on(Some(&alice)));
        assert!(!user.may_act_on(Some(&bob)));
        assert!(user.may_act_on(None), "unowned: whoever has the token");
        assert!(user.may_see_token_of(Some(&alice)));
        assert!(!user.may_see_token_of(Some(&bob)));
        assert!(!user.may_see_token_of(None));
        let admin = Principal {
            overrides: true,
            ..Principal::named("root")
        };
        assert!(admin.may_act_on(Some(&bob)) && admin.may_see_token_of(Some(&bob)));
        let open = Principal::anyone();
        assert!(open.may_act_on(Some(&bob)) && open.may_see_token_of(None));
        assert!(!open.is(None), "nobody is the owner of the unowned");
    }
}
