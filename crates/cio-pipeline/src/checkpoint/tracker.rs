//! [`AckTracker`]: the first unacknowledged position of an ordered input, moved only over a
//! contiguous acknowledged prefix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A point in an ordered input: a byte offset and how many records lie before it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Mark {
    /// Byte offset (for a Kafka partition: the offset).
    pub offset: u64,
    /// Records (lines) before `offset`.
    pub line: u64,
}

/// Tracks acknowledgements that arrive in any order and keeps the first position not yet
/// acknowledged: the only position that is safe to persist, since everything before it is
/// settled.
///
/// Each record spans `[start, end)`. An ack of the record that starts at the committed mark
/// moves the mark to its end, and then over every record acked earlier that follows
/// contiguously; an ack further ahead waits in a map until the gap before it closes. The map
/// holds only acks ahead of a gap, so its size is bounded by the records in flight.
///
/// This is the file source's checkpoint rule and a Kafka partition's commit rule alike.
///
/// ```
/// use cio_pipeline::checkpoint::{AckTracker, Mark};
///
/// let mut t = AckTracker::new(Mark::default());
/// let line = |n: u64| Mark { offset: n * 10, line: n };
/// assert!(!t.ack(10, line(2)));      // line 2 first: the gap at line 1 holds the mark
/// assert_eq!(t.committed(), line(0));
/// assert!(t.ack(0, line(1)));        // line 1 closes the gap: the mark jumps past line 2
/// assert_eq!(t.committed(), line(2));
/// ```
#[derive(Clone, Debug, Default)]
pub struct AckTracker {
    committed: Mark,
    ahead: BTreeMap<u64, Mark>,
}

impl AckTracker {
    /// A tracker whose first unacknowledged record starts at `start`.
    pub fn new(start: Mark) -> Self {
        AckTracker {
            committed: start,
            ahead: BTreeMap::new(),
        }
    }

    /// Records the ack of the record `[start, end)`. Returns whether the committed mark moved.
    /// An ack of a record already behind the mark (a duplicate) changes nothing.
    pub fn ack(&mut self, start: u64, end: Mark) -> bool {
        if start == self.committed.offset {
            self.committed = end;
            while let Some(next) = self.ahead.remove(&self.committed.offset) {
                self.committed = next;
            }
            true
        } else {
            if start > self.committed.offset {
                self.ahead.insert(start, end);
            }
            false
        }
    }

    /// The first unacknowledged position.
    pub fn committed(&self) -> Mark {
        self.committed
    }

    /// Acks waiting ahead of a gap.
    pub fn waiting(&self) -> usize {
        self.ahead.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    /// Against a brute-force model: after every ack (in a random order, some lines never acked),
    /// the mark is the start of the first unacked line.
    #[test]
    fn out_of_order_acks_only_advance_over_a_contiguous_prefix() {
        for seed in 0..50u64 {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            // Lines of varied lengths.
            let lens: Vec<u64> = (0..200).map(|i| 1 + (i * 7 + seed) % 13).collect();
            let mut starts = vec![0u64];
            for l in &lens {
                starts.push(starts.last().copied().unwrap_or(0) + l);
            }
            let mut order: Vec<usize> = (0..lens.len()).collect();
            order.shuffle(&mut rng);
            // Leave one line unacked in half of the runs.
            let hole = (seed % 2 == 0).then(|| order[order.len() / 2]);
            let mut acked = vec![false; lens.len()];
            let mut t = AckTracker::new(Mark::default());
            for &i in &order {
                if Some(i) == hole {
                    continue;
                }
                t.ack(
                    starts[i],
                    Mark {
                        offset: starts[i + 1],
                        line: i as u64 + 1,
                    },
                );
                acked[i] = true;
                let first_unacked = acked.iter().position(|a| !a).unwrap_or(lens.len());
                assert_eq!(
                    t.committed(),
                    Mark {
                        offset: starts[first_unacked],
                        line: first_unacked as u64
                    },
                    "seed {seed}"
                );
            }
            if hole.is_none() {
                assert_eq!(t.waiting(), 0);
            }
        }
    }

    #[test]
    fn duplicate_acks_change_nothing() {
        let mut t = AckTracker::new(Mark { offset: 5, line: 1 });
        assert!(t.ack(5, Mark { offset: 9, line: 2 }));
        assert!(!t.ack(5, Mark { offset: 9, line: 2 }));
        assert!(!t.ack(0, Mark { offset: 5, line: 1 }));
        assert_eq!(t.committed(), Mark { offset: 9, line: 2 });
        assert_eq!(t.waiting(), 0);
    }
}
