//! The entropy a service's broker draws lock tokens and reservation ids from.

use crate::domain::Entropy;

/// The operating system's generator (through uuid's thread-local generator, seeded from
/// the OS): unpredictable tokens, at a few nanoseconds each.
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u128(&mut self) -> u128 {
        uuid::Uuid::new_v4().as_u128()
    }
}
