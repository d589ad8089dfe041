use tokio::sync::Semaphore;

use super::AdaptiveConfigError;

/// The settings of an adaptive concurrency limit.
///
/// The defaults are Vector's for Adaptive Request Concurrency, chosen there after simulations
/// against services with various responses to load: start at one request in flight, never go
/// below one nor above 200, cut the limit to 90 % on congestion, weigh a new window at 40 %
/// in the averages, and tolerate RTTs up to 2.5 deviations above the mean (see
/// [`crate::concurrency`] for the algorithm).
///
/// Checked once, when a layer, service or [`super::AdaptiveController`] is built.
///
/// ```
/// use cio_layers::concurrency::AdaptiveConfig;
///
/// let config = AdaptiveConfig { initial: 4, max: 50, ..AdaptiveConfig::default() };
/// assert!(config.validate().is_ok());
/// assert!(AdaptiveConfig { min: 0, ..config }.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveConfig {
    /// The limit to start from. Set it near the limit the service usually settles at (the
    /// exported gauge tells) to skip the ramp-up after a restart. Default 1.
    pub initial: usize,
    /// The limit never goes below this. At least 1. Default 1.
    pub min: usize,
    /// The limit never goes above this: a safeguard against a service that never pushes back.
    /// Default 200.
    pub max: usize,
    /// On a decrease the limit becomes `floor(limit * decrease_ratio)` (never below `min`).
    /// Strictly between 0 and 1; smaller backs off faster. Default 0.9.
    pub decrease_ratio: f64,
    /// Weight of the newest window in the smoothed RTT and its deviation (EWMAs). In `(0, 1]`;
    /// smaller reacts more slowly and suits services with noisy latency. Default 0.4.
    pub ewma_alpha: f64,
    /// How many deviations (standard errors of a window's mean RTT) above the smoothed RTT a
    /// window's mean may be before it counts as congestion. Finite and at least 0; larger
    /// ignores larger swings but lets the limit settle higher. Default 2.5.
    pub rtt_deviation_scale: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            initial: 1,
            min: 1,
            max: 200,
            decrease_ratio: 0.9,
            ewma_alpha: 0.4,
            rtt_deviation_scale: 2.5,
        }
    }
}

impl AdaptiveConfig {
    /// Checks the settings: `1 <= min <= initial <= max`, `max` within what a tokio semaphore
    /// holds, `0 < decrease_ratio < 1`, `0 < ewma_alpha <= 1`, `rtt_deviation_scale` finite and
    /// not negative.
    pub fn validate(&self) -> Result<(), AdaptiveConfigError> {
        if self.min == 0 {
            return Err(AdaptiveConfigError::ZeroMin);
        }
        if !(self.min <= self.initial && self.initial <= self.max) {
            return Err(AdaptiveConfigError::Bounds {
                min: self.min,
                initial: self.initial,
                max: self.max,
            });
        }
        if self.max > Semaphore::MAX_PERMITS {
            return Err(AdaptiveConfigError::MaxTooLarge {
                max: self.max,
                largest: Semaphore::MAX_PERMITS,
            });
        }
        if !(self.decrease_ratio > 0.0 && self.decrease_ratio < 1.0) {
            return Err(AdaptiveConfigError::DecreaseRatio(self.decrease_ratio));
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Err(AdaptiveConfigError::EwmaAlpha(self.ewma_alpha));
        }
        if !(self.rtt_deviation_scale.is_finite() && self.rtt_deviation_scale >= 0.0) {
            return Err(AdaptiveConfigError::DeviationScale(
                self.rtt_deviation_scale,
            ));
        }
        Ok(())
    }
}
