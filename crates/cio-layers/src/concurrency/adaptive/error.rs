/// An [`super::AdaptiveConfig`] that cannot work, with the value at fault. Fix the setting;
/// nothing is retryable here.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum AdaptiveConfigError {
    /// `min` is 0: a limit of 0 would never admit a request again.
    #[error(
        "adaptive concurrency: `min` is 0; it must be at least 1, or no request could ever be sent"
    )]
    ZeroMin,
    /// The limits are not ordered `min <= initial <= max`.
    #[error("adaptive concurrency: limits must satisfy min <= initial <= max, got min {min}, initial {initial}, max {max}")]
    Bounds {
        /// The configured minimum.
        min: usize,
        /// The configured initial limit.
        initial: usize,
        /// The configured maximum.
        max: usize,
    },
    /// `max` is larger than a tokio semaphore can hold.
    #[error(
        "adaptive concurrency: `max` {max} is larger than the largest supported limit {largest}"
    )]
    MaxTooLarge {
        /// The configured maximum.
        max: usize,
        /// The largest supported limit (`tokio::sync::Semaphore::MAX_PERMITS`).
        largest: usize,
    },
    /// `decrease_ratio` is not strictly between 0 and 1.
    #[error("adaptive concurrency: `decrease_ratio` must be strictly between 0 and 1 (e.g. 0.9), got {0}")]
    DecreaseRatio(f64),
    /// `ewma_alpha` is not in `(0, 1]`.
    #[error("adaptive concurrency: `ewma_alpha` must be greater than 0 and at most 1 (e.g. 0.4), got {0}")]
    EwmaAlpha(f64),
    /// `rtt_deviation_scale` is negative or not finite.
    #[error("adaptive concurrency: `rtt_deviation_scale` must be finite and at least 0 (e.g. 2.5), got {0}")]
    DeviationScale(f64),
}
