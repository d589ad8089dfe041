//! [`Decode`]: the step from a message's bytes to the item a service takes.

use bytes::Bytes;

use crate::source::Position;

/// Turns a payload into the item the service takes. A failure sends the message to the
/// dead-letter sink with the reason, and acknowledges it: a bad line never stalls the pipeline.
///
/// Implemented for closures `Fn(&[u8], &Position) -> Result<T, DecodeError>`; for Customer.io,
/// [`crate::cio::OperationDecoder`].
///
/// ```
/// use cio_pipeline::{Decode, DecodeError, source::Position};
///
/// let parse = |bytes: &[u8], _: &Position| -> Result<u32, DecodeError> {
///     std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).ok_or_else(|| DecodeError::new("not a number"))
/// };
/// let at = Position::Sequence { origin: "memory".into(), index: 0 };
/// assert_eq!(parse.decode(b"42", &at).unwrap(), 42);
/// assert_eq!(parse.decode(b"x", &at).unwrap_err().to_string(), "not a number");
/// ```
pub trait Decode: Send + Sync + 'static {
    /// What the service takes.
    type Item: Send + 'static;

    /// Decodes one payload found at `position`.
    fn decode(&self, payload: &[u8], position: &Position) -> Result<Self::Item, DecodeError>;

    /// Decodes one payload given as the source's own buffer, which an item may keep instead of
    /// copying (the processor calls this one). By default, [`Decode::decode`].
    fn decode_bytes(
        &self,
        payload: &Bytes,
        position: &Position,
    ) -> Result<Self::Item, DecodeError> {
        self.decode(payload, position)
    }
}

impl<F, T> Decode for F
where
    F: Fn(&[u8], &Position) -> Result<T, DecodeError> + Send + Sync + 'static,
    T: Send + 'static,
{
    type Item = T;

    fn decode(&self, payload: &[u8], position: &Position) -> Result<T, DecodeError> {
        self(payload, position)
    }
}

/// Why a payload could not be decoded: the reason a dead letter records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    reason: String,
}

impl DecodeError {
    /// A failure with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        DecodeError {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
