//! The `workload` table of a scenario: the operation mix, the payloads (checked against
//! Customer.io's limits on a generated sample) and the layer stack's settings.

use std::num::{NonZeroU32, NonZeroUsize};

use cio_api::stack::{Concurrency, StackConfig};
use cio_api::Limits;
use cio_layers::concurrency::AdaptiveConfig;
use cio_layers::rate_limit::Quota;

use super::Problems;
use crate::config::file::{FileConcurrency, FileStack, FileWorkload};
use crate::config::locate::FieldPath;
use crate::workload::{OperationKind, Payload, PayloadGenerator, PayloadSpec, Through};

pub(super) fn workload(
    scenario: &str,
    w: FileWorkload,
    path: &FieldPath,
    problems: &mut Problems,
) -> (PayloadSpec, Through) {
    let mut spec = PayloadSpec::default();
    if let Some(mix) = w.mix {
        spec.mix = [0; 4];
        for (k, weight) in mix {
            match OperationKind::parse(&k) {
                Some(kind) => spec.mix[kind as usize] = weight,
                None => problems.push((path.key("mix").key(&k), format!(
                    "unknown operation {k:?}; the mix takes identify, track, batch and transactional"
                ))),
            }
        }
        if spec.mix.iter().all(|w| *w == 0) {
            problems.push((path.key("mix"), "every weight is zero; give at least one operation a weight, e.g. mix = { track = 1 }".into()));
        }
    }
    let mut bounded = |field: &str, v: Option<u64>, lo: u64, hi: u64, why: &str| -> Option<u64> {
        let v = v?;
        if v < lo || v > hi {
            problems.push((
                path.key(field),
                format!("{v} is out of range: {lo} to {hi} ({why})"),
            ));
            None
        } else {
            Some(v)
        }
    };
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    if let Some(v) = bounded(
        "batch_size",
        w.batch_size.map(u64::from),
        1,
        10_000,
        "entries per v2 batch, within 500 KB",
    ) {
        spec.batch_size = to_u32(v);
    }
    if let Some(v) = bounded(
        "attributes",
        w.attributes.map(u64::from),
        0,
        299,
        "Customer.io takes 300 attributes per call, email included",
    ) {
        spec.attributes = to_u32(v);
    }
    if let Some(v) = bounded(
        "attribute_bytes",
        w.attribute_bytes.map(u64::from),
        1,
        1000,
        "Customer.io's limit on an attribute value",
    ) {
        spec.attribute_bytes = to_u32(v);
    }
    if let Some(v) = bounded("ids", w.ids, 1, u64::MAX, "distinct people") {
        spec.ids = v;
    }
    if let Some(seed) = w.seed {
        spec.seed = seed;
    }
    if let Some(name) = w.event_name {
        if name.is_empty() || name.len() > 100 {
            problems.push((
                path.key("event_name"),
                "needs 1 to 100 bytes (Customer.io's limit on event names)".into(),
            ));
        }
        spec.event_name = name;
    }
    if let Some(id) = w.transactional_message_id {
        spec.transactional_message_id = id;
    }
    // The payloads must pass Customer.io's limits: check a sample of each kind.
    let generator = PayloadGenerator::new(spec.clone(), scenario);
    let limits = Limits::default();
    for n in 0..64 {
        let problem = match generator.payload(n) {
            Payload::Single(_, op) => op.validate(&limits).err().map(|e| e.to_string()),
            Payload::Batch(ops) => {
                let bytes: usize = ops.iter().map(|o| o.to_json().len() + 1).sum::<usize>() + 11;
                if bytes > limits.batch_bytes {
                    Some(format!("a batch of {} entries takes about {} KB, more than Customer.io's {} KB; lower batch_size, attributes or attribute_bytes", ops.len(), bytes / 1024, limits.batch_bytes / 1024))
                } else {
                    ops.iter()
                        .find_map(|o| o.validate(&limits).err())
                        .map(|e| e.to_string())
                }
            }
            Payload::Transactional(_) => None,
        };
        if let Some(p) = problem {
            problems.push((
                path.clone(),
                format!("the generated payloads break a limit: {p}"),
            ));
            break;
        }
    }
    let through = match w.through.as_deref().map(str::trim) {
        None | Some("client") => {
            if w.stack.is_some() {
                problems.push((
                    path.key("stack"),
                    "stack settings apply only with through = \"stack\"".into(),
                ));
            }
            Through::Client
        }
        Some("stack") => Through::Stack(Box::new(stack(
            w.stack.unwrap_or_default(),
            &path.key("stack"),
            problems,
        ))),
        Some(other) => {
            problems.push((path.key("through"), format!("unknown {other:?}; expected \"client\" (the raw clients) or \"stack\" (the full layer stack)")));
            Through::Client
        }
    };
    (spec, through)
}

fn stack(s: FileStack, path: &FieldPath, problems: &mut Problems) -> StackConfig {
    let mut c = StackConfig::default();
    let mut nz = |field: &str, v: Option<u32>| -> Option<NonZeroU32> {
        let v = v?;
        let n = NonZeroU32::new(v);
        if n.is_none() {
            problems.push((path.key(field), "must be at least 1".into()));
        }
        n
    };
    let rate = nz("rate", s.rate);
    let burst = nz("burst", s.burst);
    let attempts = nz("max_attempts", s.max_attempts);
    let items = nz("batch_items", s.batch_items);
    if let Some(r) = rate {
        c.rate = Quota::per_second(r).with_burst(burst.unwrap_or(r));
    } else if let Some(b) = burst {
        c.rate = Quota::per_second(NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN)).with_burst(b);
    }
    if let Some(a) = attempts {
        c.retry.max_attempts = a;
    }
    if let Some(i) = items {
        c.batch.max_items = NonZeroUsize::new(i.get() as usize).unwrap_or(NonZeroUsize::MIN);
        c.batch.queue_capacity = c.batch.queue_capacity.max(c.batch.max_items);
    }
    if let Some(l) = s.linger {
        c.batch.max_linger = l.0;
    }
    if s.deadline.is_some() {
        // Each attempt is bounded by the request timeout alone (the stack had a deadline of its
        // own that could never fire behind it).
        problems.push((
            path.key("deadline"),
            "the stack has no per-attempt deadline of its own: set the request timeout, [target] timeout = \"10s\"".into(),
        ));
    }
    match s.concurrency {
        None => {}
        Some(FileConcurrency::Fixed(0)) => problems.push((
            path.key("concurrency"),
            "must be at least 1, or \"adaptive\"".into(),
        )),
        Some(FileConcurrency::Fixed(n)) => c.concurrency = Concurrency::Fixed(n as usize),
        Some(FileConcurrency::Named(n)) if n == "adaptive" => {
            c.concurrency = Concurrency::Adaptive(AdaptiveConfig {
                max: 64,
                ..AdaptiveConfig::default()
            })
        }
        Some(FileConcurrency::Named(n)) => problems.push((
            path.key("concurrency"),
            format!("{n:?} is not a number or \"adaptive\""),
        )),
    }
    c
}
