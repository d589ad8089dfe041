//! Every limit of [`Limits`] at exactly the limit (passes) and one byte or item over (fails with
//! the field, the limit and the size found).

use cio_api::encode::encode_batch;
use cio_api::{
    AddDevice, Device, EventSubject, FormSubmit, Limits, Merge, ObjectIdentifier, Operation,
    PersonIdentifier, Relationship, SegmentChange, SegmentIdType, SegmentMembership,
    ValidationError,
};
use serde_json::{json, Value};

use super::*;

/// Serialized size of a JSON string's content (between the quotes), measured by serde_json itself.
fn escaped(s: &str) -> usize {
    serde_json::to_string(s).map(|t| t.len() - 2).unwrap_or(0)
}

#[test]
fn the_defaults_are_the_documented_limits() {
    let l = Limits::default();
    assert_eq!(l.identifier_bytes, 150);
    assert_eq!(l.attribute_name_bytes, 150);
    assert_eq!(l.attribute_value_bytes, 1000);
    assert_eq!(l.attributes_per_call, 300);
    assert_eq!(l.event_name_bytes, 100);
    assert_eq!(l.event_data_bytes, 100_000);
    assert_eq!(l.entry_bytes, 32_768);
    assert_eq!(l.batch_bytes, 512_000);
    assert_eq!(l.segment_ids, 1000);
}

#[test]
fn person_identifiers_are_at_most_150_bytes() {
    // An email padded in its local part, so it still looks like an address.
    let email = |n: usize| format!("{}@example.com", "j".repeat(n - "@example.com".len()));
    let plain = |n: usize| "7".repeat(n);
    let delete = |key: &str, value: String| {
        Operation::Delete(PersonIdentifier::from_key(key, value).expect("a person identifier"))
    };
    for key in ["id", "email", "phone", "cio_id"] {
        let value = |n| if key == "email" { email(n) } else { plain(n) };
        let at = value(150);
        assert_eq!(at.len(), 150);
        assert_valid(&delete(key, at));
        assert_eq!(
            validate_err(&delete(key, value(151))),
            too_large(&format!("identifiers.{key}"), 150, 151),
        );
    }
}

#[test]
fn identifiers_are_measured_in_bytes_not_characters() {
    let at = "é".repeat(75); // 75 characters, 150 bytes
    assert_eq!(at.len(), 150);
    assert_valid(&Operation::Delete(id(&at)));
    let over = format!("{at}x"); // 76 characters, 151 bytes
    assert_eq!(
        validate_err(&Operation::Delete(id(&over))),
        too_large("identifiers.id", 150, 151)
    );
}

#[test]
fn every_place_a_person_identifier_appears_is_limited() {
    let at = || "p".repeat(150);
    let over = || "p".repeat(151);
    let merge = |primary: String, secondary: String| {
        Operation::Merge(Merge {
            primary: id(&primary),
            secondary: PersonIdentifier::Email(secondary),
        })
    };
    assert_valid(&merge(at(), at()));
    assert_eq!(
        validate_err(&merge(at(), over())),
        too_large("secondary.email", 150, 151)
    );
    assert_eq!(
        validate_err(&merge(over(), at())),
        too_large("primary.id", 150, 151)
    );

    let related = |person: String| {
        Operation::ObjectAddRelationships(cio_api::ObjectRelationships {
            identifier: ObjectIdentifier::CioObjectId("obj1".into()),
            relationships: vec![Relationship::with_person(id(&person))],
        })
    };
    assert_valid(&related(at()));
    assert_eq!(
        validate_err(&related(over())),
        too_large("cio_relationships[0].identifiers.id", 150, 151)
    );

    let segment = |ids: Vec<String>| {
        Operation::SegmentMembership(SegmentMembership {
            segment_id: 7,
            change: SegmentChange::Add,
            id_type: Some(SegmentIdType::Id),
            ids,
        })
    };
    assert_valid(&segment(vec!["42".into(), at()]));
    assert_eq!(
        validate_err(&segment(vec!["42".into(), over()])),
        too_large("ids[1]", 150, 151)
    );
}

#[test]
fn object_identifiers_are_at_most_150_bytes() {
    let object = |type_id: usize, object_id: usize| {
        Operation::ObjectDelete(ObjectIdentifier::Object {
            object_type_id: "1".repeat(type_id),
            object_id: "o".repeat(object_id),
        })
    };
    assert_valid(&object(150, 150));
    assert_eq!(
        validate_err(&object(151, 150)),
        too_large("identifiers.object_type_id", 150, 151)
    );
    assert_eq!(
        validate_err(&object(150, 151)),
        too_large("identifiers.object_id", 150, 151)
    );

    let cio = |n: usize| Operation::ObjectDelete(ObjectIdentifier::CioObjectId("c".repeat(n)));
    assert_valid(&cio(150));
    assert_eq!(
        validate_err(&cio(151)),
        too_large("identifiers.cio_object_id", 150, 151)
    );

    // A person's relationship names the object with the same limit.
    let related = |n: usize| {
        Operation::AddRelationships(cio_api::PersonRelationships {
            identifier: id("42"),
            relationships: vec![Relationship::with_object(ObjectIdentifier::Object {
                object_type_id: "1".into(),
                object_id: "o".repeat(n),
            })],
        })
    };
    assert_valid(&related(150));
    assert_eq!(
        validate_err(&related(151)),
        too_large("cio_relationships[0].identifiers.object_id", 150, 151)
    );
}

#[test]
fn anonymous_ids_are_at_most_150_bytes() {
    let anon = |n: usize| event(EventSubject::Anonymous("a".repeat(n)), "viewed", attrs([]));
    assert_valid(&anon(150));
    assert_eq!(
        validate_err(&anon(151)),
        too_large("anonymous_id", 150, 151)
    );
}

#[test]
fn attribute_names_are_at_most_150_bytes() {
    let at = "n".repeat(150);
    assert_valid(&identify(id("42"), attrs([(at.as_str(), json!("v"))])));
    let over = "n".repeat(151);
    assert_eq!(
        validate_err(&identify(id("42"), attrs([(over.as_str(), json!("v"))]))),
        too_large(&format!("attributes name {over:?}"), 150, 151)
    );
    assert_eq!(
        validate_err(&identify(id("42"), attrs([("", json!("v"))]))),
        ValidationError::Empty {
            field: "attributes name".into()
        }
    );
}

#[test]
fn a_string_attribute_value_is_at_most_1000_bytes() {
    let one = |v: String| identify(id("42"), attrs([("bio", Value::String(v))]));
    let at = "x".repeat(1000);
    assert_eq!(escaped(&at), 1000);
    assert_valid(&one(at));
    assert_eq!(
        validate_err(&one("x".repeat(1001))),
        too_large("attributes.bio", 1000, 1001)
    );
}

#[test]
fn a_string_attribute_value_counts_its_json_escapes() {
    let one = |v: String| identify(id("42"), attrs([("bio", Value::String(v))]));
    // `"` and `\n` take two bytes on the wire; a control character such as U+0001 takes six
    // (`\u0001`). A value of fewer raw bytes than the limit can still be over it.
    for (special, wire) in [("\"", 2), ("\n", 2), ("\u{1}", 6)] {
        let at = format!("{}{special}", "x".repeat(1000 - wire));
        assert_eq!(escaped(&at), 1000, "{special:?}");
        assert!(at.len() < 1000);
        assert_valid(&one(at));

        let over = format!("{}{special}", "x".repeat(1001 - wire));
        assert!(
            over.len() <= 1000,
            "raw bytes alone would pass: {}",
            over.len()
        );
        assert_eq!(
            validate_err(&one(over)),
            too_large("attributes.bio", 1000, 1001),
            "{special:?}"
        );
    }
}

#[test]
fn a_non_string_attribute_value_is_measured_as_its_json_text() {
    let nested = |n: usize| json!({"address": {"street": "s".repeat(n), "tags": [1, true, null]}});
    let pad = padding_for(1000, |n| nested(n).to_string().len());
    let one = |v: Value| identify(id("42"), attrs([("profile", v)]));
    assert_eq!(
        serde_json::to_vec(&nested(pad)).map(|v| v.len()).ok(),
        Some(1000)
    );
    assert_valid(&one(nested(pad)));
    assert_eq!(
        validate_err(&one(nested(pad + 1))),
        too_large("attributes.profile", 1000, 1001)
    );

    let array = |n: usize| Value::Array((0..n).map(|_| json!(1)).collect());
    // `[1,1,...,1]` is 2n + 1 bytes: 499 ones is 999 bytes, 500 ones is 1001.
    assert_valid(&one(array(499)));
    assert_eq!(
        validate_err(&one(array(500))),
        too_large("attributes.profile", 1000, 1001)
    );
}

#[test]
fn attribute_limits_apply_to_devices_and_forms_too() {
    let device = |v: String| {
        Operation::AddDevice(AddDevice {
            identifier: id("42"),
            device: Device {
                token: "apns-token".into(),
                platform: Some("ios".into()),
                last_used: None,
                attributes: attrs([("app_version", Value::String(v))]),
            },
        })
    };
    assert_valid(&device("x".repeat(1000)));
    assert_eq!(
        validate_err(&device("x".repeat(1001))),
        too_large("device.attributes.app_version", 1000, 1001)
    );
    let form = |v: String| {
        Operation::FormSubmit(FormSubmit {
            form_id: "signup".into(),
            data: attrs([("comment", Value::String(v))]),
        })
    };
    assert_valid(&form("x".repeat(1000)));
    assert_eq!(
        validate_err(&form("x".repeat(1001))),
        too_large("data.comment", 1000, 1001)
    );
}

#[test]
fn an_identify_has_at_most_300_attributes() {
    let many = |n: usize| {
        identify(
            id("42"),
            (0..n).map(|i| (format!("a{i:03}"), json!(i))).collect(),
        )
    };
    assert_valid(&many(300));
    assert_eq!(
        validate_err(&many(301)),
        ValidationError::TooMany {
            field: "attributes".into(),
            what: "attributes",
            limit: 300,
            actual: 301,
        }
    );
}

#[test]
fn an_event_name_is_at_most_100_bytes() {
    let named = |n: usize| event(EventSubject::Person(id("42")), &"e".repeat(n), attrs([]));
    assert_valid(&named(100));
    assert_eq!(validate_err(&named(101)), too_large("name", 100, 101));
}

#[test]
fn event_data_is_at_most_100_000_bytes_of_json() {
    // Realistic data plus one long value; single values in event data are not held to the
    // 1000-byte attribute limit, only the whole object is.
    let data = |n: usize| {
        attrs([
            ("order_id", json!("ord-1001")),
            ("price", json!(23.45)),
            ("items", json!([{"sku": "socks", "qty": 2}])),
            ("note", Value::String("z".repeat(n))),
        ])
    };
    let measure = |n: usize| serde_json::to_vec(&data(n)).map(|v| v.len()).unwrap_or(0);
    let pad = padding_for(100_000, measure);
    let op = |n: usize| event(EventSubject::Person(id("42")), "purchase", data(n));
    assert_valid(&op(pad));
    assert_eq!(
        validate_err(&op(pad + 1)),
        too_large("attributes", 100_000, 100_001)
    );
    // Such an event is valid for v1 but can never fit a 32 KiB v2 entry.
    let mut out = Vec::new();
    let err = op(pad)
        .encode_entry(&Limits::default(), &mut out)
        .unwrap_err();
    assert_eq!(err.field(), "entry");
}

#[test]
fn a_v2_entry_is_at_most_32_kib_of_json() {
    let limits = Limits::default();
    let at = identify_of_size("42", 32_768);
    let mut out = Vec::new();
    at.encode_entry(&limits, &mut out)
        .expect("an entry of exactly 32 KiB is accepted");
    assert_eq!(out.len(), 32_768);
    assert_eq!(out, at.to_json());

    let over = identify_of_size("42", 32_769);
    assert_valid(&over); // every field is fine; only the whole entry is too big
    let mut out = b"prefix".to_vec();
    assert_eq!(
        over.encode_entry(&limits, &mut out),
        Err(too_large("entry", 32_768, 32_769))
    );
    assert_eq!(
        out, b"prefix",
        "a refused entry leaves the buffer as it was"
    );
}

#[test]
fn a_v2_batch_body_is_at_most_500_kib() {
    let limits = Limits::default();
    // 16 entries of 30,000 bytes and a last one sized so the whole body is exactly 512,000
    // bytes: `{"batch":[` + entries joined by commas + `]}`.
    let frame = br#"{"batch":[]}"#.len() + 16;
    let last = 512_000 - frame - 16 * 30_000;
    assert!(last <= limits.entry_bytes);
    let mut ops: Vec<Operation> = (0..16)
        .map(|i| identify_of_size(&format!("p{i:02}"), 30_000))
        .collect();
    ops.push(identify_of_size("p16", last));

    let encoded = encode_batch(&ops, &limits).expect("a body of exactly 500 KiB is accepted");
    assert_eq!(encoded.body.len(), 512_000);
    assert_eq!(encoded.sent, (0..17).collect::<Vec<_>>());
    assert!(encoded.rejected.is_empty());

    ops[16] = identify_of_size("p16", last + 1);
    assert_eq!(
        encode_batch(&ops, &limits)
            .map(|e| e.body.len())
            .unwrap_err(),
        too_large("batch", 512_000, 512_001)
    );
}

#[test]
fn a_segment_change_lists_1_to_1000_ids() {
    let segment = |n: usize| {
        Operation::SegmentMembership(SegmentMembership {
            segment_id: 7,
            change: SegmentChange::Remove,
            id_type: None,
            ids: (0..n).map(|i| format!("id-{i:04}")).collect(),
        })
    };
    assert_valid(&segment(1000));
    assert_valid(&segment(1));
    assert_eq!(
        validate_err(&segment(1001)),
        ValidationError::TooMany {
            field: "ids".into(),
            what: "ids",
            limit: 1000,
            actual: 1001,
        }
    );
    assert_eq!(
        validate_err(&segment(0)),
        ValidationError::Empty {
            field: "ids".into()
        }
    );
}

#[test]
fn limits_are_settings() {
    // Customer.io documents the event name as 100 bytes on one page and 500 characters on
    // another: a caller can choose.
    let limits = Limits {
        event_name_bytes: 500,
        ..Limits::default()
    };
    let named = event(EventSubject::Person(id("42")), &"e".repeat(500), attrs([]));
    assert_eq!(named.validate(&limits), Ok(()));
    assert_eq!(validate_err(&named), too_large("name", 100, 500));
}

/// Exactly one identifier: the types make two impossible when building an [`Operation`] in Rust,
/// so the rule is enforced where entries come in as JSON.
#[test]
fn a_person_entry_has_exactly_one_identifier() {
    let with = |ids: Value| json!({"type": "person", "identifiers": ids, "action": "delete"});
    let expected = "one of id, email, phone, cio_id";
    assert_eq!(
        decode_err(&with(json!({}))),
        ValidationError::IdentifierCount {
            field: "identifiers".into(),
            expected,
            found: vec![],
        }
    );
    let two = decode_err(&with(json!({"id": "42", "email": "jane@example.com"})));
    assert_eq!(
        two,
        ValidationError::IdentifierCount {
            field: "identifiers".into(),
            expected,
            found: vec!["email".into(), "id".into()],
        }
    );
    assert_eq!(
        two.to_string(),
        "identifiers must hold exactly one of id, email, phone, cio_id; found email, id"
    );
    assert_eq!(
        decode_err(&json!({"type": "person", "action": "merge",
            "primary": {"id": "42", "cio_id": "abc"}, "secondary": {"id": "43"}})),
        ValidationError::IdentifierCount {
            field: "primary".into(),
            expected,
            found: vec!["cio_id".into(), "id".into()],
        }
    );
    let rel = json!({"type": "object", "identifiers": {"cio_object_id": "o1"},
        "action": "add_relationships",
        "cio_relationships": [{"identifiers": {"id": "42", "email": "j@example.com"}}]});
    assert_eq!(decode_err(&rel).field(), "cio_relationships[0].identifiers");
    assert_eq!(
        decode_err(&with(json!({"user_id": "42"}))).field(),
        "identifiers.user_id"
    );
}

#[test]
fn an_object_entry_has_type_and_id_or_a_cio_object_id() {
    let with = |ids: Value| json!({"type": "object", "identifiers": ids, "action": "delete"});
    let expected = "object_type_id and object_id, or cio_object_id";
    for (ids, found) in [
        (json!({"object_id": "acme"}), vec!["object_id"]),
        (json!({}), vec![]),
        (
            json!({"object_type_id": "1", "object_id": "acme", "cio_object_id": "o1"}),
            vec!["cio_object_id", "object_id", "object_type_id"],
        ),
    ] {
        assert_eq!(
            decode_err(&with(ids)),
            ValidationError::IdentifierCount {
                field: "identifiers".into(),
                expected,
                found: found.into_iter().map(String::from).collect(),
            }
        );
    }
}

#[test]
fn required_fields_are_named_when_missing() {
    let person = |action: &str, extra: Value| {
        let mut v = json!({"type": "person", "identifiers": {"id": "42"}, "action": action});
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        v
    };
    let cases = [
        (
            json!({"identifiers": {"id": "42"}, "action": "delete"}),
            "type",
        ),
        (
            json!({"type": "person", "identifiers": {"id": "42"}}),
            "action",
        ),
        (
            json!({"type": "person", "action": "identify"}),
            "identifiers",
        ),
        (person("event", json!({})), "name"),
        (person("page", json!({})), "name"),
        (person("add_device", json!({})), "device"),
        (
            person("add_device", json!({"device": {"platform": "ios"}})),
            "device.token",
        ),
        (
            person("delete_device", json!({"device": {}})),
            "device.token",
        ),
        (person("add_relationships", json!({})), "cio_relationships"),
        (
            json!({"type": "person", "action": "merge", "primary": {"id": "1"}}),
            "secondary",
        ),
        (json!({"type": "object", "action": "delete"}), "identifiers"),
        (
            json!({"type": "delivery", "action": "event", "identifiers": {"id": "d1"}}),
            "name",
        ),
        (
            json!({"type": "segment", "action": "add_customers", "ids": ["1"]}),
            "segment_id",
        ),
        (
            json!({"type": "segment", "action": "add_customers", "segment_id": 7}),
            "ids",
        ),
        (
            json!({"type": "form", "action": "submit", "data": {}}),
            "form_id",
        ),
    ];
    for (entry, field) in cases {
        assert_eq!(decode_err(&entry), missing(field), "{entry}");
    }
}

#[test]
fn required_strings_must_not_be_empty() {
    let empty = |field: &str| ValidationError::Empty {
        field: field.into(),
    };
    assert_eq!(
        validate_err(&Operation::Delete(id(""))),
        empty("identifiers.id")
    );
    assert_eq!(
        validate_err(&event(EventSubject::Person(id("42")), "", attrs([]))),
        empty("name")
    );
    // An empty anonymous id is an invite, which needs a recipient.
    let invite = |data| event(EventSubject::Anonymous(String::new()), "invite", data);
    assert_eq!(validate_err(&invite(attrs([]))).field(), "anonymous_id");
    assert_valid(&invite(attrs([("recipient", json!("alex@example.com"))])));
}
