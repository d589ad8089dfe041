//! [`Operation`]: every Track write, in one type.
//!
//! The canonical serialized form of an operation is the Track v2 entry JSON: one line of it is
//! what the pipeline and `cio pipe` read, and what [`crate::BatchClient`] sends inside
//! `{"batch":[...]}`. Every operation that has a v1 endpoint also maps to that exact v1 request
//! ([`Operation::to_v1`]), as the official Node SDK sends it.
//!
//! Two Track v1 writes have no v2 form and are represented by extra entry types of our own, so they
//! fit the same line format: `{"type":"segment","action":"add_customers"|"remove_customers",
//! "segment_id":7,"id_type":"id","ids":[...]}` and `{"type":"form","action":"submit",
//! "form_id":"signup","data":{...}}`. Only [`crate::TrackClient`] sends them;
//! [`crate::BatchClient`] answers them with [`crate::Error::Unsupported`] before sending anything.
//!
//! ```
//! use cio_api::Operation;
//! let line = r#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"signup","id":"01HZY3J5K3V1X0SJQ2Q0CE7A9N","attributes":{"plan":"pro"}}"#;
//! let op = Operation::from_json(line.as_bytes()).unwrap();
//! assert_eq!(op.action_name(), "event");
//! let v1 = op.to_v1().unwrap();
//! assert_eq!(v1.method, http::Method::POST);
//! assert_eq!(v1.path, "/customers/42/events");
//! ```

pub(crate) mod v1;
mod wire;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::identifier::{ObjectIdentifier, PersonIdentifier, Relationship};
use crate::Attributes;

pub use v1::V1Request;
pub use wire::DecodeError;

/// One Track write: a person, object or delivery entry of the v2 API, or one of the two v1-only
/// writes (segment membership, form submission).
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// Create or update a person (`PUT /customers/{id}`; v2 `identify`).
    Identify(Identify),
    /// Delete a person.
    Delete(PersonIdentifier),
    /// An event, page view or screen view, for a person or anonymous.
    Event(Event),
    /// Relate a person to objects (v2 only).
    AddRelationships(PersonRelationships),
    /// Remove relationships between a person and objects (v2 only).
    DeleteRelationships(PersonRelationships),
    /// Add or update a device.
    AddDevice(AddDevice),
    /// Delete a device.
    DeleteDevice(DeleteDevice),
    /// Merge a secondary person into a primary one.
    Merge(Merge),
    /// Suppress a person (delete and never re-create them).
    Suppress(PersonIdentifier),
    /// Stop suppressing a person.
    Unsuppress(PersonIdentifier),
    /// Create or update an object (v2 only).
    ObjectIdentify(ObjectIdentify),
    /// Delete an object (v2 only).
    ObjectDelete(ObjectIdentifier),
    /// Relate an object to people (v2 only).
    ObjectAddRelationships(ObjectRelationships),
    /// Remove relationships between an object and people (v2 only).
    ObjectDeleteRelationships(ObjectRelationships),
    /// A delivery metric: opened, converted, delivered (v1 `/metrics` or `/push/events`).
    DeliveryEvent(DeliveryEvent),
    /// Add people to or remove them from a manual segment (v1 only).
    SegmentMembership(SegmentMembership),
    /// Submit a form (v1 only).
    FormSubmit(FormSubmit),
}

/// `identify`: create or update a person.
#[derive(Clone, Debug, PartialEq)]
pub struct Identify {
    /// The person.
    pub identifier: PersonIdentifier,
    /// Attributes to set (`email`, `created_at`, `_update`, anything else).
    pub attributes: Attributes,
    /// Objects to relate the person to.
    pub relationships: Vec<Relationship>,
    /// Unix seconds ordering this update (v1: the `_timestamp` attribute).
    pub timestamp: Option<i64>,
}

/// Whether an event is a plain event, a page view or a screen view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A custom event.
    Event,
    /// A page view; `name` is the URL or path.
    Page,
    /// A mobile screen view; `name` is the screen.
    Screen,
}

impl EventKind {
    /// The v2 action (`event`, `page`, `screen`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Event => "event",
            EventKind::Page => "page",
            EventKind::Screen => "screen",
        }
    }
}

/// Who did an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventSubject {
    /// A known person.
    Person(PersonIdentifier),
    /// Someone not identified yet (`anonymous_id`, e.g. a cookie). An empty anonymous id plus
    /// `data.recipient` is an invite event.
    Anonymous(String),
}

/// An event, page view or screen view.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Who did it.
    pub subject: EventSubject,
    /// Event, page or screen.
    pub kind: EventKind,
    /// The event name (for pages, the URL or path; for screens, the screen name).
    pub name: String,
    /// A ULID that Customer.io uses to de-duplicate: give every event one before the first attempt.
    pub id: Option<String>,
    /// Unix seconds; only events within the last 72 h can trigger campaigns.
    pub timestamp: Option<i64>,
    /// Event data (v2: `attributes`; v1: `data`).
    pub data: Attributes,
}

/// `add_relationships` / `delete_relationships` for a person.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonRelationships {
    /// The person.
    pub identifier: PersonIdentifier,
    /// The objects.
    pub relationships: Vec<Relationship>,
}

/// A device to add or update.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// The device token (v1 calls it `id`).
    pub token: String,
    /// `ios` or `android`.
    pub platform: Option<String>,
    /// Unix seconds when the device was last used.
    pub last_used: Option<i64>,
    /// Device attributes.
    pub attributes: Attributes,
}

/// `add_device`.
#[derive(Clone, Debug, PartialEq)]
pub struct AddDevice {
    /// The person owning the device.
    pub identifier: PersonIdentifier,
    /// The device.
    pub device: Device,
}

/// `delete_device`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeleteDevice {
    /// The person owning the device.
    pub identifier: PersonIdentifier,
    /// The device token.
    pub token: String,
}

/// `merge`: the secondary person is merged into the primary and deleted.
#[derive(Clone, Debug, PartialEq)]
pub struct Merge {
    /// The person that remains.
    pub primary: PersonIdentifier,
    /// The person merged away.
    pub secondary: PersonIdentifier,
}

/// `identify` for an object.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectIdentify {
    /// The object.
    pub identifier: ObjectIdentifier,
    /// Attributes to set.
    pub attributes: Attributes,
    /// People to relate the object to.
    pub relationships: Vec<Relationship>,
}

/// `add_relationships` / `delete_relationships` for an object.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectRelationships {
    /// The object.
    pub identifier: ObjectIdentifier,
    /// The people.
    pub relationships: Vec<Relationship>,
}

/// A delivery metric for a message Customer.io sent.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryEvent {
    /// The delivery id (from the message's tracking data).
    pub delivery_id: String,
    /// `opened`, `converted` or `delivered` (v2); v1 `/metrics` also knows `clicked`, `bounced`,
    /// `spammed`, `dropped`, `deferred`, `failed`, `undeliverable`.
    pub metric: String,
    /// Unix seconds.
    pub timestamp: Option<i64>,
    /// For push metrics: the device token (v1 sends these to `/push/events`).
    pub device_token: Option<String>,
    /// Other attributes (`recipient`, `reason`, `href`).
    pub attributes: Attributes,
}

/// Add to or remove from a manual segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentChange {
    /// `add_customers`.
    Add,
    /// `remove_customers`.
    Remove,
}

/// Which kind of identifier a segment change lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentIdType {
    /// `id`.
    Id,
    /// `email`.
    Email,
    /// `cio_id`.
    CioId,
}

impl SegmentIdType {
    /// The `id_type` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentIdType::Id => "id",
            SegmentIdType::Email => "email",
            SegmentIdType::CioId => "cio_id",
        }
    }
}

/// Manual segment membership (v1 `/segments/{id}/add_customers` or `/remove_customers`).
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentMembership {
    /// The manual segment.
    pub segment_id: u64,
    /// Add or remove.
    pub change: SegmentChange,
    /// The kind of identifiers in `ids` (Customer.io's default is `id`).
    pub id_type: Option<SegmentIdType>,
    /// 1 to 1000 identifiers.
    pub ids: Vec<String>,
}

/// A form submission (v1 `/forms/{form_id}/submit`).
#[derive(Clone, Debug, PartialEq)]
pub struct FormSubmit {
    /// The form's id.
    pub form_id: String,
    /// The form fields.
    pub data: Attributes,
}

impl Operation {
    /// The entry `type`: `person`, `object`, `delivery`, or our v1-only `segment` and `form`.
    pub fn entry_type(&self) -> &'static str {
        match self {
            Operation::ObjectIdentify(_)
            | Operation::ObjectDelete(_)
            | Operation::ObjectAddRelationships(_)
            | Operation::ObjectDeleteRelationships(_) => "object",
            Operation::DeliveryEvent(_) => "delivery",
            Operation::SegmentMembership(_) => "segment",
            Operation::FormSubmit(_) => "form",
            _ => "person",
        }
    }

    /// The entry `action` as sent in v2 (`identify`, `event`, `page`, `add_device`, ...).
    pub fn action_name(&self) -> &'static str {
        match self {
            Operation::Identify(_) | Operation::ObjectIdentify(_) => "identify",
            Operation::Delete(_) | Operation::ObjectDelete(_) => "delete",
            Operation::Event(e) => e.kind.as_str(),
            Operation::AddRelationships(_) | Operation::ObjectAddRelationships(_) => {
                "add_relationships"
            }
            Operation::DeleteRelationships(_) | Operation::ObjectDeleteRelationships(_) => {
                "delete_relationships"
            }
            Operation::AddDevice(_) => "add_device",
            Operation::DeleteDevice(_) => "delete_device",
            Operation::Merge(_) => "merge",
            Operation::Suppress(_) => "suppress",
            Operation::Unsuppress(_) => "unsuppress",
            Operation::DeliveryEvent(_) => "event",
            Operation::SegmentMembership(s) => match s.change {
                SegmentChange::Add => "add_customers",
                SegmentChange::Remove => "remove_customers",
            },
            Operation::FormSubmit(_) => "submit",
        }
    }

    /// Whether sending it twice has the effect of sending it once, so that the transport may send
    /// it again after a connection broke with no answer ([`crate::Idempotency`]).
    ///
    /// Setting state is (an identify, a delete, a device, a relationship, a suppression, a
    /// segment membership). An event is only when it carries an `id`: Customer.io de-duplicates
    /// on it. A merge (the second one finds no secondary), a delivery metric (counted twice) and
    /// a form submission (a form submitted twice) are not.
    ///
    /// ```
    /// use cio_api::Operation;
    ///
    /// let with_id = Operation::from_json(br#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"x","id":"01HZY3J5K3V1X0SJQ2Q0CE7A9N"}"#).unwrap();
    /// let without = Operation::from_json(br#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"x"}"#).unwrap();
    /// assert!(with_id.is_idempotent() && !without.is_idempotent());
    /// ```
    pub fn is_idempotent(&self) -> bool {
        match self {
            Operation::Event(e) => e.id.is_some(),
            Operation::Merge(_) | Operation::DeliveryEvent(_) | Operation::FormSubmit(_) => false,
            Operation::Identify(_)
            | Operation::Delete(_)
            | Operation::AddRelationships(_)
            | Operation::DeleteRelationships(_)
            | Operation::AddDevice(_)
            | Operation::DeleteDevice(_)
            | Operation::Suppress(_)
            | Operation::Unsuppress(_)
            | Operation::ObjectIdentify(_)
            | Operation::ObjectDelete(_)
            | Operation::ObjectAddRelationships(_)
            | Operation::ObjectDeleteRelationships(_)
            | Operation::SegmentMembership(_) => true,
        }
    }

    /// A stable name for counting operations by kind (the mock's `accepted` keys): the action for
    /// person entries (`identify`, `event`, `page`, ...), `object_<action>` for objects,
    /// `delivery_event`, `segment_add` / `segment_remove`, `form_submit`.
    pub fn stat_name(&self) -> &'static str {
        match self {
            Operation::ObjectIdentify(_) => "object_identify",
            Operation::ObjectDelete(_) => "object_delete",
            Operation::ObjectAddRelationships(_) => "object_add_relationships",
            Operation::ObjectDeleteRelationships(_) => "object_delete_relationships",
            Operation::DeliveryEvent(_) => "delivery_event",
            Operation::SegmentMembership(s) => match s.change {
                SegmentChange::Add => "segment_add",
                SegmentChange::Remove => "segment_remove",
            },
            Operation::FormSubmit(_) => "form_submit",
            other => other.action_name(),
        }
    }

    /// Whether this operation has a Track v2 entry form (segments and forms do not).
    pub fn has_v2_form(&self) -> bool {
        !matches!(
            self,
            Operation::SegmentMembership(_) | Operation::FormSubmit(_)
        )
    }

    /// The event id, for events that carry one (used for de-duplication).
    pub fn event_id(&self) -> Option<&str> {
        match self {
            Operation::Event(e) => e.id.as_deref(),
            _ => None,
        }
    }

    /// Parses one v2 entry (a line of the pipeline's input format).
    pub fn from_json(bytes: &[u8]) -> Result<Operation, DecodeError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => wire::decode_str(text),
            // serde_json says where the bad byte is.
            Err(_) => wire::decode(bytes),
        }
    }

    /// [`from_json`](Self::from_json) on text already known to be UTF-8: faster, as the
    /// parser need not check each string again (a fifth of the parse time on typical entries).
    pub fn from_json_str(text: &str) -> Result<Operation, DecodeError> {
        wire::decode_str(text)
    }

    /// Parses one already-parsed JSON value as a v2 entry.
    pub fn from_value(value: serde_json::Value) -> Result<Operation, DecodeError> {
        wire::decode_value(value)
    }

    /// The canonical form: the v2 entry as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        out
    }

    /// Appends the canonical v2 entry JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing into a Vec cannot fail: every key is a string and every value is JSON.
        let _ = serde_json::to_writer(out, self);
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("type", self.entry_type())?;
        match self {
            Operation::Identify(i) => {
                m.serialize_entry("identifiers", &i.identifier)?;
                m.serialize_entry("action", "identify")?;
                m.serialize_entry("attributes", &i.attributes)?;
                if !i.relationships.is_empty() {
                    m.serialize_entry("cio_relationships", &i.relationships)?;
                }
                if let Some(ts) = i.timestamp {
                    m.serialize_entry("timestamp", &ts)?;
                }
            }
            Operation::Delete(p) | Operation::Suppress(p) | Operation::Unsuppress(p) => {
                m.serialize_entry("identifiers", p)?;
                m.serialize_entry("action", self.action_name())?;
            }
            Operation::Event(e) => {
                match &e.subject {
                    EventSubject::Person(p) => m.serialize_entry("identifiers", p)?,
                    EventSubject::Anonymous(a) => m.serialize_entry("anonymous_id", a)?,
                }
                m.serialize_entry("action", e.kind.as_str())?;
                m.serialize_entry("name", &e.name)?;
                if let Some(id) = &e.id {
                    m.serialize_entry("id", id)?;
                }
                if let Some(ts) = e.timestamp {
                    m.serialize_entry("timestamp", &ts)?;
                }
                if !e.data.is_empty() {
                    m.serialize_entry("attributes", &e.data)?;
                }
            }
            Operation::AddRelationships(r) | Operation::DeleteRelationships(r) => {
                m.serialize_entry("identifiers", &r.identifier)?;
                m.serialize_entry("action", self.action_name())?;
                m.serialize_entry("cio_relationships", &r.relationships)?;
            }
            Operation::AddDevice(d) => {
                m.serialize_entry("identifiers", &d.identifier)?;
                m.serialize_entry("action", "add_device")?;
                m.serialize_entry("device", &DeviceWire(&d.device))?;
            }
            Operation::DeleteDevice(d) => {
                m.serialize_entry("identifiers", &d.identifier)?;
                m.serialize_entry("action", "delete_device")?;
                m.serialize_entry("device", &TokenOnly(&d.token))?;
            }
            Operation::Merge(mg) => {
                m.serialize_entry("action", "merge")?;
                m.serialize_entry("primary", &mg.primary)?;
                m.serialize_entry("secondary", &mg.secondary)?;
            }
            Operation::ObjectIdentify(o) => {
                m.serialize_entry("identifiers", &o.identifier)?;
                m.serialize_entry("action", "identify")?;
                m.serialize_entry("attributes", &o.attributes)?;
                if !o.relationships.is_empty() {
                    m.serialize_entry("cio_relationships", &o.relationships)?;
                }
            }
            Operation::ObjectDelete(o) => {
                m.serialize_entry("identifiers", o)?;
                m.serialize_entry("action", "delete")?;
            }
            Operation::ObjectAddRelationships(r) | Operation::ObjectDeleteRelationships(r) => {
                m.serialize_entry("identifiers", &r.identifier)?;
                m.serialize_entry("action", self.action_name())?;
                m.serialize_entry("cio_relationships", &r.relationships)?;
            }
            Operation::DeliveryEvent(d) => {
                m.serialize_entry("identifiers", &PersonIdentifier::Id(d.delivery_id.clone()))?;
                m.serialize_entry("action", "event")?;
                m.serialize_entry("name", &d.metric)?;
                if let Some(ts) = d.timestamp {
                    m.serialize_entry("timestamp", &ts)?;
                }
                if d.device_token.is_some() || !d.attributes.is_empty() {
                    m.serialize_entry("attributes", &DeliveryAttributes(d))?;
                }
            }
            Operation::SegmentMembership(s) => {
                m.serialize_entry("action", self.action_name())?;
                m.serialize_entry("segment_id", &s.segment_id)?;
                if let Some(t) = s.id_type {
                    m.serialize_entry("id_type", t.as_str())?;
                }
                m.serialize_entry("ids", &s.ids)?;
            }
            Operation::FormSubmit(f) => {
                m.serialize_entry("action", "submit")?;
                m.serialize_entry("form_id", &f.form_id)?;
                m.serialize_entry("data", &f.data)?;
            }
        }
        m.end()
    }
}

struct DeviceWire<'a>(&'a Device);

impl Serialize for DeviceWire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("token", &d.token)?;
        if let Some(p) = &d.platform {
            m.serialize_entry("platform", p)?;
        }
        if let Some(l) = d.last_used {
            m.serialize_entry("last_used", &l)?;
        }
        if !d.attributes.is_empty() {
            m.serialize_entry("attributes", &d.attributes)?;
        }
        m.end()
    }
}

struct TokenOnly<'a>(&'a str);

impl Serialize for TokenOnly<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(1))?;
        m.serialize_entry("token", self.0)?;
        m.end()
    }
}

struct DeliveryAttributes<'a>(&'a DeliveryEvent);

impl Serialize for DeliveryAttributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let mut m = serializer.serialize_map(None)?;
        if let Some(t) = &d.device_token {
            m.serialize_entry("device_token", t)?;
        }
        for (k, v) in &d.attributes {
            if k != "device_token" {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}
