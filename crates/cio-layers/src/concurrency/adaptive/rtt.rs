//! Round-trip-time statistics: one window's, and the smoothed past's.

use std::time::Duration;

/// What the responses of the current window said.
#[derive(Default)]
pub(super) struct Window {
    /// Sum of the successes' RTTs, in nanoseconds.
    rtt_nanos: u128,
    /// Sum of their squares, in seconds squared.
    rtt_squares: f64,
    samples: u64,
    pub(super) back_pressure: bool,
}

/// The RTT of one window: its mean, and the variance of that mean (its standard error
/// squared), both in seconds. The variance needs two samples.
#[derive(Clone, Copy, Debug)]
pub(super) struct WindowRtt {
    mean: f64,
    variance_of_mean: Option<f64>,
}

impl Window {
    pub(super) fn record(&mut self, rtt: Duration) {
        self.rtt_nanos += rtt.as_nanos();
        self.rtt_squares += rtt.as_secs_f64() * rtt.as_secs_f64();
        self.samples += 1;
    }

    pub(super) fn rtt(&self) -> Option<WindowRtt> {
        if self.samples == 0 {
            return None;
        }
        let n = self.samples as f64;
        // Integer mean: identical RTTs give exactly that RTT, so a steady service never looks
        // slower than its own average by a rounding error.
        let mean = (self.rtt_nanos / u128::from(self.samples)) as f64 / 1e9;
        let variance_of_mean = (self.samples > 1).then(|| {
            let sample_variance = (self.rtt_squares - n * mean * mean).max(0.0) / (n - 1.0);
            sample_variance / n
        });
        Some(WindowRtt {
            mean,
            variance_of_mean,
        })
    }
}

/// Relative slack when comparing RTTs: an EWMA fed a steady RTT approaches it without ever
/// reaching it exactly, and a plateau must still count as "not slower".
const TIE: f64 = 1e-9;

/// What past windows say the RTT is: exponentially weighted moving averages of the windows'
/// mean RTT and of the variance of those means (how noisy one window's measure is).
#[derive(Clone, Copy, Debug)]
pub(super) struct PastRtt {
    /// Smoothed mean RTT, in seconds.
    pub(super) mean: f64,
    noise: f64,
}

impl PastRtt {
    pub(super) fn first(window: WindowRtt) -> Self {
        PastRtt {
            mean: window.mean,
            noise: window.variance_of_mean.unwrap_or(0.0),
        }
    }

    pub(super) fn update(self, window: WindowRtt, alpha: f64) -> Self {
        PastRtt {
            mean: self.mean + alpha * (window.mean - self.mean),
            noise: match window.variance_of_mean {
                Some(v) => self.noise + alpha * (v - self.noise),
                None => self.noise,
            },
        }
    }

    /// A window whose mean RTT is at most the past mean: the service is not slower.
    pub(super) fn not_slower(&self, window: WindowRtt) -> bool {
        window.mean <= self.mean * (1.0 + TIE)
    }

    /// A window whose mean RTT is more than `scale` deviations (standard errors of a window's
    /// mean) above the past mean: the service is congested.
    pub(super) fn congested(&self, window: WindowRtt, scale: f64) -> bool {
        window.mean > self.mean * (1.0 + TIE) + scale * self.noise.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(rtts_ms: &[u64]) -> Window {
        let mut window = Window::default();
        for &ms in rtts_ms {
            window.record(Duration::from_millis(ms));
        }
        window
    }

    #[test]
    fn window_mean_is_exact_for_equal_rtts() {
        let rtt = window(&[50, 50, 50]).rtt().expect("three samples");
        assert_eq!(rtt.mean, 0.05);
        assert!(rtt.variance_of_mean.expect("three samples") < 1e-15);
    }

    #[test]
    fn window_variance_of_mean_is_the_squared_standard_error() {
        // Samples 40, 50, 60 ms: sample variance 100 ms², standard error² 100 / 3 ms².
        let rtt = window(&[40, 50, 60]).rtt().expect("three samples");
        assert!((rtt.mean - 0.05).abs() < 1e-12);
        let expected = 100e-6 / 3.0;
        assert!((rtt.variance_of_mean.expect("three samples") - expected).abs() < 1e-12);
        assert_eq!(
            window(&[50]).rtt().expect("one sample").variance_of_mean,
            None
        );
        assert!(Window::default().rtt().is_none());
    }

    #[test]
    fn past_rtt_is_an_ewma_of_means_and_of_their_noise() {
        let past = PastRtt::first(window(&[40, 50, 60]).rtt().expect("samples"))
            .update(window(&[70, 70]).rtt().expect("samples"), 0.4);
        assert!((past.mean - 0.058).abs() < 1e-12);
        let noise = 0.6 * 100e-6 / 3.0;
        assert!((past.noise - noise).abs() < 1e-12);
        // A window of one sample says nothing about the noise.
        let same = past.update(window(&[58]).rtt().expect("a sample"), 0.4);
        assert_eq!(same.noise, past.noise);

        let at = |ms: f64| WindowRtt {
            mean: ms / 1000.0,
            variance_of_mean: None,
        };
        let limit_ms = (0.058 + 2.5 * noise.sqrt()) * 1000.0;
        assert!(past.not_slower(at(58.0)) && !past.not_slower(at(58.01)));
        assert!(!past.congested(at(limit_ms - 0.01), 2.5));
        assert!(past.congested(at(limit_ms + 0.01), 2.5));
    }

    #[test]
    fn a_steady_rtt_counts_as_not_slower_once_the_ewma_has_closed_in() {
        let steady = window(&[72, 72]).rtt().expect("samples");
        let mut past = PastRtt::first(window(&[50, 50]).rtt().expect("samples"));
        for _ in 0..60 {
            past = past.update(steady, 0.4);
        }
        assert!(past.not_slower(steady));
        assert!(!past.congested(steady, 2.5));
    }
}
