//! What the mock keeps of what it was sent: people, their latest events, devices, suppression,
//! segment membership and relationships, and objects. The App API reads and
//! `GET /__mock/people/{id}` answer from it.
//!
//! # How it merges (as Customer.io documents it)
//!
//! - An identify creates the person it names (by `id`, `email` or `phone`; a `cio_id` that is not
//!   known creates no one) and sets each attribute it carries. A value of `""` or `null` removes
//!   the attribute. An `email` (or `id`) attribute sent to a person addressed by another
//!   identifier becomes that identifier: this is how an id or email is changed.
//! - `_update: true` updates a person who exists and never creates one.
//! - `_timestamp` (v1) or the v2 entry's `timestamp` orders updates attribute by attribute: an
//!   attribute last set by a newer update is not overwritten by an older one. Without it the
//!   update is stamped with the time it arrived. The per-attribute times are what
//!   `getAttributes` returns as `timestamps`.
//! - An event for a person who does not exist creates them (an event names a person by
//!   identifier). The newest [`StoreLimits::events_per_person`] events, page and screen views
//!   are kept per person, newest first in `getCustomerActivities`. Anonymous events are only
//!   counted: Customer.io ties them to a person later, when the anonymous id is identified.
//! - Merge: what the secondary has and the primary lacks (attributes, identifiers, devices,
//!   segments, relationships) goes to the primary, events are interleaved by time, the
//!   secondary is deleted. The primary wins every conflict. Both must exist, else nothing
//!   changes.
//! - Suppress keeps the person, marked suppressed: App API reads answer 404 for them (Customer.io
//!   deletes a suppressed profile) while `GET /__mock/people/{id}` shows them with
//!   `"suppressed": true`; identifies and events sent to them are dropped and counted in
//!   `dropped_suppressed`. Unsuppress lets them be updated again.
//! - Manual segments (`/segments/{id}/add_customers`) hold the people they name who exist.
//! - Relationships are kept on both sides, person and object; an object is created by an
//!   object identify or by a relationship naming it.
//!
//! # Bounded memory
//!
//! Everything is capped by count, and all of it together by an approximate byte budget
//! ([`StoreLimits`]). Past a cap the least recently used person (or object) is evicted: every
//! write and App API read of a person counts as a use. Evictions are counted in the stats
//! (`evicted_people`, `evicted_events`, `evicted_objects`). The byte count is an estimate of
//! the heap the kept values take (strings, maps, events as their JSON text), not a measurement;
//! `docs/benchmarks.md` gives the RSS measured with the defaults.
//!
//! # Why by hand
//!
//! The LRU itself is the `lru` crate's. What is written here is Customer.io's merge rules,
//! which no crate knows, and the three identifier indexes that must stay in step with it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use cio_api::{
    Attributes, EventKind, EventSubject, ObjectIdentifier, Operation, PersonIdentifier,
    Relationship, RelationshipTarget, SegmentChange, SegmentIdType,
};
use lru::LruCache;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::config::StoreLimits;
use crate::stats::lock;

/// The first `cio_id` handed out (hex, eight digits, like Customer.io's).
const FIRST_CIO_ID: u64 = 0x1000_0000;

/// Bytes counted for a person before their attributes and events: the record, its LRU node and
/// its index entries.
const PERSON_OVERHEAD: usize = 320;
/// Bytes counted for a kept event besides its name, id and data text.
const EVENT_OVERHEAD: usize = 96;
/// Bytes counted for an object besides its attributes.
const OBJECT_OVERHEAD: usize = 200;

/// One change to apply, made from an accepted request outside the store's lock.
pub(crate) enum Change {
    /// An operation parsed in full.
    Op(Operation),
    /// An event, page or screen view of a person, its data kept as the JSON text it came in.
    Event(PersonIdentifier, KeptEvent),
}

/// An event as kept: its data as compact JSON text (a third of what a parsed value takes).
pub(crate) struct KeptEvent {
    kind: EventKind,
    name: Box<str>,
    id: Option<Box<str>>,
    timestamp: i64,
    data: Option<Box<RawValue>>,
}

impl KeptEvent {
    fn bytes(&self) -> usize {
        EVENT_OVERHEAD
            + self.name.len()
            + self.id.as_ref().map_or(0, |i| i.len())
            + self.data.as_ref().map_or(0, |d| d.get().len())
    }
}

impl Change {
    /// What to keep of an accepted operation (`None`: nothing to keep, e.g. a delivery metric).
    pub(crate) fn of(op: Operation) -> Option<Change> {
        match op {
            Operation::Event(e) => match e.subject {
                EventSubject::Person(who) => {
                    let data = (!e.data.is_empty())
                        .then(|| serde_json::value::to_raw_value(&e.data).ok())
                        .flatten();
                    Some(Change::Event(
                        who,
                        KeptEvent {
                            kind: e.kind,
                            name: e.name.into(),
                            id: e.id.map(Into::into),
                            timestamp: e.timestamp.unwrap_or_else(now),
                            data,
                        },
                    ))
                }
                EventSubject::Anonymous(_) => None,
            },
            Operation::DeliveryEvent(_) | Operation::FormSubmit(_) => None,
            op => Some(Change::Op(op)),
        }
    }

    /// What to keep of an accepted v2 entry, from its text. A person's event is read without
    /// building its data (kept as text); anything else is parsed in full.
    pub(crate) fn of_entry(text: &str) -> Option<Change> {
        /// The fields of a v2 event entry the store keeps; `attributes` stays text.
        #[derive(Deserialize)]
        struct EventEntry<'a> {
            #[serde(rename = "type")]
            entry_type: &'a str,
            action: &'a str,
            #[serde(borrow)]
            identifiers: Option<BTreeMap<&'a str, StrOrNumber<'a>>>,
            #[serde(borrow, default)]
            name: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            id: Option<std::borrow::Cow<'a, str>>,
            #[serde(default)]
            timestamp: Option<i64>,
            #[serde(borrow, default)]
            attributes: Option<&'a RawValue>,
        }
        if let Ok(e) = serde_json::from_str::<EventEntry<'_>>(text) {
            let kind = match e.action {
                "event" => Some(EventKind::Event),
                "page" => Some(EventKind::Page),
                "screen" => Some(EventKind::Screen),
                _ => None,
            };
            if let (Some(kind), "person", Some(ids), Some(name)) =
                (kind, e.entry_type, e.identifiers, e.name)
            {
                let (key, value) = ids.into_iter().next()?;
                let who = PersonIdentifier::from_key(key, value.into_string())?;
                let data = e
                    .attributes
                    .filter(|a| !matches!(a.get(), "{}" | "null"))
                    .map(|a| a.to_owned());
                return Some(Change::Event(
                    who,
                    KeptEvent {
                        kind,
                        name: name.into(),
                        id: e.id.map(Into::into),
                        timestamp: e.timestamp.unwrap_or_else(now),
                        data,
                    },
                ));
            }
        }
        Operation::from_json_str(text).ok().and_then(Change::of)
    }

    /// What to keep of an accepted Pipelines call: identify, track, page and screen of a known
    /// user, group (an object of type `traits.object_type_id`, default `"1"`, related to the
    /// user) and alias (a merge of the previous id into the user). Calls with only an
    /// anonymous id are counted, not kept.
    pub(crate) fn of_call(kind: cio_api::CallKind, call: cio_api::PipelinesCall) -> Option<Change> {
        use cio_api::CallKind;
        let user = PersonIdentifier::Id(call.user_id.clone()?);
        let timestamp = call
            .timestamp
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let event = |kind: EventKind, name: Option<String>| {
            let data = call
                .properties
                .as_ref()
                .filter(|p| !p.is_empty())
                .and_then(|p| serde_json::value::to_raw_value(p).ok());
            Some(Change::Event(
                user.clone(),
                KeptEvent {
                    kind,
                    name: name.unwrap_or_default().into(),
                    id: call.message_id.clone().map(Into::into),
                    timestamp: timestamp.unwrap_or_else(now),
                    data,
                },
            ))
        };
        match kind {
            CallKind::Identify => Some(Change::Op(Operation::Identify(cio_api::Identify {
                identifier: user.clone(),
                attributes: call.traits.clone().unwrap_or_default(),
                relationships: Vec::new(),
                timestamp,
            }))),
            CallKind::Track => event(EventKind::Event, call.event.clone()),
            CallKind::Page => event(EventKind::Page, call.name.clone()),
            CallKind::Screen => event(EventKind::Screen, call.name.clone()),
            CallKind::Group => {
                let traits = call.traits.clone().unwrap_or_default();
                let object_type_id = traits
                    .get("object_type_id")
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "1".to_owned());
                Some(Change::Op(Operation::ObjectIdentify(
                    cio_api::ObjectIdentify {
                        identifier: ObjectIdentifier::Object {
                            object_type_id,
                            object_id: call.group_id.clone()?,
                        },
                        attributes: traits,
                        relationships: vec![Relationship::with_person(user.clone())],
                    },
                )))
            }
            CallKind::Alias => Some(Change::Op(Operation::Merge(cio_api::Merge {
                primary: user.clone(),
                secondary: PersonIdentifier::Id(call.previous_id.clone()?),
            }))),
        }
    }
}

/// An identifier value that may have come as a JSON number.
#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrNumber<'a> {
    Str(#[serde(borrow)] std::borrow::Cow<'a, str>),
    Number(serde_json::Number),
}

impl StrOrNumber<'_> {
    fn into_string(self) -> String {
        match self {
            StrOrNumber::Str(s) => s.into_owned(),
            StrOrNumber::Number(n) => n.to_string(),
        }
    }
}

/// How a read names a person: the App API's `id_type` (`id`, `email` or `cio_id`).
#[derive(Clone, Debug)]
pub(crate) struct Lookup {
    kind: SegmentIdType,
    value: String,
}

impl Lookup {
    /// `value` read as `id_type` says (default `id`); `None` for an unknown `id_type`.
    pub(crate) fn new(value: &str, id_type: Option<&str>) -> Option<Lookup> {
        let kind = match id_type.unwrap_or("id") {
            "id" => SegmentIdType::Id,
            "email" => SegmentIdType::Email,
            "cio_id" => SegmentIdType::CioId,
            _ => return None,
        };
        Some(Lookup {
            kind,
            value: value.to_owned(),
        })
    }
}

/// An attribute with the time of the update that set it.
#[derive(Clone)]
struct Attr {
    value: Value,
    at: i64,
    bytes: usize,
}

#[derive(Clone)]
struct KeptDevice {
    token: String,
    platform: Option<String>,
    last_used: Option<i64>,
    attributes: Attributes,
}

/// An object's key: its type and id.
type ObjectKey = (String, String);

struct Person {
    cio_id: u64,
    id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    attributes: BTreeMap<String, Attr>,
    created: i64,
    updated: i64,
    /// Newest at the back.
    events: VecDeque<KeptEvent>,
    devices: Vec<KeptDevice>,
    suppressed: bool,
    segments: Vec<u64>,
    relationships: Vec<ObjectKey>,
    /// What this person is counted as in the byte budget.
    bytes: usize,
}

struct Object {
    cio_object_id: u64,
    attributes: Map<String, Value>,
    people: Vec<u64>,
    bytes: usize,
}

/// The kept state: one lock over it all, taken once per request (a batch applies all its
/// entries under one lock), so the identifier indexes never disagree with the people.
pub(crate) struct Store {
    inner: Mutex<Inner>,
}

/// Counts of what the store let go of, and what it holds, for the stats.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StoreCounts {
    pub(crate) people: u64,
    pub(crate) objects: u64,
    pub(crate) bytes: u64,
    pub(crate) evicted_people: u64,
    pub(crate) evicted_events: u64,
    pub(crate) evicted_objects: u64,
    pub(crate) dropped_suppressed: u64,
}

struct Inner {
    limits: StoreLimits,
    people: LruCache<u64, Person>,
    by_id: HashMap<String, u64>,
    by_email: HashMap<String, u64>,
    by_phone: HashMap<String, u64>,
    objects: LruCache<ObjectKey, Object>,
    next_cio_id: u64,
    bytes: usize,
    counts: StoreCounts,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// An estimate of the heap a JSON value takes once parsed.
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 32,
        Value::String(s) => 32 + s.len(),
        Value::Array(a) => 32 + a.iter().map(value_bytes).sum::<usize>(),
        Value::Object(m) => {
            32 + m
                .iter()
                .map(|(k, v)| 48 + k.len() + value_bytes(v))
                .sum::<usize>()
        }
    }
}

fn object_key(o: &ObjectIdentifier) -> Option<ObjectKey> {
    match o {
        ObjectIdentifier::Object {
            object_type_id,
            object_id,
        } => Some((object_type_id.clone(), object_id.clone())),
        // Only objects first named by type and id are kept: a `cio_object_id` of one the
        // mock never saw names nothing.
        ObjectIdentifier::CioObjectId(_) => None,
    }
}

fn cio_id_text(n: u64) -> String {
    format!("{n:x}")
}

impl Store {
    pub(crate) fn new(limits: StoreLimits) -> Self {
        Store {
            inner: Mutex::new(Inner::new(limits)),
        }
    }

    /// Applies the changes of one request, in order, under one lock.
    pub(crate) fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut inner = lock(&self.inner);
        let now = now();
        for change in changes {
            inner.apply(change, now);
        }
        inner.enforce();
    }

    pub(crate) fn counts(&self) -> StoreCounts {
        let inner = lock(&self.inner);
        StoreCounts {
            people: inner.people.len() as u64,
            objects: inner.objects.len() as u64,
            bytes: inner.bytes as u64,
            ..inner.counts
        }
    }

    pub(crate) fn reset(&self) {
        let mut inner = lock(&self.inner);
        let limits = inner.limits;
        *inner = Inner::new(limits);
    }

    /// The App API's view of a person (`getAttributes`): `None` when unknown or suppressed.
    pub(crate) fn customer(&self, who: &Lookup) -> Option<Value> {
        let mut inner = lock(&self.inner);
        let key = inner.find_lookup(who)?;
        let p = inner.people.get(&key)?;
        (!p.suppressed).then(|| customer_json(p))
    }

    /// `getCustomersByEmail`: the identifiers of the people with this email.
    pub(crate) fn by_email(&self, email: &str) -> Vec<Value> {
        let mut inner = lock(&self.inner);
        let Some(key) = inner.by_email.get(email).copied() else {
            return Vec::new();
        };
        match inner.people.get(&key) {
            Some(p) if !p.suppressed => vec![identifiers_json(p)],
            _ => Vec::new(),
        }
    }

    /// `getCustomerSegments`: `None` when the person is unknown or suppressed.
    pub(crate) fn segments(&self, who: &Lookup) -> Option<Vec<u64>> {
        let mut inner = lock(&self.inner);
        let key = inner.find_lookup(who)?;
        let p = inner.people.get(&key)?;
        (!p.suppressed).then(|| p.segments.clone())
    }

    /// `getCustomerActivities`: the person's kept events, newest first, filtered by `type` and
    /// `name`, from the `start` cursor (an offset), at most `limit`; with the next cursor.
    pub(crate) fn activities(
        &self,
        who: &Lookup,
        kind: Option<&str>,
        name: Option<&str>,
        start: usize,
        limit: usize,
    ) -> Option<(Vec<Value>, Option<usize>)> {
        let mut inner = lock(&self.inner);
        let key = inner.find_lookup(who)?;
        let p = inner.people.get(&key)?;
        if p.suppressed {
            return None;
        }
        let identifiers = identifiers_json(p);
        let customer_id = p.id.clone();
        let matching = p
            .events
            .iter()
            .rev()
            .filter(|e| kind.is_none_or(|k| k == e.kind.as_str()))
            .filter(|e| name.is_none_or(|n| n == &*e.name));
        let mut page: Vec<Value> = Vec::new();
        let mut more = false;
        for e in matching.skip(start) {
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(activity_json(e, &customer_id, &identifiers));
        }
        let next = more.then_some(start + page.len());
        Some((page, next))
    }

    /// Everything kept of a person, suppressed or not, for `GET /__mock/people/{id}`.
    pub(crate) fn person(&self, who: &Lookup) -> Option<Value> {
        let inner = lock(&self.inner);
        let key = inner.find_lookup(who)?;
        let p = inner.people.peek(&key)?;
        let mut v = customer_json(p);
        let identifiers = identifiers_json(p);
        if let Value::Object(m) = &mut v {
            m.insert("suppressed".into(), json!(p.suppressed));
            m.insert("created".into(), json!(p.created));
            m.insert("updated".into(), json!(p.updated));
            m.insert("segments".into(), json!(p.segments));
            m.insert(
                "relationships".into(),
                Value::Array(
                    p.relationships
                        .iter()
                        .map(|(t, id)| json!({"object_type_id": t, "object_id": id}))
                        .collect(),
                ),
            );
            m.insert(
                "events".into(),
                Value::Array(
                    p.events
                        .iter()
                        .rev()
                        .map(|e| activity_json(e, &p.id, &identifiers))
                        .collect(),
                ),
            );
        }
        Some(v)
    }

    /// Everything kept of an object, for `GET /__mock/objects/{type}/{id}` and the App API's
    /// `getObjectAttributes`.
    pub(crate) fn object(&self, object_type_id: &str, object_id: &str) -> Option<Value> {
        let inner = lock(&self.inner);
        let o = inner
            .objects
            .peek(&(object_type_id.to_owned(), object_id.to_owned()))?;
        let people: Vec<Value> = o
            .people
            .iter()
            .filter_map(|k| inner.people.peek(k))
            .map(identifiers_json)
            .collect();
        Some(json!({
            "object": {
                "object_type_id": object_type_id,
                "object_id": object_id,
                "cio_object_id": cio_id_text(o.cio_object_id),
                "attributes": o.attributes,
            },
            "relationships": people,
        }))
    }
}

fn identifiers_json(p: &Person) -> Value {
    let mut ids = Map::new();
    ids.insert("cio_id".into(), json!(cio_id_text(p.cio_id)));
    ids.insert("email".into(), json!(p.email));
    ids.insert("id".into(), json!(p.id));
    if let Some(phone) = &p.phone {
        ids.insert("phone".into(), json!(phone));
    }
    Value::Object(ids)
}

/// A person as the App API's `getAttributes` answers: `{id, identifiers, attributes,
/// timestamps, unsubscribed, devices}`, `attributes` including the identifiers as strings.
fn customer_json(p: &Person) -> Value {
    let mut attributes = Map::new();
    let mut timestamps = Map::new();
    for (k, a) in &p.attributes {
        attributes.insert(k.clone(), a.value.clone());
        timestamps.insert(k.clone(), json!(a.at));
    }
    attributes.insert("cio_id".into(), json!(cio_id_text(p.cio_id)));
    timestamps.insert("cio_id".into(), json!(p.created));
    for (k, v) in [("id", &p.id), ("email", &p.email), ("phone", &p.phone)] {
        if let Some(v) = v {
            attributes.insert(k.into(), json!(v));
            timestamps.entry(k).or_insert(json!(p.created));
        }
    }
    let unsubscribed = p
        .attributes
        .get("unsubscribed")
        .is_some_and(|a| a.value == Value::Bool(true));
    json!({
        "id": p.id,
        "identifiers": identifiers_json(p),
        "attributes": attributes,
        "timestamps": timestamps,
        "unsubscribed": unsubscribed,
        "devices": p.devices.iter().map(|d| {
            let mut v = json!({"id": d.token, "platform": d.platform, "last_used": d.last_used});
            if !d.attributes.is_empty() {
                v["attributes"] = Value::Object(d.attributes.clone());
            }
            v
        }).collect::<Vec<_>>(),
    })
}

/// One kept event as `getCustomerActivities` lists it.
fn activity_json(e: &KeptEvent, customer_id: &Option<String>, identifiers: &Value) -> Value {
    let data = e
        .data
        .as_ref()
        .and_then(|d| serde_json::from_str::<Value>(d.get()).ok())
        .unwrap_or_else(|| json!({}));
    json!({
        "id": e.id.as_deref(),
        "type": e.kind.as_str(),
        "name": &*e.name,
        "timestamp": e.timestamp,
        "customer_id": customer_id,
        "customer_identifiers": identifiers,
        "delivery_id": null,
        "delivery_type": null,
        "data": data,
    })
}

impl Inner {
    fn new(limits: StoreLimits) -> Self {
        Inner {
            limits,
            people: LruCache::unbounded(),
            by_id: HashMap::new(),
            by_email: HashMap::new(),
            by_phone: HashMap::new(),
            objects: LruCache::unbounded(),
            next_cio_id: FIRST_CIO_ID,
            bytes: 0,
            counts: StoreCounts::default(),
        }
    }

    fn find(&self, who: &PersonIdentifier) -> Option<u64> {
        match who {
            PersonIdentifier::Id(v) => self.by_id.get(v).copied(),
            PersonIdentifier::Email(v) => self.by_email.get(v).copied(),
            PersonIdentifier::Phone(v) => self.by_phone.get(v).copied(),
            PersonIdentifier::CioId(v) => u64::from_str_radix(v, 16)
                .ok()
                .filter(|k| self.people.contains(k)),
        }
    }

    fn find_lookup(&self, who: &Lookup) -> Option<u64> {
        let v = who.value.clone();
        self.find(&match who.kind {
            SegmentIdType::Id => PersonIdentifier::Id(v),
            SegmentIdType::Email => PersonIdentifier::Email(v),
            SegmentIdType::CioId => PersonIdentifier::CioId(v),
        })
    }

    /// The person `who` names, created when `create` and the identifier can create one.
    fn person(&mut self, who: &PersonIdentifier, create: bool, now: i64) -> Option<u64> {
        if let Some(k) = self.find(who) {
            return Some(k);
        }
        if !create || matches!(who, PersonIdentifier::CioId(_)) {
            return None;
        }
        let key = self.next_cio_id;
        self.next_cio_id += 1;
        let mut p = Person {
            cio_id: key,
            id: None,
            email: None,
            phone: None,
            attributes: BTreeMap::new(),
            created: now,
            updated: now,
            events: VecDeque::new(),
            devices: Vec::new(),
            suppressed: false,
            segments: Vec::new(),
            relationships: Vec::new(),
            bytes: PERSON_OVERHEAD + who.value().len(),
        };
        let value = who.value().to_owned();
        match who {
            PersonIdentifier::Id(_) => p.id = Some(value.clone()),
            PersonIdentifier::Email(_) => p.email = Some(value.clone()),
            PersonIdentifier::Phone(_) => p.phone = Some(value.clone()),
            PersonIdentifier::CioId(_) => {}
        }
        self.index(who, value, key);
        self.bytes += p.bytes;
        self.people.put(key, p);
        Some(key)
    }

    fn index(&mut self, who: &PersonIdentifier, value: String, key: u64) {
        match who {
            PersonIdentifier::Id(_) => self.by_id.insert(value, key),
            PersonIdentifier::Email(_) => self.by_email.insert(value, key),
            PersonIdentifier::Phone(_) => self.by_phone.insert(value, key),
            PersonIdentifier::CioId(_) => None,
        };
    }

    /// Removes the index entries that point at `key`.
    fn unindex(&mut self, p: &Person) {
        let key = p.cio_id;
        for (map, v) in [
            (&mut self.by_id, &p.id),
            (&mut self.by_email, &p.email),
            (&mut self.by_phone, &p.phone),
        ] {
            if let Some(v) = v {
                if map.get(v) == Some(&key) {
                    map.remove(v);
                }
            }
        }
    }

    /// Takes a person out of the store (deleted, merged away or evicted).
    fn remove(&mut self, key: u64) -> Option<Person> {
        let p = self.people.pop(&key)?;
        self.unindex(&p);
        self.bytes = self.bytes.saturating_sub(p.bytes);
        Some(p)
    }

    fn apply(&mut self, change: Change, now: i64) {
        match change {
            Change::Event(who, event) => self.event(&who, event, now),
            Change::Op(op) => self.op(op, now),
        }
    }

    /// `Some(key)` for a person who may be written; a suppressed one is counted and `None`.
    fn writable(&mut self, key: u64) -> Option<u64> {
        let suppressed = self.people.peek(&key)?.suppressed;
        if suppressed {
            self.counts.dropped_suppressed += 1;
            return None;
        }
        Some(key)
    }

    fn event(&mut self, who: &PersonIdentifier, event: KeptEvent, now: i64) {
        let Some(key) = self.person(who, true, now).and_then(|k| self.writable(k)) else {
            return;
        };
        let cap = self.limits.events_per_person;
        let Some(p) = self.people.get_mut(&key) else {
            return;
        };
        let mut delta = event.bytes() as isize;
        p.events.push_back(event);
        let mut evicted = 0;
        while p.events.len() > cap {
            if let Some(old) = p.events.pop_front() {
                delta -= old.bytes() as isize;
                evicted += 1;
            }
        }
        p.updated = now;
        p.bytes = p.bytes.saturating_add_signed(delta);
        self.bytes = self.bytes.saturating_add_signed(delta);
        self.counts.evicted_events += evicted;
    }

    fn op(&mut self, op: Operation, now: i64) {
        match op {
            Operation::Identify(i) => {
                let update_only = i.attributes.get("_update") == Some(&Value::Bool(true));
                let Some(key) = self
                    .person(&i.identifier, !update_only, now)
                    .and_then(|k| self.writable(k))
                else {
                    return;
                };
                let at = i.timestamp.unwrap_or(now);
                self.set_attributes(key, &i.identifier, i.attributes, at, now);
                for r in &i.relationships {
                    if let RelationshipTarget::Object(o) = &r.target {
                        self.relate(key, o, true);
                    }
                }
            }
            Operation::Delete(who) => {
                if let Some(key) = self.find(&who) {
                    self.remove(key);
                }
            }
            Operation::Suppress(who) => {
                // Customer.io suppresses an identifier even for someone it never saw.
                if let Some(key) = self.person(&who, true, now) {
                    if let Some(p) = self.people.get_mut(&key) {
                        p.suppressed = true;
                        p.updated = now;
                    }
                }
            }
            Operation::Unsuppress(who) => {
                if let Some(key) = self.find(&who) {
                    if let Some(p) = self.people.get_mut(&key) {
                        p.suppressed = false;
                        p.updated = now;
                    }
                }
            }
            Operation::AddDevice(d) => {
                let Some(key) = self
                    .person(&d.identifier, true, now)
                    .and_then(|k| self.writable(k))
                else {
                    return;
                };
                let device = KeptDevice {
                    token: d.device.token,
                    platform: d.device.platform,
                    last_used: d.device.last_used,
                    attributes: d.device.attributes,
                };
                let add = 64
                    + device.token.len()
                    + value_bytes(&Value::Object(device.attributes.clone()));
                if let Some(p) = self.people.get_mut(&key) {
                    let mut delta = add as isize;
                    if let Some(i) = p.devices.iter().position(|x| x.token == device.token) {
                        let old = &p.devices[i];
                        delta -= (64
                            + old.token.len()
                            + value_bytes(&Value::Object(old.attributes.clone())))
                            as isize;
                        p.devices[i] = device;
                    } else {
                        p.devices.push(device);
                    }
                    p.updated = now;
                    p.bytes = p.bytes.saturating_add_signed(delta);
                    self.bytes = self.bytes.saturating_add_signed(delta);
                }
            }
            Operation::DeleteDevice(d) => {
                if let Some(key) = self.find(&d.identifier) {
                    if let Some(p) = self.people.get_mut(&key) {
                        p.devices.retain(|x| x.token != d.token);
                        p.updated = now;
                    }
                }
            }
            Operation::Merge(m) => self.merge(&m.primary, &m.secondary, now),
            Operation::AddRelationships(r) => {
                if let Some(key) = self
                    .person(&r.identifier, true, now)
                    .and_then(|k| self.writable(k))
                {
                    for rel in &r.relationships {
                        if let RelationshipTarget::Object(o) = &rel.target {
                            self.relate(key, o, true);
                        }
                    }
                }
            }
            Operation::DeleteRelationships(r) => {
                if let Some(key) = self.find(&r.identifier) {
                    for rel in &r.relationships {
                        if let RelationshipTarget::Object(o) = &rel.target {
                            self.relate(key, o, false);
                        }
                    }
                }
            }
            Operation::ObjectIdentify(o) => {
                let Some(okey) = object_key(&o.identifier) else {
                    return;
                };
                self.object_mut(&okey);
                if let Some(obj) = self.objects.get_mut(&okey) {
                    let before = obj.bytes;
                    for (k, v) in o.attributes {
                        if v.is_null() || v.as_str() == Some("") {
                            obj.attributes.remove(&k);
                        } else {
                            obj.attributes.insert(k, v);
                        }
                    }
                    obj.bytes =
                        OBJECT_OVERHEAD + value_bytes(&Value::Object(obj.attributes.clone()));
                    self.bytes = (self.bytes + obj.bytes).saturating_sub(before);
                }
                self.relate_people(&o.identifier, &o.relationships, true, now);
            }
            Operation::ObjectAddRelationships(o) => {
                self.relate_people(&o.identifier, &o.relationships, true, now)
            }
            Operation::ObjectDeleteRelationships(o) => {
                self.relate_people(&o.identifier, &o.relationships, false, now)
            }
            Operation::ObjectDelete(o) => {
                if let Some(okey) = object_key(&o) {
                    if let Some(obj) = self.objects.pop(&okey) {
                        self.bytes = self.bytes.saturating_sub(obj.bytes);
                        for k in obj.people {
                            if let Some(p) = self.people.peek_mut(&k) {
                                p.relationships.retain(|r| *r != okey);
                            }
                        }
                    }
                }
            }
            Operation::SegmentMembership(s) => {
                let kind = s.id_type.unwrap_or(SegmentIdType::Id);
                for id in s.ids {
                    let who = match kind {
                        SegmentIdType::Id => PersonIdentifier::Id(id),
                        SegmentIdType::Email => PersonIdentifier::Email(id),
                        SegmentIdType::CioId => PersonIdentifier::CioId(id),
                    };
                    let Some(key) = self.find(&who) else { continue };
                    if let Some(p) = self.people.get_mut(&key) {
                        let at = p.segments.binary_search(&s.segment_id);
                        match (s.change, at) {
                            (SegmentChange::Add, Err(i)) => p.segments.insert(i, s.segment_id),
                            (SegmentChange::Remove, Ok(i)) => {
                                p.segments.remove(i);
                            }
                            _ => {}
                        }
                    }
                }
            }
            // Made into `Change::Event` (or nothing) by `Change::of`.
            Operation::Event(_) | Operation::DeliveryEvent(_) | Operation::FormSubmit(_) => {}
        }
    }

    /// Sets attributes as an identify does, each only if no newer update set it.
    fn set_attributes(
        &mut self,
        key: u64,
        addressed_by: &PersonIdentifier,
        attributes: Attributes,
        at: i64,
        now: i64,
    ) {
        let mut new_ids: Vec<PersonIdentifier> = Vec::new();
        let Some(p) = self.people.get_mut(&key) else {
            return;
        };
        let mut delta: isize = 0;
        for (k, v) in attributes {
            match k.as_str() {
                "_update" | "_timestamp" | "cio_id" => continue,
                "id" | "email" | "phone" => {
                    let value = match &v {
                        Value::String(s) if !s.is_empty() => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => continue,
                    };
                    if addressed_by.key() != k {
                        if let Some(who) = PersonIdentifier::from_key(&k, value) {
                            new_ids.push(who);
                        }
                    }
                    continue;
                }
                _ => {}
            }
            if p.attributes.get(&k).is_some_and(|old| old.at > at) {
                continue;
            }
            let removed = v.is_null() || v.as_str() == Some("");
            let old = if removed {
                p.attributes.remove(&k)
            } else {
                let bytes = 48 + k.len() + value_bytes(&v);
                delta += bytes as isize;
                p.attributes.insert(
                    k,
                    Attr {
                        value: v,
                        at,
                        bytes,
                    },
                )
            };
            if let Some(old) = old {
                delta -= old.bytes as isize;
            }
        }
        p.updated = now;
        p.bytes = p.bytes.saturating_add_signed(delta);
        self.bytes = self.bytes.saturating_add_signed(delta);
        for who in new_ids {
            self.set_identifier(key, who);
        }
    }

    /// Gives a person a new id, email or phone (the old one no longer finds them).
    fn set_identifier(&mut self, key: u64, who: PersonIdentifier) {
        let value = who.value().to_owned();
        let Some(p) = self.people.peek_mut(&key) else {
            return;
        };
        let slot = match who {
            PersonIdentifier::Id(_) => &mut p.id,
            PersonIdentifier::Email(_) => &mut p.email,
            PersonIdentifier::Phone(_) => &mut p.phone,
            PersonIdentifier::CioId(_) => return,
        };
        let old = slot.replace(value.clone());
        let map = match who {
            PersonIdentifier::Id(_) => &mut self.by_id,
            PersonIdentifier::Email(_) => &mut self.by_email,
            _ => &mut self.by_phone,
        };
        if let Some(old) = old {
            if map.get(&old) == Some(&key) {
                map.remove(&old);
            }
        }
        map.insert(value, key);
    }

    fn merge(&mut self, primary: &PersonIdentifier, secondary: &PersonIdentifier, now: i64) {
        let (Some(pk), Some(sk)) = (self.find(primary), self.find(secondary)) else {
            return;
        };
        if pk == sk {
            return;
        }
        let Some(s) = self.remove(sk) else { return };
        let cap = self.limits.events_per_person;
        let mut moved_ids = Vec::new();
        let Some(p) = self.people.get_mut(&pk) else {
            return;
        };
        let before = p.bytes;
        for (k, a) in s.attributes {
            if !p.attributes.contains_key(&k) {
                p.bytes += a.bytes;
                p.attributes.insert(k, a);
            }
        }
        for (slot, theirs, make) in [
            (
                &p.id,
                s.id,
                PersonIdentifier::Id as fn(String) -> PersonIdentifier,
            ),
            (&p.email, s.email, PersonIdentifier::Email),
            (&p.phone, s.phone, PersonIdentifier::Phone),
        ] {
            if let (None, Some(v)) = (slot, theirs) {
                moved_ids.push(make(v));
            }
        }
        let mut events: Vec<KeptEvent> = p.events.drain(..).chain(s.events).collect();
        events.sort_by_key(|e| e.timestamp);
        let dropped = events.len().saturating_sub(cap);
        self.counts.evicted_events += dropped as u64;
        p.events = events.into_iter().skip(dropped).collect();
        for d in s.devices {
            if !p.devices.iter().any(|x| x.token == d.token) {
                p.devices.push(d);
            }
        }
        for seg in s.segments {
            if let Err(i) = p.segments.binary_search(&seg) {
                p.segments.insert(i, seg);
            }
        }
        for r in &s.relationships {
            if !p.relationships.contains(r) {
                p.relationships.push(r.clone());
            }
        }
        p.bytes = PERSON_OVERHEAD
            + p.attributes.values().map(|a| a.bytes).sum::<usize>()
            + p.events.iter().map(KeptEvent::bytes).sum::<usize>();
        p.updated = now;
        let after = p.bytes;
        self.bytes = (self.bytes + after).saturating_sub(before);
        for r in s.relationships {
            if let Some(o) = self.objects.peek_mut(&r) {
                o.people.retain(|k| *k != sk);
                if !o.people.contains(&pk) {
                    o.people.push(pk);
                }
            }
        }
        for who in moved_ids {
            self.set_identifier(pk, who);
        }
    }

    /// The object, created when new; `None` past nothing (always there after).
    fn object_mut(&mut self, okey: &ObjectKey) {
        if self.objects.contains(okey) {
            self.objects.promote(okey);
            return;
        }
        let cio_object_id = self.next_cio_id;
        self.next_cio_id += 1;
        let bytes = OBJECT_OVERHEAD + okey.0.len() + okey.1.len();
        self.bytes += bytes;
        self.objects.put(
            okey.clone(),
            Object {
                cio_object_id,
                attributes: Map::new(),
                people: Vec::new(),
                bytes,
            },
        );
    }

    /// Relates (or unrelates) a person and an object, on both sides.
    fn relate(&mut self, key: u64, o: &ObjectIdentifier, add: bool) {
        let Some(okey) = object_key(o) else { return };
        if add {
            self.object_mut(&okey);
        }
        if let Some(obj) = self.objects.peek_mut(&okey) {
            match (add, obj.people.iter().position(|k| *k == key)) {
                (true, None) => obj.people.push(key),
                (false, Some(i)) => {
                    obj.people.swap_remove(i);
                }
                _ => {}
            }
        }
        if let Some(p) = self.people.peek_mut(&key) {
            match (add, p.relationships.iter().position(|r| *r == okey)) {
                (true, None) => p.relationships.push(okey),
                (false, Some(i)) => {
                    p.relationships.swap_remove(i);
                }
                _ => {}
            }
        }
    }

    fn relate_people(
        &mut self,
        o: &ObjectIdentifier,
        people: &[Relationship],
        add: bool,
        now: i64,
    ) {
        for r in people {
            if let RelationshipTarget::Person(who) = &r.target {
                if let Some(key) = self.person(who, add, now) {
                    self.relate(key, o, add);
                }
            }
        }
    }

    /// Evicts the least recently used people and objects until every cap holds.
    fn enforce(&mut self) {
        while self.people.len() > self.limits.people
            || (self.bytes > self.limits.bytes && self.people.len() > 1)
        {
            let Some((key, _)) = self.people.peek_lru() else {
                break;
            };
            let key = *key;
            if let Some(p) = self.remove(key) {
                self.counts.evicted_people += 1;
                self.counts.evicted_events += p.events.len() as u64;
            }
        }
        while self.objects.len() > self.limits.objects {
            let Some((_, o)) = self.objects.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(o.bytes);
            self.counts.evicted_objects += 1;
        }
    }
}
