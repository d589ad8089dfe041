//! How a failed call is judged: the one piece of API knowledge the layers need, supplied from
//! outside (for Customer.io, by `cio-api`).

use std::time::Duration;

/// What a failure means to the layers that react to failures (retry, adaptive concurrency,
/// metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Failure {
    /// Trying again can help (a 5xx, a timeout, a dropped connection, a 429).
    pub retryable: bool,
    /// The server is pushing back (a 429, a 503, a timeout): slow down.
    pub back_pressure: bool,
    /// How long the server asked us to wait, if it did (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that retrying cannot fix.
    pub const PERMANENT: Failure = Failure {
        retryable: false,
        back_pressure: false,
        retry_after: None,
    };
}

/// Implemented by error types that know what they mean (for Customer.io: `cio_api::Error`).
pub trait ClassifyError {
    /// Judges this error.
    fn classify(&self) -> Failure;
}

impl ClassifyError for std::convert::Infallible {
    fn classify(&self) -> Failure {
        match *self {}
    }
}

/// Judges the errors of a service. Implemented for every error type that implements
/// [`ClassifyError`] (through [`ByError`]) and for closures `Fn(&E) -> Failure`, so a layer can
/// be used with any error type, `tower::BoxError` included.
pub trait Classifier<E>: Clone + Send + Sync + 'static {
    /// Judges one error.
    fn classify(&self, error: &E) -> Failure;
}

/// The classifier that asks the error itself ([`ClassifyError`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ByError;

impl<E: ClassifyError> Classifier<E> for ByError {
    fn classify(&self, error: &E) -> Failure {
        error.classify()
    }
}

impl<E, F> Classifier<E> for F
where
    F: Fn(&E) -> Failure + Clone + Send + Sync + 'static,
{
    fn classify(&self, error: &E) -> Failure {
        self(error)
    }
}
