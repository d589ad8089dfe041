//! The future a caller awaits: its own item's outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use super::handle::Shared;
use super::BatchError;

/// What the worker sends back to one caller.
pub(crate) type ItemResult<R, IE, E> = Result<R, BatchError<IE, E>>;

pin_project! {
    /// Resolves with the outcome of the item given to [`Batch::call`](tower::Service::call):
    /// `R` when the inner service accepted it, a [`BatchError`] otherwise.
    ///
    /// Dropping it before the item's batch is handed to the inner service takes the item out:
    /// nobody would see its outcome, so it is not sent.
    #[derive(Debug)]
    pub struct ResponseFuture<R, IE, E> {
        #[pin]
        state: State<R, IE, E>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<R, IE, E> {
        Waiting {
            #[pin]
            answer: oneshot::Receiver<ItemResult<R, IE, E>>,
            shared: Arc<Shared>,
        },
        Refused {
            error: Option<BatchError<IE, E>>,
        },
    }
}

impl<R, IE, E> ResponseFuture<R, IE, E> {
    pub(crate) fn waiting(
        answer: oneshot::Receiver<ItemResult<R, IE, E>>,
        shared: Arc<Shared>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting { answer, shared },
        }
    }

    pub(crate) fn refused(error: BatchError<IE, E>) -> Self {
        ResponseFuture {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<R, IE, E> Future for ResponseFuture<R, IE, E> {
    type Output = ItemResult<R, IE, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Waiting { answer, shared } => match ready!(answer.poll(cx)) {
                Ok(outcome) => Poll::Ready(outcome),
                // The worker dropped the item unanswered: it is gone (failed or its runtime
                // stopped), and recorded why before dropping anything.
                Err(_) => Poll::Ready(Err(shared.closed_error())),
            },
            // Polled again after completion: keep answering an error rather than panic.
            StateProj::Refused { error } => {
                Poll::Ready(Err(error.take().unwrap_or(BatchError::Closed)))
            }
        }
    }
}
