//! The facade over the toolkit's crates, so examples and end-to-end benches can live at the top
//! of the repository. Depend on the crates themselves in your own project:
//!
//! - [`api`] (`cio-api`): Customer.io's write APIs as tower `Service`s, with limit validation;
//! - [`layers`] (`cio-layers`): rate limit, concurrency, batch, retry, metrics, deadline;
//! - [`mock`] (`cio-mock`): a mock Customer.io for tests, benches and demos.

pub use cio_api as api;
pub use cio_layers as layers;
pub use cio_mock as mock;
