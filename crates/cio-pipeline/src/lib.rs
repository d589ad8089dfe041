//! A queue-agnostic processor with at-least-once delivery: a [`Source`] of acknowledged
//! messages feeds any `tower::Service`; every input ends delivered, in the dead-letter sink with a
//! reason, or unacknowledged for redelivery, and the [`Report`] counts prove which.
//!
//! | module | what it holds |
//! |---|---|
//! | [`source`] | the [`Source`] / [`Acknowledge`](source::Acknowledge) traits, [`Message`](source::Message), [`Position`](source::Position); adapters: [`MemorySource`](source::MemorySource), [`channel`](source::channel), [`FileSource`](source::FileSource), `KafkaSource` (feature `kafka`), `RedisStreamSource` (feature `redis`); [`LagProbe`](source::LagProbe) |
//! | [`checkpoint`] | the file checkpoint (atomic writes) and [`AckTracker`](checkpoint::AckTracker), the contiguous-prefix rule for out-of-order acks |
//! | [`processor`] | [`Processor`]: bounded in-flight, decode, deliver, dead-letter, ack, graceful shutdown; [`Report`] |
//! | [`decode`] | [`Decode`]: bytes to the item the service takes |
//! | [`dead_letter`] | [`DeadLetterSink`](dead_letter::DeadLetterSink), the JSON-lines file sink, [`Replay`](dead_letter::Replay) of a dead-letter file |
//! | [`cio`] | Customer.io glue: lines to `cio_api::Operation`, deterministic event ids, and which duplicates remain |
//!
//! The binary `cio-pipeline-file` runs a file pipeline with a checkpoint against a Customer.io
//! endpoint (the mock in tests) and stops gracefully on SIGTERM.
//!
//! ```
//! use cio_api::Operation;
//! use cio_pipeline::{cio::OperationDecoder, dead_letter, source::MemorySource, Processor};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let lines = [
//!     r#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"signup"}"#,
//!     r#"{"type":"person","identifiers":{"id":"2"},"action":"identify","attributes":{"plan":"pro"}}"#,
//!     r#"{"type":"person","action":"delete"}"#, // no identifier: dead-lettered
//! ];
//! // Any tower Service of `Operation` works here: `cio_api::TrackClient`, or the batching stack.
//! let service = tower::service_fn(|op: Operation| async move {
//!     Ok::<_, std::convert::Infallible>(op.stat_name())
//! });
//! let letters = dead_letter::InMemory::new();
//! let report = Processor::new(MemorySource::new(lines), OperationDecoder::new(), service, letters.clone())
//!     .run(CancellationToken::new())
//!     .await;
//! assert_eq!((report.delivered, report.dead_lettered, report.unacknowledged), (2, 1, 0));
//! assert!(letters.letters()[0].reason.contains("identifiers"));
//! println!("{}", report.to_json());
//! # }
//! ```

#![warn(missing_docs)]

pub mod checkpoint;
pub mod cio;
pub mod dead_letter;
pub mod decode;
pub mod processor;
pub mod source;

pub use decode::{Decode, DecodeError};
pub use processor::{Processor, Progress, Report, StopReason};
pub use source::Source;
