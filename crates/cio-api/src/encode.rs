//! Encoding: validated v2 entries and batch bodies, each encoded once.

use crate::limits::{Limits, ValidationError};
use crate::operation::Operation;

impl Operation {
    /// Validates this operation as a v2 entry and appends its JSON to `out`. On error `out` is
    /// left as it was.
    pub fn encode_entry(&self, limits: &Limits, out: &mut Vec<u8>) -> Result<(), ValidationError> {
        if !self.has_v2_form() {
            return Err(ValidationError::Invalid {
                field: "type".into(),
                reason: format!(
                    "{} has no Track v2 form; send it through the v1 TrackClient",
                    self.stat_name()
                ),
            });
        }
        self.validate(limits)?;
        if let Operation::DeliveryEvent(d) = self {
            if !["opened", "converted", "delivered"].contains(&d.metric.as_str()) {
                return Err(ValidationError::Invalid {
                    field: "name".into(),
                    reason: format!(
                        "{:?}: a v2 delivery entry is opened, converted or delivered",
                        d.metric
                    ),
                });
            }
        }
        let start = out.len();
        self.write_json(out);
        let actual = out.len() - start;
        if actual > limits.entry_bytes {
            out.truncate(start);
            return Err(ValidationError::TooLarge {
                field: "entry".into(),
                limit: limits.entry_bytes,
                actual,
            });
        }
        Ok(())
    }
}

/// A v2 batch body, validated and encoded in one pass.
#[derive(Debug)]
pub struct EncodedBatch {
    /// `{"batch":[...]}` with the valid entries, or empty when none was valid.
    pub body: Vec<u8>,
    /// For each entry in `body`, its index in the caller's slice.
    pub sent: Vec<usize>,
    /// Entries refused before sending, with their index in the caller's slice.
    pub rejected: Vec<(usize, ValidationError)>,
}

/// Validates every entry, encodes the valid ones into one `{"batch":[...]}` body, and checks the
/// body against `limits.batch_bytes`. Invalid entries are reported, not sent; a body over the
/// batch limit is an error for the whole batch (split it: the batch layer does).
pub fn encode_batch(ops: &[Operation], limits: &Limits) -> Result<EncodedBatch, ValidationError> {
    const OPEN: &[u8] = b"{\"batch\":[";
    let mut body = Vec::with_capacity(ops.len() * 256 + 16);
    body.extend_from_slice(OPEN);
    let mut sent = Vec::with_capacity(ops.len());
    let mut rejected = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if !sent.is_empty() {
            body.push(b',');
        }
        match op.encode_entry(limits, &mut body) {
            Ok(()) => sent.push(i),
            Err(e) => {
                if !sent.is_empty() {
                    body.pop();
                }
                rejected.push((i, e.within(&format!("batch[{i}]"))));
            }
        }
    }
    body.extend_from_slice(b"]}");
    if body.len() > limits.batch_bytes {
        return Err(ValidationError::TooLarge {
            field: "batch".into(),
            limit: limits.batch_bytes,
            actual: body.len(),
        });
    }
    if sent.is_empty() {
        body.clear();
    }
    Ok(EncodedBatch {
        body,
        sent,
        rejected,
    })
}
