//! What the mock keeps of what it was sent: people, their latest events, devices, suppression,
//! segment membership and relationships, and objects. The App API reads and
//! `GET /__mock/people/{id}` answer from it.
//!
//! # How it merges (as Customer.io documents it)
//!
//! - An identify creates the person it names (by `id`, `email` or `phone`; a `cio_id` that is not
//!   known creates no one) and sets each attribute it carries. A value of `""` or `null` removes
//!   the attribute (and an older update does not bring it back). An `email` (or `id`,
//!   `phone`) attribute sent to a person addressed by another identifier becomes that
//!   identifier: this is how an id or email is changed; `""` removes an email or phone. An
//!   identifier another person holds is not taken (Customer.io: "an Attribute Update Failure
//!   for the identifier in the payload"). An identify whose own identifier is new but whose
//!   attributes name someone (by id, email or phone) updates that person and gives them the
//!   new identifier, as Customer.io's identify reference says
//!   (docs.customer.io/integrations/api/track/tag/track-customers/identify/). Emails match
//!   without regard to case.
//! - `_update: true` updates a person who exists and never creates one.
//! - `_timestamp` (v1) or the v2 entry's `timestamp` orders updates attribute by attribute: an
//!   attribute last set by a newer update is not overwritten by an older one. Without it the
//!   update is stamped with the time it arrived. The per-attribute times are what
//!   `getAttributes` returns as `timestamps`.
//! - An event for a person who does not exist creates them (an event names a person by
//!   identifier). The newest [`StoreLimits::events_per_person`] events, page and screen views
//!   are kept per person, newest first in `getCustomerActivities`. Events of someone not
//!   identified yet are kept by anonymous id (as many ids as people, as many events each) and
//!   become a person's when an identify carries that `anonymous_id` (a Pipelines identify's
//!   `anonymousId` too), as Customer.io links them.
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
//! ([`StoreLimits`]). Per person at most 300 attributes (Customer.io's limit; more are not
//! kept), 100 devices (the oldest goes), 1,000 manual segments and 1,000 relationships (more are
//! not recorded); per object 300 attributes. Past a cap the least recently used person (or object) is evicted: every
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
/// Bytes counted for a kept event besides its name, id and data text: its slot (64) and the
/// allocator's share of its three allocations (measured: with 96 the RSS came out 40 % over
/// the budget's share).
const EVENT_OVERHEAD: usize = 144;
/// Bytes counted for an object besides its attributes.
const OBJECT_OVERHEAD: usize = 200;

/// One change to apply, made from an accepted request outside the store's lock.
pub(crate) enum Change {
    /// An operation parsed in full.
    Op(Operation),
    /// An event, page or screen view of a person, its data kept as the JSON text it came in.
    Event(PersonIdentifier, KeptEvent),
    /// An event of someone not identified yet, by anonymous id.
    Anonymous(String, KeptEvent),
}

/// An event as kept: its data as the JSON text it came in (a third of what a parsed value
/// takes).
#[derive(Clone)]
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
            Operation::Event(e) => {
                let data = (!e.data.is_empty())
                    .then(|| serde_json::value::to_raw_value(&e.data).ok())
                    .flatten();
                let event = KeptEvent {
                    kind: e.kind,
                    name: e.name.into(),
                    id: e.id.map(Into::into),
                    timestamp: e.timestamp.unwrap_or_else(now),
                    data,
                };
                match e.subject {
                    EventSubject::Person(who) => Some(Change::Event(who, event)),
                    // An empty anonymous id is an invite event: no one to keep it for.
                    EventSubject::Anonymous(a) if a.is_empty() => None,
                    EventSubject::Anonymous(a) => Some(Change::Anonymous(a, event)),
                }
            }
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
    /// user) and alias (a merge of the previous id into the user). A track, page or screen with
    /// only an anonymous id is kept for that id; an identify that carries one takes its events.
    pub(crate) fn of_call(kind: cio_api::CallKind, call: cio_api::PipelinesCall) -> Option<Change> {
        use cio_api::CallKind;
        let anonymous = call.anonymous_id.clone().filter(|a| !a.is_empty());
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
            KeptEvent {
                kind,
                name: name.unwrap_or_default().into(),
                id: call.message_id.clone().map(Into::into),
                timestamp: timestamp.unwrap_or_else(now),
                data,
            }
        };
        let Some(user_id) = call.user_id.clone() else {
            let anonymous = anonymous?;
            return match kind {
                CallKind::Track => Some(event(EventKind::Event, call.event.clone())),
                CallKind::Page => Some(event(EventKind::Page, call.name.clone())),
                CallKind::Screen => Some(event(EventKind::Screen, call.name.clone())),
                _ => None,
            }
            .map(|e| Change::Anonymous(anonymous, e));
        };
        let user = PersonIdentifier::Id(user_id);
        let event = |kind: EventKind, name: Option<String>| {
            Some(Change::Event(user.clone(), event(kind, name)))
        };
        match kind {
            CallKind::Identify => {
                let mut attributes = call.traits.clone().unwrap_or_default();
                if let Some(a) = anonymous {
                    attributes.insert("anonymous_id".into(), Value::String(a));
                }
                Some(Change::Op(Operation::Identify(cio_api::Identify {
                    identifier: user.clone(),
                    attributes,
                    relationships: Vec::new(),
                    timestamp,
                })))
            }
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

/// How a read names a person: the App API's `id_type` (`id`, `email`, `phone` or `cio_id`).
#[derive(Clone, Debug)]
pub(crate) struct Lookup(PersonIdentifier);

impl Lookup {
    /// `value` read as `id_type` says (default `id`); `None` for an unknown `id_type`.
    pub(crate) fn new(value: &str, id_type: Option<&str>) -> Option<Lookup> {
        PersonIdentifier::from_key(id_type.unwrap_or("id"), value.to_owned()).map(Lookup)
    }
}

/// The key an identifier is indexed under: an email in lower case (Customer.io compares emails
/// without regard to case), anything else as it is.
fn index_key(who: &PersonIdentifier) -> String {
    match who {
        PersonIdentifier::Email(e) => e.to_lowercase(),
        other => other.value().to_owned(),
    }
}

/// An attribute with the time of the update that set it. A removed attribute stays as `null`
/// with the time of its removal (a tombstone, never shown), so that an older update does not
/// bring it back.
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

impl KeptDevice {
    fn bytes(&self) -> usize {
        DEVICE_OVERHEAD + self.token.len() + map_bytes(&self.attributes)
    }
}

/// An object's key: its type and id.
type ObjectKey = (String, String);

/// Attributes kept per person or object: Customer.io's limit per person. Past it, new
/// attributes are not kept (those already there still change).
const MAX_ATTRIBUTES: usize = 300;
/// Devices kept per person; past it the oldest added goes.
const MAX_DEVICES: usize = 100;
/// Manual segments kept per person; past it, more are not recorded.
const MAX_SEGMENTS: usize = 1_000;
/// Relationships kept per person; past it, more are not recorded.
const MAX_RELATIONSHIPS: usize = 1_000;

/// Bytes counted for a device besides its token and attributes.
const DEVICE_OVERHEAD: usize = 96;
/// Bytes counted for a relationship (both sides) besides the object's key.
const RELATIONSHIP_OVERHEAD: usize = 96;

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
    /// What this person is counted as in the byte budget ([`Person::recount`]).
    bytes: usize,
}

impl Person {
    /// Everything this person is counted as, from scratch.
    fn recount(&self) -> usize {
        PERSON_OVERHEAD
            + [&self.id, &self.email, &self.phone]
                .into_iter()
                .map(|v| v.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + self.attributes.values().map(|a| a.bytes).sum::<usize>()
            + self.events.iter().map(KeptEvent::bytes).sum::<usize>()
            + self.devices.iter().map(KeptDevice::bytes).sum::<usize>()
            + self
                .relationships
                .iter()
                .map(|(t, id)| RELATIONSHIP_OVERHEAD + t.len() + id.len())
                .sum::<usize>()
            + self.segments.len() * 8
    }
}

/// The events of someone not identified yet, newest at the back.
struct Anonymous {
    events: VecDeque<KeptEvent>,
    bytes: usize,
}

impl Anonymous {
    fn recount(&self, id: &str) -> usize {
        ANONYMOUS_OVERHEAD + id.len() + self.events.iter().map(KeptEvent::bytes).sum::<usize>()
    }
}

/// Bytes counted for an anonymous id besides its events.
const ANONYMOUS_OVERHEAD: usize = 160;

struct Object {
    cio_object_id: u64,
    attributes: Map<String, Value>,
    people: Vec<u64>,
    bytes: usize,
}

impl Object {
    fn recount(&self, key: &ObjectKey) -> usize {
        OBJECT_OVERHEAD + key.0.len() + key.1.len() + map_bytes(&self.attributes)
    }
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
    pub(crate) anonymous: u64,
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
    /// Events by anonymous id, until an identify carrying that id takes them.
    anonymous: LruCache<String, Anonymous>,
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
        Value::Object(m) => map_bytes(m),
    }
}

fn map_bytes(m: &Map<String, Value>) -> usize {
    32 + m
        .iter()
        .map(|(k, v)| 48 + k.len() + value_bytes(v))
        .sum::<usize>()
}

/// `""` and `null` remove an attribute.
fn removes(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
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

/// What a read takes out of the store under its lock; turned into JSON after the lock is let
/// go (parsing kept events' data is the slow part).
struct PersonView {
    customer: Value,
    identifiers: Value,
    id: Option<String>,
    events: Vec<KeptEvent>,
}

impl PersonView {
    fn of(p: &Person, events: Vec<KeptEvent>) -> PersonView {
        PersonView {
            customer: customer_json(p),
            identifiers: identifiers_json(p),
            id: p.id.clone(),
            events,
        }
    }

    fn activities(&self) -> Vec<Value> {
        self.events
            .iter()
            .map(|e| activity_json(e, &self.id, &self.identifiers))
            .collect()
    }
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
            anonymous: inner.anonymous.len() as u64,
            bytes: inner.bytes as u64,
            ..inner.counts
        }
    }

    pub(crate) fn reset(&self) {
        let mut inner = lock(&self.inner);
        let limits = inner.limits;
        *inner = Inner::new(limits);
    }

    /// The person a read names, if kept and not suppressed (a use, for the LRU), with what
    /// `pick` takes of them.
    fn read<T>(&self, who: &Lookup, pick: impl FnOnce(&Person) -> T) -> Option<T> {
        let mut inner = lock(&self.inner);
        let key = inner.find_lookup(who)?;
        let p = inner.people.get(&key)?;
        (!p.suppressed).then(|| pick(p))
    }

    /// The App API's view of a person (`getAttributes`): `None` when unknown or suppressed.
    pub(crate) fn customer(&self, who: &Lookup) -> Option<Value> {
        self.read(who, customer_json)
    }

    /// `getCustomersByEmail`: the identifiers of the people with this email.
    pub(crate) fn by_email(&self, email: &str) -> Vec<Value> {
        let who = Lookup(PersonIdentifier::Email(email.to_owned()));
        self.read(&who, identifiers_json).into_iter().collect()
    }

    /// `getCustomerSegments`: `None` when the person is unknown or suppressed.
    pub(crate) fn segments(&self, who: &Lookup) -> Option<Vec<u64>> {
        self.read(who, |p| p.segments.clone())
    }

    /// `getCustomerActivities`: the person's kept events, newest first, filtered by `type` and
    /// `name` (empty means any), from the `start` cursor (an offset), at most `limit`; with the
    /// next cursor.
    pub(crate) fn activities(
        &self,
        who: &Lookup,
        kind: Option<&str>,
        name: Option<&str>,
        start: usize,
        limit: usize,
    ) -> Option<(Vec<Value>, Option<usize>)> {
        let kind = kind.filter(|k| !k.is_empty());
        let name = name.filter(|n| !n.is_empty());
        let (view, more) = self.read(who, |p| {
            let mut matching = p
                .events
                .iter()
                .rev()
                .filter(|e| kind.is_none_or(|k| k == e.kind.as_str()))
                .filter(|e| name.is_none_or(|n| n == &*e.name))
                .skip(start);
            let page: Vec<KeptEvent> = matching.by_ref().take(limit).cloned().collect();
            let more = matching.next().is_some();
            (PersonView::of(p, page), more)
        })?;
        let page = view.activities();
        let next = more.then_some(start + page.len());
        Some((page, next))
    }

    /// Everything kept of a person, suppressed or not, for `GET /__mock/people/{id}` (not a
    /// use: looking does not keep anyone).
    pub(crate) fn person(&self, who: &Lookup) -> Option<Value> {
        let (view, extra) = {
            let inner = lock(&self.inner);
            let key = inner.find_lookup(who)?;
            let p = inner.people.peek(&key)?;
            let extra = json!({
                "suppressed": p.suppressed,
                "created": p.created,
                "updated": p.updated,
                "segments": p.segments,
                "relationships": p.relationships.iter()
                    .map(|(t, id)| json!({"object_type_id": t, "object_id": id}))
                    .collect::<Vec<_>>(),
            });
            (
                PersonView::of(p, p.events.iter().rev().cloned().collect()),
                extra,
            )
        };
        let mut v = view.customer.clone();
        if let (Value::Object(m), Value::Object(extra)) = (&mut v, extra) {
            m.extend(extra);
            m.insert("events".into(), Value::Array(view.activities()));
        }
        Some(v)
    }

    /// Everything kept of an object, for `GET /__mock/objects/{type}/{id}`.
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
    for (k, a) in p.attributes.iter().filter(|(_, a)| !a.value.is_null()) {
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
            anonymous: LruCache::unbounded(),
            next_cio_id: FIRST_CIO_ID,
            bytes: 0,
            counts: StoreCounts::default(),
        }
    }

    fn find(&self, who: &PersonIdentifier) -> Option<u64> {
        match who {
            PersonIdentifier::Id(v) => self.by_id.get(v).copied(),
            PersonIdentifier::Email(v) => self.by_email.get(&v.to_lowercase()).copied(),
            PersonIdentifier::Phone(v) => self.by_phone.get(v).copied(),
            PersonIdentifier::CioId(v) => u64::from_str_radix(v, 16)
                .ok()
                .filter(|k| self.people.contains(k)),
        }
    }

    fn find_lookup(&self, who: &Lookup) -> Option<u64> {
        self.find(&who.0)
    }

    /// The index of one kind of identifier (`None` for `cio_id`, which is the key itself).
    fn index_of(&mut self, who: &PersonIdentifier) -> Option<&mut HashMap<String, u64>> {
        match who {
            PersonIdentifier::Id(_) => Some(&mut self.by_id),
            PersonIdentifier::Email(_) => Some(&mut self.by_email),
            PersonIdentifier::Phone(_) => Some(&mut self.by_phone),
            PersonIdentifier::CioId(_) => None,
        }
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
            bytes: 0,
        };
        let value = who.value().to_owned();
        match who {
            PersonIdentifier::Id(_) => p.id = Some(value.clone()),
            PersonIdentifier::Email(_) => p.email = Some(value.clone()),
            PersonIdentifier::Phone(_) => p.phone = Some(value.clone()),
            PersonIdentifier::CioId(_) => {}
        }
        let indexed = index_key(who);
        if let Some(index) = self.index_of(who) {
            index.insert(indexed, key);
        }
        p.bytes = p.recount();
        self.bytes += p.bytes;
        self.people.put(key, p);
        Some(key)
    }

    /// Changes a kept person (a use, for the LRU) and counts their bytes again.
    fn touch<R>(&mut self, key: u64, change: impl FnOnce(&mut Person) -> R) -> Option<R> {
        let p = self.people.get_mut(&key)?;
        let before = p.bytes;
        let r = change(p);
        p.bytes = p.recount();
        self.bytes = (self.bytes + p.bytes).saturating_sub(before);
        Some(r)
    }

    /// Changes a kept object (a use when `used`) and counts its bytes again.
    fn touch_object(&mut self, key: &ObjectKey, used: bool, change: impl FnOnce(&mut Object)) {
        let o = if used {
            self.objects.get_mut(key)
        } else {
            self.objects.peek_mut(key)
        };
        let Some(o) = o else { return };
        let before = o.bytes;
        change(o);
        o.bytes = o.recount(key);
        self.bytes = (self.bytes + o.bytes).saturating_sub(before);
    }

    /// Takes a person out of the store (deleted, merged away or evicted), and out of the
    /// objects they were related to.
    fn remove(&mut self, key: u64) -> Option<Person> {
        let p = self.people.pop(&key)?;
        for (map, v) in [
            (&mut self.by_id, p.id.clone()),
            (
                &mut self.by_email,
                p.email.as_deref().map(str::to_lowercase),
            ),
            (&mut self.by_phone, p.phone.clone()),
        ] {
            if let Some(v) = v {
                if map.get(&v) == Some(&key) {
                    map.remove(&v);
                }
            }
        }
        for okey in &p.relationships {
            self.touch_object(okey, false, |o| o.people.retain(|k| *k != key));
        }
        self.bytes = self.bytes.saturating_sub(p.bytes);
        Some(p)
    }

    /// Takes an object out of the store, and out of the people related to it.
    fn remove_object(&mut self, okey: &ObjectKey) -> Option<Object> {
        let o = self.objects.pop(okey)?;
        self.bytes = self.bytes.saturating_sub(o.bytes);
        for k in &o.people {
            if let Some(p) = self.people.peek_mut(k) {
                let before = p.bytes;
                p.relationships.retain(|r| r != okey);
                p.bytes = p.recount();
                self.bytes = (self.bytes + p.bytes).saturating_sub(before);
            }
        }
        Some(o)
    }

    fn apply(&mut self, change: Change, now: i64) {
        match change {
            Change::Event(who, event) => self.event(&who, event, now),
            Change::Anonymous(id, event) => self.anonymous_event(id, event),
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

    /// The person `who` names, created if they may be, unless suppressed.
    fn writable_person(&mut self, who: &PersonIdentifier, create: bool, now: i64) -> Option<u64> {
        self.person(who, create, now).and_then(|k| self.writable(k))
    }

    /// The hot path (nearly every entry is an event): counted by difference, not from scratch.
    fn event(&mut self, who: &PersonIdentifier, event: KeptEvent, now: i64) {
        let Some(key) = self.writable_person(who, true, now) else {
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

    /// Keeps an event for an anonymous id (the newest `events_per_person`).
    fn anonymous_event(&mut self, id: String, event: KeptEvent) {
        let cap = self.limits.events_per_person;
        if !self.anonymous.contains(&id) {
            let a = Anonymous {
                events: VecDeque::new(),
                bytes: ANONYMOUS_OVERHEAD + id.len(),
            };
            self.bytes += a.bytes;
            self.anonymous.put(id.clone(), a);
        }
        let Some(a) = self.anonymous.get_mut(&id) else {
            return;
        };
        let before = a.bytes;
        a.events.push_back(event);
        let mut evicted = 0;
        while a.events.len() > cap {
            a.events.pop_front();
            evicted += 1;
        }
        a.bytes = a.recount(&id);
        self.bytes = (self.bytes + a.bytes).saturating_sub(before);
        self.counts.evicted_events += evicted;
    }

    /// The events kept for `anonymous_id` become the person's (interleaved by time), as
    /// Customer.io links them when a person is identified with that anonymous id.
    fn adopt_anonymous(&mut self, key: u64, anonymous_id: &str) {
        let Some(a) = self.anonymous.pop(anonymous_id) else {
            return;
        };
        self.bytes = self.bytes.saturating_sub(a.bytes);
        let cap = self.limits.events_per_person;
        let dropped = self.touch(key, |p| {
            let mut events: Vec<KeptEvent> = p.events.drain(..).chain(a.events).collect();
            events.sort_by_key(|e| e.timestamp);
            let dropped = events.len().saturating_sub(cap);
            p.events = events.into_iter().skip(dropped).collect();
            dropped as u64
        });
        self.counts.evicted_events += dropped.unwrap_or(0);
    }

    fn op(&mut self, op: Operation, now: i64) {
        match op {
            Operation::Identify(i) => {
                let update_only = i.attributes.get("_update") == Some(&Value::Bool(true));
                let key = match self.find(&i.identifier) {
                    Some(key) => Some(key),
                    None => match self.named_in(&i.identifier, &i.attributes) {
                        // New in the path, but the body names someone: that person, who gets
                        // the path's identifier too.
                        Some(key) => {
                            self.set_identifier(key, i.identifier.clone(), false);
                            Some(key)
                        }
                        None => self.person(&i.identifier, !update_only, now),
                    },
                };
                let Some(key) = key.and_then(|k| self.writable(k)) else {
                    return;
                };
                let at = i.timestamp.unwrap_or(now);
                let anonymous_id = match i.attributes.get("anonymous_id") {
                    Some(Value::String(a)) if !a.is_empty() => Some(a.clone()),
                    _ => None,
                };
                self.set_attributes(key, &i.identifier, i.attributes, at, now);
                if let Some(a) = anonymous_id {
                    self.adopt_anonymous(key, &a);
                }
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
                    self.touch(key, |p| {
                        p.suppressed = true;
                        p.updated = now;
                    });
                }
            }
            Operation::Unsuppress(who) => {
                if let Some(key) = self.find(&who) {
                    self.touch(key, |p| {
                        p.suppressed = false;
                        p.updated = now;
                    });
                }
            }
            Operation::AddDevice(d) => {
                let Some(key) = self.writable_person(&d.identifier, true, now) else {
                    return;
                };
                let device = KeptDevice {
                    token: d.device.token,
                    platform: d.device.platform,
                    last_used: d.device.last_used,
                    attributes: d.device.attributes,
                };
                self.touch(key, |p| {
                    match p.devices.iter().position(|x| x.token == device.token) {
                        Some(i) => p.devices[i] = device,
                        None => {
                            if p.devices.len() >= MAX_DEVICES {
                                p.devices.remove(0);
                            }
                            p.devices.push(device);
                        }
                    }
                    p.updated = now;
                });
            }
            Operation::DeleteDevice(d) => {
                if let Some(key) = self.find(&d.identifier) {
                    self.touch(key, |p| {
                        p.devices.retain(|x| x.token != d.token);
                        p.updated = now;
                    });
                }
            }
            Operation::Merge(m) => self.merge(&m.primary, &m.secondary, now),
            Operation::AddRelationships(r) => {
                if let Some(key) = self.writable_person(&r.identifier, true, now) {
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
                self.object(&okey);
                self.touch_object(&okey, true, |obj| {
                    for (k, v) in o.attributes {
                        if removes(&v) {
                            obj.attributes.remove(&k);
                        } else if obj.attributes.len() < MAX_ATTRIBUTES
                            || obj.attributes.contains_key(&k)
                        {
                            obj.attributes.insert(k, v);
                        }
                    }
                });
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
                    self.remove_object(&okey);
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
                    self.touch(key, |p| {
                        match (s.change, p.segments.binary_search(&s.segment_id)) {
                            (SegmentChange::Add, Err(i)) if p.segments.len() < MAX_SEGMENTS => {
                                p.segments.insert(i, s.segment_id)
                            }
                            (SegmentChange::Remove, Ok(i)) => {
                                p.segments.remove(i);
                            }
                            _ => {}
                        }
                    });
                }
            }
            // Made into `Change::Event` (or nothing) by `Change::of`.
            Operation::Event(_) | Operation::DeliveryEvent(_) | Operation::FormSubmit(_) => {}
        }
    }

    /// The person an identify's attributes name by another identifier (`id`, `email`,
    /// `phone`) when its own identifier is new. Never for a `cio_id`, which must exist.
    fn named_in(&self, addressed_by: &PersonIdentifier, attributes: &Attributes) -> Option<u64> {
        if matches!(addressed_by, PersonIdentifier::CioId(_)) {
            return None;
        }
        ["id", "email", "phone"]
            .into_iter()
            .filter(|k| *k != addressed_by.key())
            .find_map(|k| {
                let v = match attributes.get(k)? {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                self.find(&PersonIdentifier::from_key(k, v)?)
            })
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
        let mut identifiers: Vec<(PersonIdentifier, bool)> = Vec::new();
        self.touch(key, |p| {
            for (k, v) in attributes {
                match k.as_str() {
                    "_update" | "_timestamp" | "cio_id" => continue,
                    "id" | "email" | "phone" => {
                        if addressed_by.key() == k {
                            continue;
                        }
                        let (value, remove) = match &v {
                            Value::String(s) if !s.is_empty() => (s.clone(), false),
                            Value::Number(n) => (n.to_string(), false),
                            v if removes(v) => (String::new(), true),
                            _ => continue,
                        };
                        // An id is never removed, only changed.
                        if remove && k == "id" {
                            continue;
                        }
                        if let Some(who) = PersonIdentifier::from_key(&k, value) {
                            identifiers.push((who, remove));
                        }
                        continue;
                    }
                    _ => {}
                }
                match p.attributes.get(&k) {
                    Some(old) if old.at > at => continue,
                    None if p.attributes.len() >= MAX_ATTRIBUTES => continue,
                    _ => {}
                }
                let value = if removes(&v) { Value::Null } else { v };
                let bytes = 48 + k.len() + value_bytes(&value);
                p.attributes.insert(k, Attr { value, at, bytes });
            }
            p.updated = now;
        });
        for (who, remove) in identifiers {
            self.set_identifier(key, who, remove);
        }
    }

    /// Gives a person a new id, email or phone (the old one no longer finds them), or removes
    /// their email or phone. One another person holds is not taken: Customer.io refuses to
    /// give two people one identifier.
    fn set_identifier(&mut self, key: u64, who: PersonIdentifier, remove: bool) {
        let value = who.value().to_owned();
        let indexed = index_key(&who);
        let Some(index) = self.index_of(&who) else {
            return;
        };
        if !remove && index.get(&indexed).is_some_and(|k| *k != key) {
            return;
        }
        let Some(old) = self.touch(key, |p| {
            let slot = match who {
                PersonIdentifier::Id(_) => &mut p.id,
                PersonIdentifier::Email(_) => &mut p.email,
                _ => &mut p.phone,
            };
            if remove {
                slot.take()
            } else {
                slot.replace(value.clone())
            }
        }) else {
            return;
        };
        let Some(index) = self.index_of(&who) else {
            return;
        };
        if let Some(old) = old {
            let old = match who {
                PersonIdentifier::Email(_) => old.to_lowercase(),
                _ => old,
            };
            if index.get(&old) == Some(&key) {
                index.remove(&old);
            }
        }
        if !remove {
            index.insert(indexed, key);
        }
    }

    fn merge(&mut self, primary: &PersonIdentifier, secondary: &PersonIdentifier, now: i64) {
        let (Some(pk), Some(sk)) = (self.find(primary), self.find(secondary)) else {
            return;
        };
        if pk == sk || !self.people.contains(&pk) {
            return;
        }
        // Out of the store first: its identifiers and relationships are free for the primary.
        let Some(s) = self.remove(sk) else { return };
        let cap = self.limits.events_per_person;
        let mut moved = Vec::new();
        let mut relate = Vec::new();
        let evicted = self.touch(pk, |p| {
            for (k, a) in s.attributes {
                if !a.value.is_null()
                    && !p.attributes.contains_key(&k)
                    && p.attributes.len() < MAX_ATTRIBUTES
                {
                    p.attributes.insert(k, a);
                }
            }
            for (theirs, make) in [
                (s.id, PersonIdentifier::Id as fn(String) -> PersonIdentifier),
                (s.email, PersonIdentifier::Email),
                (s.phone, PersonIdentifier::Phone),
            ] {
                if let Some(v) = theirs {
                    moved.push(make(v));
                }
            }
            let mut events: Vec<KeptEvent> = p.events.drain(..).chain(s.events).collect();
            events.sort_by_key(|e| e.timestamp);
            let dropped = events.len().saturating_sub(cap);
            p.events = events.into_iter().skip(dropped).collect();
            for d in s.devices {
                if !p.devices.iter().any(|x| x.token == d.token) && p.devices.len() < MAX_DEVICES {
                    p.devices.push(d);
                }
            }
            for seg in s.segments {
                if let Err(i) = p.segments.binary_search(&seg) {
                    if p.segments.len() < MAX_SEGMENTS {
                        p.segments.insert(i, seg);
                    }
                }
            }
            relate = s.relationships;
            p.updated = now;
            dropped as u64
        });
        self.counts.evicted_events += evicted.unwrap_or(0);
        for (object_type_id, object_id) in relate {
            let o = ObjectIdentifier::Object {
                object_type_id,
                object_id,
            };
            self.relate(pk, &o, true);
        }
        // The identifiers the primary lacks (the set_identifier call keeps one it has).
        for who in moved {
            let has = self.people.peek(&pk).is_some_and(|p| match &who {
                PersonIdentifier::Id(_) => p.id.is_some(),
                PersonIdentifier::Email(_) => p.email.is_some(),
                _ => p.phone.is_some(),
            });
            if !has {
                self.set_identifier(pk, who, false);
            }
        }
    }

    /// Makes sure the object is kept (created when new).
    fn object(&mut self, okey: &ObjectKey) {
        if self.objects.contains(okey) {
            return;
        }
        let cio_object_id = self.next_cio_id;
        self.next_cio_id += 1;
        let mut o = Object {
            cio_object_id,
            attributes: Map::new(),
            people: Vec::new(),
            bytes: 0,
        };
        o.bytes = o.recount(okey);
        self.bytes += o.bytes;
        self.objects.put(okey.clone(), o);
    }

    /// Relates (or unrelates) a person and an object, on both sides.
    fn relate(&mut self, key: u64, o: &ObjectIdentifier, add: bool) {
        let Some(okey) = object_key(o) else { return };
        if add {
            let full = self
                .people
                .peek(&key)
                .is_none_or(|p| p.relationships.len() >= MAX_RELATIONSHIPS);
            if full {
                return;
            }
            self.object(&okey);
        }
        let related = self.touch(key, |p| {
            match (add, p.relationships.iter().position(|r| *r == okey)) {
                (true, None) => p.relationships.push(okey.clone()),
                (false, Some(i)) => {
                    p.relationships.swap_remove(i);
                }
                _ => {}
            }
        });
        if related.is_some() {
            self.touch_object(&okey, true, |obj| {
                match (add, obj.people.iter().position(|k| *k == key)) {
                    (true, None) => obj.people.push(key),
                    (false, Some(i)) => {
                        obj.people.swap_remove(i);
                    }
                    _ => {}
                }
            });
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
                if let Some(key) = self.writable_person(who, add, now) {
                    self.relate(key, o, add);
                }
            }
        }
    }

    /// Evicts the least recently used objects and people until every cap holds.
    fn enforce(&mut self) {
        while self.objects.len() > self.limits.objects {
            let Some(okey) = self.objects.peek_lru().map(|(k, _)| k.clone()) else {
                break;
            };
            if self.remove_object(&okey).is_some() {
                self.counts.evicted_objects += 1;
            }
        }
        // Anonymous ids: as many as people, and the first to go for bytes.
        while self.anonymous.len() > self.limits.people
            || (self.bytes > self.limits.bytes && !self.anonymous.is_empty())
        {
            let Some((_, a)) = self.anonymous.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(a.bytes);
            self.counts.evicted_events += a.events.len() as u64;
        }
        while self.people.len() > self.limits.people
            || (self.bytes > self.limits.bytes && self.people.len() > 1)
        {
            let Some(key) = self.people.peek_lru().map(|(k, _)| *k) else {
                break;
            };
            if let Some(p) = self.remove(key) {
                self.counts.evicted_people += 1;
                self.counts.evicted_events += p.events.len() as u64;
            }
        }
        while self.bytes > self.limits.bytes && !self.objects.is_empty() {
            let Some(okey) = self.objects.peek_lru().map(|(k, _)| k.clone()) else {
                break;
            };
            if self.remove_object(&okey).is_some() {
                self.counts.evicted_objects += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What must hold after every change: the byte total is the sum of what each person and
    /// object counts as from scratch; every index entry names a kept person holding that
    /// identifier, and every kept identifier is indexed to its holder; relationships are the
    /// same on both sides; the caps hold.
    fn audit(s: &Inner) {
        let people: usize = s.people.iter().map(|(_, p)| p.recount()).sum();
        let objects: usize = s.objects.iter().map(|(k, o)| o.recount(k)).sum();
        let anonymous: usize = s.anonymous.iter().map(|(k, a)| a.recount(k)).sum();
        for (k, a) in s.anonymous.iter() {
            assert_eq!(a.bytes, a.recount(k), "anonymous {k} miscounted");
            assert!(a.events.len() <= s.limits.events_per_person);
        }
        assert!(s.anonymous.len() <= s.limits.people);
        assert_eq!(
            s.bytes,
            people + objects + anonymous,
            "the byte total drifted"
        );
        for (_, p) in s.people.iter() {
            assert_eq!(p.bytes, p.recount(), "person {} miscounted", p.cio_id);
            let email = p.email.as_deref().map(str::to_lowercase);
            for (index, v) in [
                (&s.by_id, &p.id),
                (&s.by_email, &email),
                (&s.by_phone, &p.phone),
            ] {
                if let Some(v) = v {
                    assert_eq!(
                        index.get(v),
                        Some(&p.cio_id),
                        "{v} not indexed to its holder"
                    );
                }
            }
            for r in &p.relationships {
                let o = s.objects.peek(r).expect("a relationship to a kept object");
                assert!(o.people.contains(&p.cio_id), "one-sided relationship");
            }
            assert!(p.events.len() <= s.limits.events_per_person);
            assert!(p.attributes.len() <= MAX_ATTRIBUTES);
        }
        for (index, field) in [(&s.by_id, 0), (&s.by_email, 1), (&s.by_phone, 2)] {
            for (v, k) in index {
                let p = s.people.peek(k).expect("an index entry of a kept person");
                let email = p.email.as_deref().map(str::to_lowercase);
                let held = [&p.id, &email, &p.phone][field];
                assert_eq!(held.as_deref(), Some(v.as_str()), "stale index entry {v}");
            }
        }
        for (k, o) in s.objects.iter() {
            for key in &o.people {
                let p = s
                    .people
                    .peek(key)
                    .expect("an object related to a kept person");
                assert!(p.relationships.contains(k), "one-sided relationship");
            }
        }
        assert!(s.people.len() <= s.limits.people);
        assert!(s.objects.len() <= s.limits.objects);
        assert!(s.bytes <= s.limits.bytes || s.people.len() <= 1);
    }

    fn entry(text: String) -> Change {
        Change::of_entry(&text).unwrap_or_else(|| panic!("not an entry: {text}"))
    }

    /// Thousands of changes of every kind over a few people and objects, with caps small enough
    /// that every eviction path runs: the audit holds after each one.
    #[test]
    fn every_change_keeps_the_counts_and_indexes_true() {
        let limits = StoreLimits {
            people: 6,
            events_per_person: 3,
            objects: 3,
            bytes: 12_000,
            event_ids: 64,
        };
        let mut s = Inner::new(limits);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for step in 0..5_000 {
            let a = next(9);
            let b = next(9);
            let o = next(5);
            let pad = "p".repeat(next(400) as usize);
            let text = match next(16) {
                0 | 1 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"identify","attributes":{{"email":"e{b}@x","plan":"{pad}","n":{step}}},"timestamp":{}}}"#,
                    next(100)
                ),
                2 => format!(
                    r#"{{"type":"person","identifiers":{{"email":"e{a}@x"}},"action":"identify","attributes":{{"id":"u{b}","plan":null,"anonymous_id":"anon{o}"}}}}"#
                ),
                3 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"event","name":"e","id":"{step}","attributes":{{"pad":"{pad}"}}}}"#
                ),
                4 => format!(
                    r#"{{"type":"person","anonymous_id":"anon{o}","action":"event","name":"e","id":"{step}","attributes":{{"pad":"{pad}"}}}}"#
                ),
                5 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"add_device","device":{{"token":"t{b}","platform":"ios","attributes":{{"pad":"{pad}"}}}}}}"#
                ),
                6 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"delete_device","device":{{"token":"t{b}"}}}}"#
                ),
                7 => format!(
                    r#"{{"type":"person","primary":{{"id":"u{a}"}},"secondary":{{"id":"u{b}"}},"action":"merge"}}"#
                ),
                8 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"add_relationships","cio_relationships":[{{"identifiers":{{"object_type_id":"1","object_id":"o{o}"}}}}]}}"#
                ),
                9 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"delete_relationships","cio_relationships":[{{"identifiers":{{"object_type_id":"1","object_id":"o{o}"}}}}]}}"#
                ),
                10 => format!(
                    r#"{{"type":"object","identifiers":{{"object_type_id":"1","object_id":"o{o}"}},"action":"identify","attributes":{{"pad":"{pad}"}},"cio_relationships":[{{"identifiers":{{"id":"u{a}"}}}}]}}"#
                ),
                11 => format!(
                    r#"{{"type":"object","identifiers":{{"object_type_id":"1","object_id":"o{o}"}},"action":"delete"}}"#
                ),
                12 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"delete"}}"#
                ),
                13 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"suppress"}}"#
                ),
                14 => format!(
                    r#"{{"type":"person","identifiers":{{"id":"u{a}"}},"action":"unsuppress"}}"#
                ),
                _ => {
                    let change = if next(2) == 0 {
                        SegmentChange::Add
                    } else {
                        SegmentChange::Remove
                    };
                    let op = Operation::SegmentMembership(cio_api::SegmentMembership {
                        segment_id: b,
                        change,
                        id_type: None,
                        ids: vec![format!("u{a}")],
                    });
                    s.apply(Change::Op(op), step);
                    s.enforce();
                    audit(&s);
                    continue;
                }
            };
            s.apply(entry(text), step);
            s.enforce();
            audit(&s);
        }
        assert!(
            s.counts.evicted_people > 0
                && s.counts.evicted_objects > 0
                && s.counts.evicted_events > 0
        );
        // Everything deleted: nothing is counted any more.
        let keys: Vec<u64> = s.people.iter().map(|(k, _)| *k).collect();
        for k in keys {
            s.remove(k);
        }
        let objects: Vec<ObjectKey> = s.objects.iter().map(|(k, _)| k.clone()).collect();
        for k in objects {
            s.remove_object(&k);
        }
        while let Some((_, a)) = s.anonymous.pop_lru() {
            s.bytes -= a.bytes;
        }
        assert_eq!(s.bytes, 0);
        assert!(s.by_id.is_empty() && s.by_email.is_empty());
    }

    #[test]
    fn a_removed_attribute_stays_removed_against_older_updates() {
        let mut s = Inner::new(StoreLimits::default());
        for (attrs, ts) in [
            (r#"{"plan":"pro"}"#, 100),
            (r#"{"plan":null}"#, 200),
            (r#"{"plan":"old"}"#, 150),
        ] {
            s.apply(entry(format!(r#"{{"type":"person","identifiers":{{"id":"1"}},"action":"identify","attributes":{attrs},"timestamp":{ts}}}"#)), 0);
        }
        let key = s.find(&PersonIdentifier::Id("1".into())).unwrap();
        let c = customer_json(s.people.peek(&key).unwrap());
        assert!(c["attributes"].get("plan").is_none(), "{c}");
        s.apply(entry(r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"plan":"new"},"timestamp":300}"#.into()), 0);
        let c = customer_json(s.people.peek(&key).unwrap());
        assert_eq!(c["attributes"]["plan"], "new");
    }

    #[test]
    fn an_identifier_another_person_holds_is_not_taken() {
        let mut s = Inner::new(StoreLimits::default());
        // a and b both exist; b holds the email; an identify of a naming it does not take it
        // (Customer.io: "an Attribute Update Failure for the identifier in the payload").
        s.apply(entry(r#"{"type":"person","identifiers":{"id":"a"},"action":"identify","attributes":{"plan":"x"}}"#.into()), 0);
        s.apply(entry(r#"{"type":"person","identifiers":{"id":"b"},"action":"identify","attributes":{"email":"x@example.com"}}"#.into()), 0);
        s.apply(entry(r#"{"type":"person","identifiers":{"id":"a"},"action":"identify","attributes":{"email":"X@example.com"}}"#.into()), 0);
        let b = s.find(&PersonIdentifier::Id("b".into()));
        assert_eq!(s.find(&PersonIdentifier::Email("x@example.com".into())), b);
        let a = s.find(&PersonIdentifier::Id("a".into())).unwrap();
        assert_eq!(s.people.peek(&a).unwrap().email, None);
        // An email removed with "" frees it.
        s.apply(entry(r#"{"type":"person","identifiers":{"id":"b"},"action":"identify","attributes":{"email":""}}"#.into()), 0);
        assert_eq!(
            s.find(&PersonIdentifier::Email("x@example.com".into())),
            None
        );
        audit(&s);
    }
}
