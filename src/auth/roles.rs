//! Who is calling: a [`Role`] that orders what may be done, and the [`Caller`] every
//! request is resolved to, once, before any handler runs.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use super::limits::Buckets;

/// What a caller may do. Each role may do everything the roles below it may:
/// `readonly < user < operator < admin`, so a rule names the least role it needs.
///
/// | role | may |
/// |---|---|
/// | `readonly` | read resources, reservations, events |
/// | `user` | also lock, unlock, extend; reserve, claim, cancel (its own) |
/// | `operator` | also maintenance: unavailable, available, force-unlock |
/// | `admin` | also create, change, delete resources; reload; read the audit log |
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Readonly,
    User,
    Operator,
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Readonly, Role::User, Role::Operator, Role::Admin];

    /// The name used in the config file, in JWT claims and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Readonly => "readonly",
            Role::User => "user",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named exactly `name` (lower case, as the config file spells it).
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether this role may do what `required` may.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of `"boss".parse::<Role>()`; its message lists the roles.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role: use admin, operator, user or readonly")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::parse(s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// How a caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// An API key from the auth config (`X-API-Key` or `Authorization: Bearer`).
    Key,
    /// A JWT verified with the config's `jwt` section; the name is its `sub`.
    Jwt,
    /// Auth is on and the request carries no credential: only routes open to everyone
    /// (`/health`, `/readiness`, `/docs`, and `/metrics` unless it needs a key) serve it.
    Anonymous,
    /// Auth is off (no `--auth-config`): the open 1.0 service, where every caller is
    /// anonymous with every right. Nothing is owned, nothing is limited.
    Open,
}

impl Via {
    pub const fn as_str(self) -> &'static str {
        match self {
            Via::Key => "key",
            Via::Jwt => "jwt",
            Via::Anonymous => "anonymous",
            Via::Open => "open",
        }
    }
}

/// Per-caller ceilings from the config (`max_locks`, `max_pending_reservations`), for the
/// broker call to enforce. `None` is no ceiling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Caps {
    pub max_locks: Option<u32>,
    pub max_pending_reservations: Option<u32>,
}

/// The name every caller without a credential goes by (and every caller when auth is
/// off). The config refuses it as a key name, so it always means "no credential".
pub const ANONYMOUS: &str = "anonymous";

/// [`ANONYMOUS`], shared, so that making an anonymous caller allocates nothing.
static ANONYMOUS_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(ANONYMOUS));

/// Who is calling, as [`Auth::authenticate`](super::Auth::authenticate) resolved it:
/// what handlers pass to the broker beside `now`, what ownership and the audit log name.
///
/// Cheap to clone (two reference counts): keys' callers share their name and buckets
/// with the config they came from.
#[derive(Clone)]
pub struct Caller {
    /// The key's `name`, the JWT's `sub`, or [`ANONYMOUS`]. With auth on, names are
    /// unique among keys, and a JWT whose `sub` is a key's name is refused, so a name
    /// identifies one owner.
    pub name: Arc<str>,
    pub role: Role,
    pub via: Via,
    pub caps: Caps,
    /// Where this caller's requests are counted; see [`Auth::check_rate`](super::Auth::check_rate).
    pub(crate) bucket: Bucket,
}

/// The rate-limit state a caller is charged to.
#[derive(Clone)]
pub(crate) enum Bucket {
    /// Not limited: auth off, or a caller made by hand.
    None,
    /// A key's own buckets, kept across reloads while the key and its rate stay.
    Key(Arc<Buckets>),
    /// Looked up by name in the bounded table of JWT subjects.
    Subject,
    /// Looked up by client address in the bounded table of anonymous clients.
    Client,
}

impl Caller {
    /// The caller of a service without auth config: anonymous, with every right, as 1.0.
    pub fn open() -> Caller {
        Caller {
            name: ANONYMOUS_NAME.clone(),
            role: Role::Admin,
            via: Via::Open,
            caps: Caps::default(),
            bucket: Bucket::None,
        }
    }

    /// A caller without credential while auth is on. Its role is the least one, but
    /// [`Auth::authorize`](super::Auth::authorize) refuses it on every route that names
    /// a role: it may call only the routes open to everyone.
    pub fn anonymous() -> Caller {
        Caller {
            name: ANONYMOUS_NAME.clone(),
            role: Role::Readonly,
            via: Via::Anonymous,
            caps: Caps::default(),
            bucket: Bucket::Client,
        }
    }

    /// A caller made by hand (tests, system actions), charged to no rate limit.
    pub fn new(name: impl Into<Arc<str>>, role: Role, via: Via) -> Caller {
        Caller {
            name: name.into(),
            role,
            via,
            caps: Caps::default(),
            bucket: Bucket::None,
        }
    }

    /// Whether this caller proved who it is (a key or a JWT). Ownership of locks and
    /// reservations only means something for such callers.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.via, Via::Key | Via::Jwt)
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("via", &self.via)
            .field("caps", &self.caps)
            .finish()
    }
}

impl PartialEq for Caller {
    /// Equal when they are the same principal with the same rights; where they are
    /// rate-limited does not count.
    fn eq(&self, other: &Caller) -> bool {
        self.name == other.name
            && self.role == other.role
            && self.via == other.via
            && self.caps == other.caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_from_readonly_to_admin() {
        assert!(Role::Readonly < Role::User);
        assert!(Role::User < Role::Operator);
        assert!(Role::Operator < Role::Admin);
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::User.allows(Role::User));
        assert!(!Role::User.allows(Role::Operator));
        assert!(!Role::Readonly.allows(Role::User));
    }

    #[test]
    fn role_names_round_trip_and_unknown_names_list_the_roles() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
        }
        let err = "Admin".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`Admin` is not a role: use admin, operator, user or readonly"
        );
        assert!(Role::parse("maintainer").is_none());
    }

    #[test]
    fn open_caller_is_anonymous_with_every_right_and_anonymous_is_least() {
        let open = Caller::open();
        assert_eq!(&*open.name, ANONYMOUS);
        assert_eq!((open.role, open.via), (Role::Admin, Via::Open));
        assert!(!open.is_authenticated());
        let anon = Caller::anonymous();
        assert_eq!((anon.role, anon.via), (Role::Readonly, Via::Anonymous));
        assert!(!anon.is_authenticated());
        assert!(Caller::new("ci", Role::User, Via::Key).is_authenticated());
    }
}
