//! The client `Service`s. Each is cheap to clone (an `Arc` and a pooled transport) and composes
//! under `tower::ServiceBuilder`; `poll_ready` is always ready (the connection pool grows on
//! demand), so back-pressure belongs to the layers in front.

mod app;
mod batch;
mod pipelines;
mod track;

use std::future::Future;
use std::pin::Pin;

pub use app::{AppClient, AppResponse};
pub use batch::{BatchClient, BatchResponse, EntryError};
pub use pipelines::{PipelinesClient, PipelinesResponse};
pub use track::{TrackClient, TrackResponse};

/// The response future of every client.
pub type ResponseFuture<T> =
    Pin<Box<dyn Future<Output = Result<T, crate::Error>> + Send + 'static>>;
