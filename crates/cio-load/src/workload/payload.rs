//! Seeded synthetic payloads: the operation mix, people, attributes and event ids of an
//! iteration are a function of the seed, the scenario and the iteration number alone.
//!
//! The only parts that are not are the clock's: event `timestamp` (now, so events stay within
//! Customer.io's 72 h window) and the time part of each event id (a ULID whose 48-bit time is the
//! moment the generator was built and whose 80 random bits come from the seed), so a second run
//! of the same scenario is not de-duplicated away by Customer.io.

use std::time::{SystemTime, UNIX_EPOCH};

use cio_api::{
    Attributes, Event, EventKind, EventSubject, Identify, MessageIdentifiers, MessageKind,
    Operation, PersonIdentifier, TransactionalMessage,
};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;

/// The operations a scenario can mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// Create or update a person (Track v1 `PUT /customers/{id}`, or one v2 entry).
    Identify,
    /// Track an event (Track v1 `POST /customers/{id}/events`, or one v2 entry).
    Track,
    /// A Track v2 `POST /api/v2/batch` of `batch_size` entries (identify and event mixed).
    Batch,
    /// An App API transactional email (`POST /v1/send/email`).
    Transactional,
}

impl OperationKind {
    /// Every kind, in the order of the `mix` table.
    pub const ALL: [OperationKind; 4] = [
        OperationKind::Identify,
        OperationKind::Track,
        OperationKind::Batch,
        OperationKind::Transactional,
    ];

    /// The `operation` tag and the key in `mix`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Identify => "identify",
            OperationKind::Track => "track",
            OperationKind::Batch => "batch",
            OperationKind::Transactional => "transactional",
        }
    }

    /// Parses a key of `mix`.
    pub fn parse(s: &str) -> Option<Self> {
        OperationKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What to generate. Every field has a default suited to a first run.
#[derive(Clone, Debug, PartialEq)]
pub struct PayloadSpec {
    /// Relative weights of identify, track, batch and transactional (default: track only).
    pub mix: [u32; 4],
    /// Entries in a v2 batch (default 50).
    pub batch_size: u32,
    /// Custom attributes per person or event (default 3).
    pub attributes: u32,
    /// Bytes of each attribute value (default 16).
    pub attribute_bytes: u32,
    /// Distinct people (`load-0` ... `load-{ids-1}`; default 10,000).
    pub ids: u64,
    /// The seed (default 1).
    pub seed: u64,
    /// Name of tracked events (default `load_test`).
    pub event_name: String,
    /// Template of transactional messages (default 1).
    pub transactional_message_id: u64,
}

impl Default for PayloadSpec {
    fn default() -> Self {
        PayloadSpec {
            mix: [0, 1, 0, 0],
            batch_size: 50,
            attributes: 3,
            attribute_bytes: 16,
            ids: 10_000,
            seed: 1,
            event_name: "load_test".into(),
            transactional_message_id: 1,
        }
    }
}

impl PayloadSpec {
    /// The weight of one kind.
    pub fn weight(&self, kind: OperationKind) -> u32 {
        self.mix[kind as usize]
    }

    /// The share of iterations that are of `kind` (0 to 1).
    pub fn share(&self, kind: OperationKind) -> f64 {
        let total: u32 = self.mix.iter().sum();
        if total == 0 {
            0.0
        } else {
            f64::from(self.weight(kind)) / f64::from(total)
        }
    }
}

/// One iteration's request.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// One Track operation (identify or track).
    Single(OperationKind, Operation),
    /// A v2 batch.
    Batch(Vec<Operation>),
    /// A transactional email.
    Transactional(Box<cio_api::AppRequest>),
}

impl Payload {
    /// Its kind.
    pub fn kind(&self) -> OperationKind {
        match self {
            Payload::Single(k, _) => *k,
            Payload::Batch(_) => OperationKind::Batch,
            Payload::Transactional(_) => OperationKind::Transactional,
        }
    }
}

/// Builds the payload of iteration `n` of a scenario.
///
/// ```
/// use cio_load::workload::{PayloadGenerator, PayloadSpec};
///
/// let spec = PayloadSpec { mix: [1, 1, 1, 1], ..PayloadSpec::default() };
/// let a = PayloadGenerator::new(spec.clone(), "checkout");
/// let b = PayloadGenerator::new(spec, "checkout");
/// // Iteration 7 is the same operation for the same person on every run.
/// assert_eq!(a.kind(7), b.kind(7));
/// ```
#[derive(Clone, Debug)]
pub struct PayloadGenerator {
    spec: PayloadSpec,
    salt: u64,
    cumulative: [u32; 4],
    ulid_ms: u64,
    /// `attr_0` ... `attr_{attributes-1}`, formatted once rather than for every payload.
    attribute_keys: Vec<String>,
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const _: () = assert!(
    ALPHABET.len() == 36,
    "attribute values are drawn as base-36 digits"
);
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl PayloadGenerator {
    /// A generator for the scenario named `scenario` (its name salts the seed, so two scenarios
    /// with the same seed still send different people).
    pub fn new(spec: PayloadSpec, scenario: &str) -> Self {
        let mut cumulative = [0u32; 4];
        let mut acc = 0u32;
        for (i, w) in spec.mix.iter().enumerate() {
            acc = acc.saturating_add(*w);
            cumulative[i] = acc;
        }
        let ulid_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let attribute_keys = (0..spec.attributes).map(|i| format!("attr_{i}")).collect();
        PayloadGenerator {
            spec,
            salt: fnv1a(scenario.as_bytes()),
            cumulative,
            ulid_ms,
            attribute_keys,
        }
    }

    /// The spec.
    pub fn spec(&self) -> &PayloadSpec {
        &self.spec
    }

    fn rng(&self, n: u64) -> SmallRng {
        SmallRng::seed_from_u64(splitmix(
            self.spec.seed ^ self.salt ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }

    /// The kind of iteration `n`.
    pub fn kind(&self, n: u64) -> OperationKind {
        let total = self.cumulative[3];
        if total == 0 {
            return OperationKind::Track;
        }
        let pick = self.rng(n).gen_range(0..total);
        let i = self.cumulative.iter().position(|c| pick < *c).unwrap_or(1);
        OperationKind::ALL[i]
    }

    /// The whole payload of iteration `n`.
    pub fn payload(&self, n: u64) -> Payload {
        let kind = self.kind(n);
        let mut rng = self.rng(n ^ 0x5555_5555_5555_5555);
        match kind {
            OperationKind::Identify => Payload::Single(kind, self.identify(&mut rng)),
            OperationKind::Track => Payload::Single(kind, self.event(&mut rng)),
            OperationKind::Batch => Payload::Batch(
                (0..self.spec.batch_size.max(1))
                    .map(|_| {
                        if rng.gen_bool(0.5) {
                            self.identify(&mut rng)
                        } else {
                            self.event(&mut rng)
                        }
                    })
                    .collect(),
            ),
            OperationKind::Transactional => {
                Payload::Transactional(Box::new(self.transactional(&mut rng)))
            }
        }
    }

    /// `load-{n}`: built by hand, as every payload needs one (`format!` costs more than the rest).
    fn pick_person(&self, rng: &mut SmallRng) -> String {
        let n = rng.gen_range(0..self.spec.ids.max(1));
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n);
        let mut person = String::with_capacity("load-".len() + digits.len());
        person.push_str("load-");
        person.push_str(digits);
        person
    }

    fn attributes(&self, rng: &mut SmallRng) -> Attributes {
        let mut attrs = Attributes::new();
        for key in &self.attribute_keys {
            let mut value = String::with_capacity(self.spec.attribute_bytes as usize);
            // Twelve base-36 digits from each random u64 (36^12 < 2^64): one draw per twelve
            // characters rather than one each.
            let (mut bits, mut left) = (0u64, 0);
            for _ in 0..self.spec.attribute_bytes {
                if left == 0 {
                    (bits, left) = (rng.next_u64(), 12);
                }
                value.push(char::from(ALPHABET[(bits % 36) as usize]));
                bits /= 36;
                left -= 1;
            }
            attrs.insert(key.clone(), Value::String(value));
        }
        attrs
    }

    fn identify(&self, rng: &mut SmallRng) -> Operation {
        let person = self.pick_person(rng);
        let mut attributes = self.attributes(rng);
        let mut email = person.clone();
        email.push_str("@example.com");
        attributes.insert("email".into(), Value::String(email));
        Operation::Identify(Identify {
            identifier: PersonIdentifier::Id(person),
            attributes,
            relationships: Vec::new(),
            timestamp: None,
        })
    }

    fn event(&self, rng: &mut SmallRng) -> Operation {
        let person = self.pick_person(rng);
        let id = self.ulid(rng);
        Operation::Event(Event {
            subject: EventSubject::Person(PersonIdentifier::Id(person)),
            kind: EventKind::Event,
            name: self.spec.event_name.clone(),
            id: Some(id),
            timestamp: Some(unix_now()),
            data: self.attributes(rng),
        })
    }

    fn transactional(&self, rng: &mut SmallRng) -> cio_api::AppRequest {
        let person = self.pick_person(rng);
        let msg = TransactionalMessage {
            transactional_message_id: Some(Value::from(self.spec.transactional_message_id)),
            identifiers: MessageIdentifiers {
                id: Some(Value::String(person.clone())),
                ..MessageIdentifiers::default()
            },
            message_data: Some(self.attributes(rng)),
            to: Some(person.clone() + "@example.com"),
            ..TransactionalMessage::default()
        };
        cio_api::AppRequest::Send(MessageKind::Email, msg)
    }

    /// A ULID: 48 bits of milliseconds (the generator's creation) and 80 seeded random bits.
    fn ulid(&self, rng: &mut SmallRng) -> String {
        let random: u128 = rng.gen::<u128>() & ((1u128 << 80) - 1);
        let value = (u128::from(self.ulid_ms & ((1 << 48) - 1)) << 80) | random;
        let mut id = String::with_capacity(26);
        id.extend((0..26).map(|i| {
            let shift = 5 * (25 - i);
            char::from(CROCKFORD[((value >> shift) & 31) as usize])
        }));
        id
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without_clock(op: Operation) -> Operation {
        match op {
            Operation::Event(mut e) => {
                e.timestamp = None;
                Operation::Event(e)
            }
            other => other,
        }
    }

    #[test]
    fn same_seed_same_payloads_and_the_mix_holds() {
        let spec = PayloadSpec {
            mix: [1, 2, 1, 0],
            ids: 50,
            ..PayloadSpec::default()
        };
        let a = PayloadGenerator::new(spec.clone(), "s");
        let b = PayloadGenerator::new(spec.clone(), "s");
        let other = PayloadGenerator::new(spec, "t");
        let mut counts = [0u32; 4];
        // Event timestamps follow the clock; everything else follows the seed.
        let seeded = |p: Payload| match p {
            Payload::Single(k, op) => Payload::Single(k, without_clock(op)),
            Payload::Batch(ops) => Payload::Batch(ops.into_iter().map(without_clock).collect()),
            other => other,
        };
        for n in 0..4000 {
            let (pa, pb) = (seeded(a.payload(n)), seeded(b.payload(n)));
            assert!(pa == pb, "iteration {n} differs");
            counts[pa.kind() as usize] += 1;
        }
        assert!((900..1100).contains(&counts[0]), "{counts:?}");
        assert!((1850..2150).contains(&counts[1]), "{counts:?}");
        assert_eq!(counts[3], 0);
        assert!((0..100).any(|n| a.payload(n) != other.payload(n)));
    }

    #[test]
    fn people_are_named_as_before() {
        let g = PayloadGenerator::new(
            PayloadSpec {
                ids: u64::MAX,
                ..PayloadSpec::default()
            },
            "s",
        );
        for n in 0..1000 {
            let mut a = g.rng(n);
            let mut b = g.rng(n);
            assert_eq!(
                g.pick_person(&mut a),
                format!("load-{}", b.gen_range(0..u64::MAX))
            );
        }
        let mut zero = SmallRng::seed_from_u64(0);
        let one = PayloadGenerator::new(
            PayloadSpec {
                ids: 1,
                ..PayloadSpec::default()
            },
            "s",
        );
        assert_eq!(one.pick_person(&mut zero), "load-0");
    }

    #[test]
    fn payloads_are_valid_and_sized_as_asked() {
        let spec = PayloadSpec {
            mix: [1, 1, 1, 1],
            attributes: 5,
            attribute_bytes: 40,
            batch_size: 10,
            ids: 3,
            ..PayloadSpec::default()
        };
        let g = PayloadGenerator::new(spec, "s");
        let limits = cio_api::Limits::default();
        let mut people = std::collections::HashSet::new();
        let person = |op: &Operation| match op {
            Operation::Identify(i) => i.identifier.value().to_owned(),
            Operation::Event(e) => match &e.subject {
                EventSubject::Person(p) => p.value().to_owned(),
                EventSubject::Anonymous(a) => a.clone(),
            },
            other => panic!("{other:?}"),
        };
        for n in 0..200 {
            match g.payload(n) {
                Payload::Single(_, op) => {
                    op.validate(&limits).unwrap();
                    people.insert(person(&op));
                }
                Payload::Batch(ops) => {
                    assert_eq!(ops.len(), 10);
                    for op in ops {
                        op.validate(&limits).unwrap();
                    }
                }
                Payload::Transactional(req) => match *req {
                    cio_api::AppRequest::Send(kind, msg) => {
                        msg.validate(kind).unwrap();
                        assert_eq!(msg.message_data.unwrap().len(), 5);
                    }
                    other => panic!("{other:?}"),
                },
            }
        }
        let expected: std::collections::HashSet<String> =
            ["load-0", "load-1", "load-2"].map(String::from).into();
        assert_eq!(people, expected);
        let Payload::Single(_, Operation::Event(e)) = (0..50)
            .map(|n| g.payload(n))
            .find(|p| p.kind() == OperationKind::Track)
            .unwrap()
        else {
            panic!("not an event")
        };
        let id = e.id.unwrap();
        assert_eq!(id.len(), 26);
        assert_eq!(e.data["attr_0"].as_str().unwrap().len(), 40);
    }
}
