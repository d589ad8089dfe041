//! Who an operation is about: a person, an object, or a relationship between them.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// How a person is identified. Exactly one identifier per person, as Customer.io requires.
///
/// In the v1 API the identifier goes in the path: an `id` or `email` as is, a `cio_id` as
/// `cio_<cio_id>`. A phone number cannot address a person in v1 (Customer.io treats it as an id),
/// so phone-identified operations are v2 only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PersonIdentifier {
    /// Your own id for the person.
    Id(String),
    /// The person's email address.
    Email(String),
    /// The person's phone number (E.164), v2 only.
    Phone(String),
    /// Customer.io's own id (`cio_id`).
    CioId(String),
}

impl PersonIdentifier {
    /// The key of this identifier in `identifiers` (`id`, `email`, `phone`, `cio_id`).
    pub fn key(&self) -> &'static str {
        match self {
            PersonIdentifier::Id(_) => "id",
            PersonIdentifier::Email(_) => "email",
            PersonIdentifier::Phone(_) => "phone",
            PersonIdentifier::CioId(_) => "cio_id",
        }
    }

    /// The identifier's value.
    pub fn value(&self) -> &str {
        match self {
            PersonIdentifier::Id(v)
            | PersonIdentifier::Email(v)
            | PersonIdentifier::Phone(v)
            | PersonIdentifier::CioId(v) => v,
        }
    }

    /// Builds an identifier from its key, or `None` for an unknown key.
    pub fn from_key(key: &str, value: String) -> Option<Self> {
        Some(match key {
            "id" => PersonIdentifier::Id(value),
            "email" => PersonIdentifier::Email(value),
            "phone" => PersonIdentifier::Phone(value),
            "cio_id" => PersonIdentifier::CioId(value),
            _ => return None,
        })
    }

    /// The `{id}` path segment of the v1 API (before percent-encoding), or `None` for a phone.
    pub fn v1_path_value(&self) -> Option<String> {
        match self {
            PersonIdentifier::Id(v) | PersonIdentifier::Email(v) => Some(v.clone()),
            PersonIdentifier::CioId(v) => Some(format!("cio_{v}")),
            PersonIdentifier::Phone(_) => None,
        }
    }
}

impl Serialize for PersonIdentifier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.key(), self.value())?;
        map.end()
    }
}

/// How an object (a company, an account, ...) is identified.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ObjectIdentifier {
    /// The object type's id (a number in Customer.io, sent as a string) and your id for the object.
    Object {
        /// The object type, e.g. `"1"` for the first object type of the workspace.
        object_type_id: String,
        /// Your id for the object.
        object_id: String,
    },
    /// Customer.io's own id for the object.
    CioObjectId(String),
}

impl Serialize for ObjectIdentifier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ObjectIdentifier::Object {
                object_type_id,
                object_id,
            } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("object_type_id", object_type_id)?;
                map.serialize_entry("object_id", object_id)?;
                map.end()
            }
            ObjectIdentifier::CioObjectId(id) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("cio_object_id", id)?;
                map.end()
            }
        }
    }
}

/// The other side of a relationship: an object for a person's relationships, a person for an
/// object's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelationshipTarget {
    /// A person (the target of an object's relationship).
    Person(PersonIdentifier),
    /// An object (the target of a person's relationship).
    Object(ObjectIdentifier),
}

/// One entry of `cio_relationships`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Relationship {
    /// Who or what the relationship is with.
    #[serde(rename = "identifiers", serialize_with = "serialize_target")]
    pub target: RelationshipTarget,
    /// Attributes of the relationship itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relationship_attributes: Option<crate::Attributes>,
}

impl Relationship {
    /// A relationship with an object, without attributes.
    pub fn with_object(object: ObjectIdentifier) -> Self {
        Relationship {
            target: RelationshipTarget::Object(object),
            relationship_attributes: None,
        }
    }

    /// A relationship with a person, without attributes.
    pub fn with_person(person: PersonIdentifier) -> Self {
        Relationship {
            target: RelationshipTarget::Person(person),
            relationship_attributes: None,
        }
    }
}

fn serialize_target<S: Serializer>(t: &RelationshipTarget, s: S) -> Result<S::Ok, S::Error> {
    match t {
        RelationshipTarget::Person(p) => p.serialize(s),
        RelationshipTarget::Object(o) => o.serialize(s),
    }
}
