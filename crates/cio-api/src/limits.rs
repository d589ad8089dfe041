//! Customer.io's Track limits and the error that names a broken one. Knows nothing of
//! operations: every other module may use it.

/// Customer.io's Track limits. The defaults are the documented ones; every one is a setting
/// because Customer.io documents some loosely (an event name is 100 bytes on one page and 500
/// characters on another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A person or object identifier, in bytes.
    pub identifier_bytes: usize,
    /// An attribute name, in bytes.
    pub attribute_name_bytes: usize,
    /// An attribute value, in bytes of JSON.
    pub attribute_value_bytes: usize,
    /// Attributes per identify call.
    pub attributes_per_call: usize,
    /// An event name, in bytes.
    pub event_name_bytes: usize,
    /// Event data (the whole object), in bytes of JSON.
    pub event_data_bytes: usize,
    /// One v2 entry (and one Pipelines call), in bytes of JSON.
    pub entry_bytes: usize,
    /// One v2 batch request body (and one Pipelines batch), in bytes.
    pub batch_bytes: usize,
    /// Ids in one segment add/remove request.
    pub segment_ids: usize,
}

impl Limits {
    /// The most entry bytes a batch may carry: [`Limits::batch_bytes`] less the
    /// `{"batch":[` `]}` envelope. Use it as the batch layer's `max_weight` with
    /// `Operation`'s weight (its size plus a comma).
    pub fn batch_weight(&self) -> usize {
        // Entries weigh one comma more than they take (the last one has none).
        self.batch_bytes.saturating_sub(br#"{"batch":[]}"#.len()) + 1
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            identifier_bytes: 150,
            attribute_name_bytes: 150,
            attribute_value_bytes: 1000,
            attributes_per_call: 300,
            event_name_bytes: 100,
            event_data_bytes: 100_000,
            entry_bytes: 32 * 1024,
            batch_bytes: 500 * 1024,
            segment_ids: 1000,
        }
    }
}

/// An input that breaks one of Customer.io's rules, naming the field, the limit and the actual
/// size. Retrying cannot help: fix the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A required field is absent.
    #[error("{field} is required")]
    Missing {
        /// The field, as a path (`identifiers`, `device.token`, `batch[3].name`).
        field: String,
    },
    /// A field that must have content is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: String,
    },
    /// A field is larger than Customer.io accepts.
    #[error("{field} is {actual} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The field.
        field: String,
        /// The limit, in bytes.
        limit: usize,
        /// The size found, in bytes as sent.
        actual: usize,
    },
    /// A list or map has more members than Customer.io accepts.
    #[error("{field} has {actual} {what}, over the limit of {limit}")]
    TooMany {
        /// The field.
        field: String,
        /// What was counted (`attributes`, `ids`, `recipients`).
        what: &'static str,
        /// The limit.
        limit: usize,
        /// The count found.
        actual: usize,
    },
    /// Not exactly one identifier.
    #[error("{field} must hold exactly {expected}; found {}", found_list(.found))]
    IdentifierCount {
        /// The field.
        field: String,
        /// What is expected.
        expected: &'static str,
        /// The keys found.
        found: Vec<String>,
    },
    /// A value of the wrong kind or shape.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong, and what would be right.
        reason: String,
    },
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        "none".to_owned()
    } else {
        found.join(", ")
    }
}

impl ValidationError {
    /// The field at fault, as a path.
    pub fn field(&self) -> &str {
        match self {
            ValidationError::Missing { field }
            | ValidationError::Empty { field }
            | ValidationError::TooLarge { field, .. }
            | ValidationError::TooMany { field, .. }
            | ValidationError::IdentifierCount { field, .. }
            | ValidationError::Invalid { field, .. } => field,
        }
    }

    /// The limit that was exceeded, when a limit was.
    pub fn limit(&self) -> Option<usize> {
        match self {
            ValidationError::TooLarge { limit, .. } | ValidationError::TooMany { limit, .. } => {
                Some(*limit)
            }
            _ => None,
        }
    }

    /// The actual size or count, when a limit was exceeded.
    pub fn actual(&self) -> Option<usize> {
        match self {
            ValidationError::TooLarge { actual, .. } | ValidationError::TooMany { actual, .. } => {
                Some(*actual)
            }
            _ => None,
        }
    }

    /// The same error with `prefix.` in front of its field (for entries inside a batch).
    pub fn within(mut self, prefix: &str) -> Self {
        let field = match &mut self {
            ValidationError::Missing { field }
            | ValidationError::Empty { field }
            | ValidationError::TooLarge { field, .. }
            | ValidationError::TooMany { field, .. }
            | ValidationError::IdentifierCount { field, .. }
            | ValidationError::Invalid { field, .. } => field,
        };
        *field = format!("{prefix}.{field}");
        self
    }

    /// A short machine-readable reason (`missing`, `empty`, `too_large`, `too_many`,
    /// `identifiers`, `invalid`), as the mock reports in `errors[].reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::Missing { .. } => "missing",
            ValidationError::Empty { .. } => "empty",
            ValidationError::TooLarge { .. } => "too_large",
            ValidationError::TooMany { .. } => "too_many",
            ValidationError::IdentifierCount { .. } => "identifiers",
            ValidationError::Invalid { .. } => "invalid",
        }
    }
}
