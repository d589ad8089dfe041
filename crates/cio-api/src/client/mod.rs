//! The client `Service`s. Each is cheap to clone (an `Arc` around the shared core: the HTTP
//! service with its layers, the auth header, the limits) and composes under
//! `tower::ServiceBuilder`; `poll_ready` is always ready (the connection pool grows on demand),
//! so back-pressure belongs to the layers in front. [`ClientBuilder`] builds any of them, over
//! the default [`crate::Transport`] or any tower HTTP service.

mod app;
mod batch;
mod pipelines;
mod shared;
mod track;

use std::future::Future;
use std::pin::Pin;

pub use app::{AppClient, AppResponse, APP_API_PER_SECOND};
pub use batch::{BatchClient, BatchResponse, EntryError};
pub use pipelines::{PipelinesClient, PipelinesResponse, STRICT_MODE};
pub use shared::{BoxError, ClientBuilder};
pub use track::{TrackClient, TrackResponse};

/// The response future of every client.
pub type ResponseFuture<T> =
    Pin<Box<dyn Future<Output = Result<T, crate::Error>> + Send + 'static>>;
