//! Randomness, passed in like time.
//!
//! Lock tokens and reservation ids are the broker's only random values. They come from an
//! [`Entropy`] the broker is given, never from the operating system directly, so that a
//! run replays exactly from a seed ([`Seeded`]) in tests. The runtime gives production
//! brokers a source backed by the OS generator.

/// A source of 128-bit random values.
pub trait Entropy: Send + std::fmt::Debug + 'static {
    fn next_u128(&mut self) -> u128;
}

/// A deterministic source: the same seed gives the same values, in the same order.
/// SplitMix64, which is small, fast and passes BigCrush: plenty for test tokens. Never
/// for production (its values are predictable from its seed).
#[derive(Clone, Debug)]
pub struct Seeded {
    state: u64,
}

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Seeded { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Entropy for Seeded {
    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_replays_the_same_values() {
        let (mut a, mut b) = (Seeded::new(7), Seeded::new(7));
        let first: Vec<u128> = (0..4).map(|_| a.next_u128()).collect();
        let again: Vec<u128> = (0..4).map(|_| b.next_u128()).collect();
        assert_eq!(first, again);
        assert_ne!(first[0], first[1]);
        assert_ne!(first[0], Seeded::new(8).next_u128());
    }
}
