//! When iterations are due (open model) and how many VUs should run (closed model): pure
//! functions of the executor and the time since the scenario started.
//!
//! The arrival rate is piecewise linear (`r(t) = a + b t` within a segment), so the number of
//! iterations due by `t` is its integral `N(t)`; iteration `n` (from 0) is due at the `t` where
//! `N(t) = n`. Within a segment that is the root of `b/2 t^2 + a t - m = 0` (`m` the iterations
//! left to reach `n` from the segment's start), taken in the form `t = 2m / (a + sqrt(a^2 + 2bm))`,
//! which stays exact when `b` is zero or negative. A constant 2,000/s for 5 s is iterations at
//! 0, 0.5 ms, 1 ms, ... 4999.5 ms: exactly 10,000.

use std::time::Duration;

use crate::scenario::Executor;

/// The instants (offsets from the scenario's start) at which iterations are due.
#[derive(Clone, Debug)]
pub struct ArrivalSchedule {
    segments: Vec<(f64, f64, f64)>,
    segment: usize,
    /// Iterations due before the current segment started.
    base: f64,
    /// Offset (seconds) at which the current segment starts.
    offset: f64,
    next: u64,
}

impl ArrivalSchedule {
    /// The schedule of an arrival-rate executor; empty for the closed model.
    pub fn new(executor: &Executor) -> Self {
        ArrivalSchedule {
            segments: executor
                .rate_segments()
                .into_iter()
                .map(|(a, b, d)| (a, b, d.as_secs_f64()))
                .collect(),
            segment: 0,
            base: 0.0,
            offset: 0.0,
            next: 0,
        }
    }
}

impl Iterator for ArrivalSchedule {
    /// `(iteration number, offset from the scenario's start)`.
    type Item = (u64, Duration);

    fn next(&mut self) -> Option<(u64, Duration)> {
        let n = self.next as f64;
        loop {
            let &(from, to, d) = self.segments.get(self.segment)?;
            let count = (from + to) / 2.0 * d;
            let m = n - self.base;
            if m < count - 1e-9 {
                let a = from;
                let b = if d > 0.0 { (to - from) / d } else { 0.0 };
                let t = if m <= 0.0 {
                    0.0
                } else {
                    let disc = (a * a + 2.0 * b * m).max(0.0);
                    2.0 * m / (a + disc.sqrt())
                };
                let at = (self.offset + t.clamp(0.0, d)).max(0.0);
                let item = (self.next, Duration::from_secs_f64(at));
                self.next += 1;
                return Some(item);
            }
            self.base += count;
            self.offset += d;
            self.segment += 1;
        }
    }
}

/// How many VUs a closed-model executor wants `t` after its start (linear between stages,
/// rounded down, as k6 does); `None` once it has ended.
pub fn target_vus(executor: &Executor, t: Duration) -> Option<u32> {
    match executor {
        Executor::ConstantVus { vus, duration } => (t < *duration).then_some(*vus),
        Executor::SharedIterations {
            vus, max_duration, ..
        }
        | Executor::PerVuIterations {
            vus, max_duration, ..
        } => (t < *max_duration).then_some(*vus),
        Executor::RampingVus {
            start_vus, stages, ..
        } => {
            let mut from = f64::from(*start_vus);
            let mut start = Duration::ZERO;
            for s in stages {
                let to = f64::from(s.target);
                if t < start + s.duration {
                    let frac = (t - start).as_secs_f64() / s.duration.as_secs_f64();
                    return Some((from + (to - from) * frac).floor() as u32);
                }
                from = to;
                start += s.duration;
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Stage;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn constant_rate_is_evenly_spaced_and_exact_in_count() {
        let e = Executor::ConstantArrivalRate {
            rate: 2000,
            time_unit: secs(1.0),
            duration: secs(5.0),
            pre_allocated_vus: 1,
            max_vus: 1,
        };
        let all: Vec<_> = ArrivalSchedule::new(&e).collect();
        assert_eq!(all.len(), 10_000);
        assert_eq!(e.planned_iterations(), Some(10_000));
        assert_eq!(all[0], (0, Duration::ZERO));
        assert!((all[1].1.as_secs_f64() - 0.0005).abs() < 1e-9);
        assert!((all[9_999].1.as_secs_f64() - 4.9995).abs() < 1e-6);
    }

    #[test]
    fn time_unit_scales_the_rate() {
        let e = Executor::ConstantArrivalRate {
            rate: 30,
            time_unit: secs(60.0),
            duration: secs(10.0),
            pre_allocated_vus: 1,
            max_vus: 1,
        };
        let all: Vec<_> = ArrivalSchedule::new(&e).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(all[1].1, secs(2.0));
    }

    #[test]
    fn ramps_follow_their_stages() {
        // 0 -> 100/s over 2 s (100 iterations), 100/s for 1 s (100), 100 -> 0 over 1 s (50).
        let e = Executor::RampingArrivalRate {
            start_rate: 0,
            time_unit: secs(1.0),
            stages: vec![
                Stage::new(100, secs(2.0)),
                Stage::new(100, secs(1.0)),
                Stage::new(0, secs(1.0)),
            ],
            pre_allocated_vus: 1,
            max_vus: 1,
        };
        let all: Vec<_> = ArrivalSchedule::new(&e).collect();
        assert_eq!(all.len(), 250);
        let in_window = |a: f64, b: f64| {
            all.iter()
                .filter(|(_, t)| t.as_secs_f64() >= a && t.as_secs_f64() < b)
                .count()
        };
        assert_eq!(in_window(0.0, 1.0), 25); // integral of 50 t over [0, 1]
        assert_eq!(in_window(1.0, 2.0), 75);
        assert_eq!(in_window(2.0, 3.0), 100);
        assert_eq!(in_window(3.0, 4.0), 50);
        // Monotonic.
        assert!(all.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(e.rate_at(secs(1.0)), Some(50.0));
        assert_eq!(e.peak_rate(), Some(100.0));
    }

    #[test]
    fn vus_ramp_linearly_and_end() {
        let e = Executor::RampingVus {
            start_vus: 0,
            stages: vec![Stage::new(10, secs(1.0)), Stage::new(10, secs(1.0))],
            graceful_ramp_down: secs(30.0),
        };
        assert_eq!(target_vus(&e, secs(0.0)), Some(0));
        assert_eq!(target_vus(&e, secs(0.55)), Some(5));
        assert_eq!(target_vus(&e, secs(1.5)), Some(10));
        assert_eq!(target_vus(&e, secs(2.0)), None);
    }
}
