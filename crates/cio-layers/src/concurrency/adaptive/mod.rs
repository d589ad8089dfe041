//! The adaptive limit: controller (AIMD state), layer, service and response future.

mod config;
mod controller;
mod error;
mod future;
mod layer;
mod rtt;
mod service;

pub use config::AdaptiveConfig;
pub use controller::AdaptiveController;
pub use error::AdaptiveConfigError;
pub use future::ResponseFuture;
pub use layer::AdaptiveConcurrencyLayer;
pub use service::AdaptiveConcurrency;
