//! The App API's reads of people, as [`crate::AppClient`] sends them and Customer.io answers:
//!
//! | method | request | official SDK |
//! |---|---|---|
//! | [`crate::AppClient::customers_by_email`] | `GET /v1/customers?email=` | `getCustomersByEmail` |
//! | [`crate::AppClient::attributes`] | `GET /v1/customers/{id}/attributes?id_type=` | `getAttributes` |
//! | [`crate::AppClient::customers_attributes`] | `POST /v1/customers/attributes` `{"ids":[...]}` | `getCustomersAttributes` |
//! | [`crate::AppClient::segments`] | `GET /v1/customers/{id}/segments?id_type=` | `getCustomerSegments` |
//! | [`crate::AppClient::activities`] | `GET /v1/customers/{id}/activities?...` | `getCustomerActivities` |
//!
//! Reads are idempotent: a read that failed in any retryable way is sent again. They count
//! against the App API's 10 requests/s like every App API call. A person Customer.io does not
//! know is `Ok(None)`, not an error.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};

use crate::operation::v1::encode_segment;
use crate::{Attributes, PersonIdentifier, ValidationError};

/// The most ids one `getCustomersAttributes` request takes.
pub const MAX_CUSTOMERS_PER_READ: usize = 100;

/// The most activities one page holds.
pub const MAX_ACTIVITIES_PER_PAGE: u32 = 100;

/// A person's identifiers, as the App API lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerIdentifiers {
    /// Your id for the person (the reference's getPeopleEmail example gives it as a number:
    /// either is read).
    #[serde(default, deserialize_with = "string_or_number")]
    pub id: Option<String>,
    /// Their email.
    #[serde(default)]
    pub email: Option<String>,
    /// Customer.io's id.
    #[serde(default)]
    pub cio_id: Option<String>,
}

/// A device of a person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerDevice {
    /// The device token.
    pub id: String,
    /// `ios` or `android`.
    #[serde(default)]
    pub platform: Option<String>,
    /// Unix seconds when it was last used.
    #[serde(default)]
    pub last_used: Option<i64>,
    /// Its attributes.
    #[serde(default)]
    pub attributes: Attributes,
}

/// A person as `getAttributes` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Your id for the person, when they have one.
    #[serde(default, deserialize_with = "string_or_number")]
    pub id: Option<String>,
    /// All their identifiers.
    #[serde(default)]
    pub identifiers: CustomerIdentifiers,
    /// Their attributes (the identifiers among them, as strings).
    #[serde(default)]
    pub attributes: Attributes,
    /// When each attribute was last set, in unix seconds.
    #[serde(default)]
    pub timestamps: BTreeMap<String, i64>,
    /// Whether they unsubscribed.
    #[serde(default)]
    pub unsubscribed: bool,
    /// Their devices.
    #[serde(default)]
    pub devices: Vec<CustomerDevice>,
}

/// A segment a person belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Its id.
    pub id: u64,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// `manual` or `dynamic`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `events`, `building`, `finished`, ...
    #[serde(default)]
    pub state: String,
}

/// One entry of a person's activity log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Its id (an event's own id, when it had one).
    #[serde(default)]
    pub id: Option<String>,
    /// `event`, `page`, `screen`, `attribute_change`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The event name (the URL for a page, the screen for a screen).
    #[serde(default)]
    pub name: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub timestamp: i64,
    /// The event data.
    #[serde(default)]
    pub data: Attributes,
    /// The person's id.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// The message it belongs to, for message activity.
    #[serde(default)]
    pub delivery_id: Option<String>,
}

/// One page of a person's activities, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activities {
    /// The activities.
    pub activities: Vec<Activity>,
    /// The cursor of the next page ([`ActivityQuery::start`]); `None` on the last.
    #[serde(default, deserialize_with = "empty_is_none")]
    pub next: Option<String>,
}

/// An optional id that may come as a JSON string or number.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::Text(s) => s,
        Id::Number(n) => n.to_string(),
    }))
}

fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// Which activities to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityQuery {
    /// Only this `type` (`event`, `page`, ...).
    pub kind: Option<String>,
    /// Only this name.
    pub name: Option<String>,
    /// At most this many (1 to 100; Customer.io's default without it).
    pub limit: Option<u32>,
    /// From this cursor (a previous page's [`Activities::next`]).
    pub start: Option<String>,
}

/// One read as it goes out: method, path below the App API base (encoded, with its query),
/// body.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Read {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Option<Bytes>,
}

/// The path segment of a person's identifier and its `id_type` (`id`, `email`, `phone` or
/// `cio_id`; email and phone work where the workspace identifies people by them).
fn addressed(who: &PersonIdentifier) -> Result<(String, &'static str), ValidationError> {
    let id_type = who.key();
    if who.value().trim().is_empty() {
        return Err(ValidationError::Empty {
            field: format!("identifier.{id_type}"),
        });
    }
    Ok((encode_segment(who.value()), id_type))
}

impl Read {
    fn get(path: String) -> Read {
        Read {
            method: Method::GET,
            path,
            body: None,
        }
    }

    pub(crate) fn by_email(email: &str) -> Result<Read, ValidationError> {
        if email.trim().is_empty() {
            return Err(ValidationError::Empty {
                field: "email".into(),
            });
        }
        Ok(Read::get(format!(
            "/customers?email={}",
            encode_segment(email)
        )))
    }

    pub(crate) fn attributes(who: &PersonIdentifier) -> Result<Read, ValidationError> {
        let (id, id_type) = addressed(who)?;
        Ok(Read::get(format!(
            "/customers/{id}/attributes?id_type={id_type}"
        )))
    }

    pub(crate) fn segments(who: &PersonIdentifier) -> Result<Read, ValidationError> {
        let (id, id_type) = addressed(who)?;
        Ok(Read::get(format!(
            "/customers/{id}/segments?id_type={id_type}"
        )))
    }

    pub(crate) fn activities(
        who: &PersonIdentifier,
        q: &ActivityQuery,
    ) -> Result<Read, ValidationError> {
        let (id, id_type) = addressed(who)?;
        let mut path = format!("/customers/{id}/activities?id_type={id_type}");
        if let Some(limit) = q.limit {
            if limit == 0 || limit > MAX_ACTIVITIES_PER_PAGE {
                return Err(ValidationError::Invalid {
                    field: "limit".into(),
                    reason: format!("must be 1 to {MAX_ACTIVITIES_PER_PAGE}, got {limit}"),
                });
            }
            path.push_str(&format!("&limit={limit}"));
        }
        for (key, value) in [("type", &q.kind), ("name", &q.name), ("start", &q.start)] {
            if let Some(v) = value {
                path.push_str(&format!("&{key}={}", encode_segment(v)));
            }
        }
        Ok(Read::get(path))
    }

    pub(crate) fn customers_attributes(ids: &[String]) -> Result<Read, ValidationError> {
        if ids.is_empty() {
            return Err(ValidationError::Empty {
                field: "ids".into(),
            });
        }
        if ids.len() > MAX_CUSTOMERS_PER_READ {
            return Err(ValidationError::TooMany {
                field: "ids".into(),
                what: "ids",
                limit: MAX_CUSTOMERS_PER_READ,
                actual: ids.len(),
            });
        }
        Ok(Read {
            method: Method::POST,
            path: "/customers/attributes".into(),
            body: Some(Bytes::from(
                serde_json::to_vec(&serde_json::json!({ "ids": ids })).unwrap_or_default(),
            )),
        })
    }
}

/// The answer bodies, as far as the reads take them.
#[derive(Deserialize)]
pub(crate) struct ByEmail {
    pub(crate) results: Vec<CustomerIdentifiers>,
}

#[derive(Deserialize)]
pub(crate) struct OneCustomer {
    pub(crate) customer: Customer,
}

#[derive(Deserialize)]
pub(crate) struct ManyCustomers {
    customers: Vec<Listed>,
}

/// One person of a `getCustomersAttributes` answer: wrapped as `{"customer": {...}}`, as
/// Customer.io's reference shows it (docs.customer.io/integrations/api/app/tag/customers/getPeopleById/),
/// or bare.
#[derive(Deserialize)]
#[serde(untagged)]
enum Listed {
    Wrapped { customer: Customer },
    Bare(Customer),
}

impl ManyCustomers {
    pub(crate) fn into_customers(self) -> Vec<Customer> {
        self.customers
            .into_iter()
            .map(|c| match c {
                Listed::Wrapped { customer } | Listed::Bare(customer) => customer,
            })
            .collect()
    }
}

#[derive(Deserialize)]
pub(crate) struct Segments {
    pub(crate) segments: Vec<Segment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_addressed_as_the_official_sdk_addresses_them() {
        let who = PersonIdentifier::Email("a+b@example.com".into());
        assert_eq!(
            Read::attributes(&who).unwrap().path,
            "/customers/a%2Bb%40example.com/attributes?id_type=email"
        );
        assert_eq!(
            Read::by_email("a+b@example.com").unwrap().path,
            "/customers?email=a%2Bb%40example.com"
        );
        let q = ActivityQuery {
            kind: Some("event".into()),
            name: Some("Signed Up".into()),
            limit: Some(5),
            start: Some("10".into()),
        };
        assert_eq!(
            Read::activities(&PersonIdentifier::Id("42".into()), &q)
                .unwrap()
                .path,
            "/customers/42/activities?id_type=id&limit=5&type=event&name=Signed%20Up&start=10"
        );
        assert_eq!(
            Read::attributes(&PersonIdentifier::Phone("+14155552671".into()))
                .unwrap()
                .path,
            "/customers/%2B14155552671/attributes?id_type=phone"
        );
        assert!(Read::attributes(&PersonIdentifier::Id(" ".into())).is_err());
        let q = ActivityQuery {
            limit: Some(101),
            ..ActivityQuery::default()
        };
        assert!(Read::activities(&PersonIdentifier::Id("1".into()), &q).is_err());
        let ids: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert!(Read::customers_attributes(&ids).is_err());
        assert!(Read::customers_attributes(&[]).is_err());
        assert_eq!(
            Read::customers_attributes(&ids[..100]).unwrap().method,
            Method::POST
        );
    }

    /// A path's own part and its query as a set, `id_type=id` (the default) left out.
    fn split(path: &str) -> (String, std::collections::BTreeSet<String>) {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let q = q
            .split('&')
            .filter(|kv| !kv.is_empty() && *kv != "id_type=id")
            .map(str::to_owned)
            .collect();
        (p.to_owned(), q)
    }

    /// The requests the official Node SDK 5.2.0 sends for each read, recorded in
    /// `tests/fixtures/node_sdk_reads.json`: ours are the same method, path, query (in any
    /// order) and body.
    #[test]
    fn reads_match_the_official_sdks_requests() {
        let fixture: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../tests/fixtures/node_sdk_reads.json")).unwrap();
        let id = |v: &str| PersonIdentifier::Id(v.into());
        let ours = [
            Read::by_email("ada+1@example.com"),
            Read::attributes(&id("42")),
            Read::attributes(&PersonIdentifier::Email("ada+1@example.com".into())),
            Read::attributes(&id("user/7 ü")),
            Read::customers_attributes(&["42".into(), "43".into()]),
            Read::segments(&id("42")),
            Read::segments(&PersonIdentifier::CioId("d9c1".into())),
            Read::activities(&id("42"), &ActivityQuery::default()),
            Read::activities(
                &id("42"),
                &ActivityQuery {
                    kind: Some("event".into()),
                    name: Some("Signed Up".into()),
                    limit: Some(5),
                    start: Some("10".into()),
                },
            ),
        ];
        assert_eq!(fixture.len(), ours.len());
        for (sdk, ours) in fixture.iter().zip(ours) {
            let ours = ours.unwrap();
            let call = sdk["call"].as_str().unwrap();
            assert_eq!(ours.method.as_str(), sdk["method"], "{call}");
            let sdk_path = sdk["path"].as_str().unwrap().strip_prefix("/v1").unwrap();
            assert_eq!(split(&ours.path), split(sdk_path), "{call}");
            let body: serde_json::Value = ours
                .body
                .map(|b| serde_json::from_slice(&b).unwrap())
                .unwrap_or_default();
            assert_eq!(body, sdk["body"], "{call}");
        }
    }

    #[test]
    fn answers_read_as_customer_io_documents_them() {
        let c: OneCustomer = serde_json::from_str(
            r#"{"customer":{"id":"42","identifiers":{"id":"42","email":"a@b.c","cio_id":"d9c1"},
                "attributes":{"plan":"pro","cio_id":"d9c1"},"timestamps":{"plan":1700000000},
                "unsubscribed":false,"devices":[{"id":"tok","platform":"ios","last_used":1}]}}"#,
        )
        .unwrap();
        assert_eq!(c.customer.identifiers.cio_id.as_deref(), Some("d9c1"));
        assert_eq!(c.customer.timestamps["plan"], 1_700_000_000);
        assert_eq!(c.customer.devices[0].id, "tok");
        // The reference's getPeopleEmail example has a numeric id; getPeopleById wraps each.
        let found: ByEmail = serde_json::from_str(
            r#"{"results":[{"email":"hugh.mann@example.com","id":2,"cio_id":"a3000001"}]}"#,
        )
        .unwrap();
        assert_eq!(found.results[0].id.as_deref(), Some("2"));
        let many: ManyCustomers = serde_json::from_str(
            r#"{"customers":[{"customer":{"id":"1","attributes":{"title":"tester"}}},{"id":"2"}]}"#,
        )
        .unwrap();
        let many = many.into_customers();
        assert_eq!(many[0].attributes["title"], "tester");
        assert_eq!(many[1].id.as_deref(), Some("2"));
        let a: Activities =
            serde_json::from_str(r#"{"activities":[{"type":"event","name":"x"}],"next":""}"#)
                .unwrap();
        assert_eq!(a.next, None);
        assert_eq!(a.activities[0].kind, "event");
    }
}
