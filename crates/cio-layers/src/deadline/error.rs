use std::time::Duration;

/// The deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("deadline of {after:?} elapsed {}", if *.waiting_for_readiness { "while waiting for readiness (rate or concurrency limit)" } else { "before the response arrived" })]
pub struct Elapsed {
    /// The deadline.
    pub after: Duration,
    /// Whether it passed before the inner service was ready (rather than during the call).
    pub waiting_for_readiness: bool,
}
