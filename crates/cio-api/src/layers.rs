//! The Customer.io knowledge the generic layers of `cio-layers` need: which errors are retryable
//! and push back, what `Retry-After` said, what a deadline or a rate-limit backend failure
//! becomes.

use std::convert::Infallible;

use cio_layers::deadline::Elapsed;
use cio_layers::{ClassifyError, Failure};
use http::StatusCode;

use crate::Error;

impl ClassifyError for Error {
    /// Retryable as [`Error::is_retryable`] says; back-pressure for 429, 503 and timeouts (the
    /// signals that the workspace or the network is saturated); `Retry-After` as sent.
    fn classify(&self) -> Failure {
        let back_pressure = match self {
            Error::Api { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Timeout(_) => true,
            _ => false,
        };
        Failure {
            retryable: self.is_retryable(),
            back_pressure,
            retry_after: self.retry_after(),
        }
    }
}

impl From<Elapsed> for Error {
    /// A deadline that passed (while waiting for a rate or concurrency limit, or for the answer)
    /// is a timeout, and retryable.
    fn from(e: Elapsed) -> Self {
        Error::Timeout(e.after)
    }
}

impl From<Infallible> for Error {
    fn from(e: Infallible) -> Self {
        match e {}
    }
}

impl cio_layers::batch::Weigh for crate::Operation {
    /// The entry's encoded size plus its comma in the batch array: batches built on this weight
    /// stay within [`crate::Limits::batch_weight`].
    fn weight(&self) -> usize {
        crate::size::serialized_len(self) + 1
    }
}

impl cio_layers::batch::BatchOutcomes for crate::BatchResponse {
    type Item = ();
    type ItemError = crate::EntryError;

    /// The per-entry outcomes, in the order the entries were given (a 207's `batch_index`
    /// already mapped back).
    fn into_outcomes(self, _batch_len: usize) -> Vec<Result<(), crate::EntryError>> {
        self.outcomes
    }
}

impl ClassifyError for crate::EntryError {
    /// An entry refused (locally or by Customer.io) is permanent: the entry itself is at fault.
    fn classify(&self) -> Failure {
        Failure::PERMANENT
    }
}
