//! Customer.io's write APIs as `tower::Service`s, with every documented limit checked before
//! anything is sent.
//!
//! | module | what it holds |
//! |---|---|
//! | [`Operation`] | every Track write in one type; its canonical form is the v2 entry JSON |
//! | [`validate`] | [`Limits`] and [`ValidationError`]: sizes measured on the bytes sent |
//! | [`encode`], [`raw`] | v2 entries checked and encoded once; a line's own bytes reused when they are already what is sent |
//! | [`TrackClient`] | Track v1, one request per operation (`PUT /customers/{id}`, ...) |
//! | [`BatchClient`] | Track v2 `/batch`, answered per entry (a 207 maps back to the exact entries) |
//! | [`AppClient`] | App API: transactional messages, broadcast triggers, reads of people ([`customers`]) |
//! | [`PipelinesClient`] | Pipelines (CDP): identify, track, page, screen, group, alias, batch |
//! | [`Region`], credentials | where requests go and how they authenticate (secrets never in `Debug`) |
//! | [`Error`] | one error type with [`Error::is_retryable`] and [`Error::retry_after`] |
//!
//! All clients send through a pooled [`Transport`] by default: hyper 1's HTTP/1.1 connections
//! over TCP or rustls, one code path for `http://` and `https://`, a connect timeout (5 s) apart
//! from the whole-request timeout (10 s), and one rule for sending a request again (only if it
//! cannot have reached the server, or is idempotent). [`ClientBuilder`] puts any other tower
//! HTTP service in its place; redirects (only within `*.customer.io`), sensitive credentials and
//! tracing are tower-http layers above it either way.
//!
//! ```
//! use cio_api::{Limits, Operation, ValidationError};
//!
//! // One line of the pipeline's input format.
//! let line = br#"{"type":"person","identifiers":{"id":"42"},"action":"identify","attributes":{"plan":"pro"}}"#;
//! let op = Operation::from_json(line).unwrap();
//! assert_eq!(op.to_v1().unwrap().path, "/customers/42");
//!
//! // Limits are checked before sending, with the field, the limit and the size.
//! let long = format!(r#"{{"type":"person","identifiers":{{"id":"{}"}},"action":"delete"}}"#, "x".repeat(151));
//! let err = Operation::from_json(long.as_bytes()).unwrap().validate(&Limits::default()).unwrap_err();
//! assert_eq!(err, ValidationError::TooLarge { field: "identifiers.id".into(), limit: 150, actual: 151 });
//! ```

#![warn(missing_docs)]

mod client;
mod credentials;
pub mod customers;
pub mod encode;
mod error;
mod identifier;
mod layers;
pub mod limits;
pub mod operation;
pub mod pipelines;
pub mod raw;
mod region;
pub mod size;
pub mod stack;
pub mod transactional;
mod transport;
pub mod validate;

pub use client::{
    AppClient, AppResponse, BatchClient, BatchResponse, BoxError, ClientBuilder, EntryError,
    PipelinesClient, PipelinesResponse, ResponseFuture, TrackClient, TrackResponse,
    APP_API_PER_SECOND, STRICT_MODE,
};
pub use credentials::{AppCredentials, PipelinesCredentials, Secret, TrackCredentials};
pub use customers::{
    Activities, Activity, ActivityQuery, Customer, CustomerDevice, CustomerIdentifiers, Segment,
};
pub use encode::{encode_batch, EncodedBatch};
pub use error::{parse_retry_after, ConfigError, Error, RETRYABLE_STATUSES};
pub use identifier::{ObjectIdentifier, PersonIdentifier, Relationship, RelationshipTarget};
pub use limits::{Limits, ValidationError};
pub use operation::{
    AddDevice, DecodeError, DeleteDevice, DeliveryEvent, Device, Event, EventKind, EventSubject,
    FormSubmit, Identify, Merge, ObjectIdentify, ObjectRelationships, Operation,
    PersonRelationships, SegmentChange, SegmentIdType, SegmentMembership, V1Request,
};
pub use pipelines::{CallKind, PipelinesCall, PipelinesRequest};
pub use region::{CustomEndpoints, Region};
pub use transactional::{
    AppRequest, BroadcastTrigger, MessageIdentifiers, MessageKind, TransactionalMessage,
};
pub use transport::{ClientOptions, Idempotency, RawResponse, TlsOptions, Transport};

/// A JSON object of attributes (profile attributes, event data, traits).
pub type Attributes = serde_json::Map<String, serde_json::Value>;
