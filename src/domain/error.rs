//! Why the broker refused an operation. Knows nothing about HTTP: `api::error` maps each
//! variant to its 1.0 status code and body.

use super::resource::{Resource, ResourceId, Ttl};

/// Which operation presented a lock token; 1.0 words its refusals differently for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenUse {
    Unlock,
    Extend,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("resource {0} does not exist")]
    ResourceNotFound(ResourceId),

    #[error("no resource is named `{0}`")]
    NameNotFound(String),

    #[error("no resource has every tag of {0:?}")]
    NoTagMatch(Vec<String>),

    #[error("every resource with the tags {0:?} is locked")]
    AllMatchesLocked(Vec<String>),

    #[error("resource {0} is already locked")]
    AlreadyLocked(ResourceId),

    #[error("resource {0} is not locked")]
    NotLocked(ResourceId, TokenUse),

    /// The caller's token is missing or is not the holder's. Carries the resource so the
    /// refusal can describe it (with its token redacted).
    #[error("the lock token does not match the lock on resource {}", .resource.id)]
    InvalidToken {
        resource: Box<Resource>,
        provided: Option<String>,
        used_for: TokenUse,
    },

    #[error("a lock of {ttl}s exceeds resource {id}'s max-lock-duration of {max}s", ttl = .ttl.as_secs(), max = .max.as_secs())]
    TtlAboveMax { id: ResourceId, ttl: Ttl, max: Ttl },

    /// Extending would make the lock, counted from its acquisition, outlast the maximum.
    #[error("the lock would last {total_secs}s, over resource {id}'s max-lock-duration of {max}s", max = .max.as_secs())]
    TotalAboveMax {
        id: ResourceId,
        total_secs: u64,
        max: Ttl,
    },
}
