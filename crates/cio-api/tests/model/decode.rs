//! `Operation::from_json`: every entry the model knows round-trips unchanged, and a bad entry is
//! refused with an error that names the field.

use cio_api::{
    DecodeError, DeliveryEvent, EventSubject, ObjectIdentifier, Operation, PersonIdentifier,
    SegmentChange, SegmentIdType, SegmentMembership, ValidationError,
};
use serde_json::{json, Value};

use super::*;

/// Entries in canonical form (what `to_json` writes), one per action and identifier shape.
fn canonical_entries() -> Vec<Value> {
    let object = json!({"object_type_id": "1", "object_id": "acme"});
    vec![
        // person
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "identify",
            "attributes": {"email": "jane@example.com", "plan": "pro", "created_at": 1_700_000_000,
                "_update": true, "prefs": {"news": false}},
            "cio_relationships": [{"identifiers": object, "relationship_attributes": {"role": "admin"}}],
            "timestamp": 1_700_000_100}),
        json!({"type": "person", "identifiers": {"email": "jane@example.com"}, "action": "identify",
            "attributes": {}}),
        json!({"type": "person", "identifiers": {"phone": "+15555550123"}, "action": "identify",
            "attributes": {"sms_opt_in": true}}),
        json!({"type": "person", "identifiers": {"cio_id": "03000001a2b3"}, "action": "identify",
            "attributes": {"email": "new@example.com"}}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "delete"}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "event", "name": "purchase",
            "id": "01HZX9QK7J8M2N3P4Q5R6S7T8V", "timestamp": 1_700_000_000,
            "attributes": {"price": 23.45, "items": [{"sku": "socks"}]}}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "event", "name": "updated"}),
        json!({"type": "person", "anonymous_id": "anon-5f3e2a", "action": "event",
            "name": "viewed_pricing", "attributes": {"plan": "pro"}}),
        json!({"type": "person", "anonymous_id": "", "action": "event", "name": "invite",
            "attributes": {"recipient": "alex@example.com"}}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "page",
            "name": "https://example.com/pricing?ref=nav", "attributes": {"referrer": "/home"}}),
        json!({"type": "person", "identifiers": {"email": "jane@example.com"}, "action": "screen",
            "name": "Settings", "timestamp": 1_700_000_000}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "add_relationships",
            "cio_relationships": [{"identifiers": object}, {"identifiers": {"cio_object_id": "o9"}}]}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "delete_relationships",
            "cio_relationships": [{"identifiers": object}]}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "add_device",
            "device": {"token": "apns-token-abc123", "platform": "ios", "last_used": 1_700_000_000,
                "attributes": {"app_version": "2.3.1", "primary": true}}}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "add_device",
            "device": {"token": "fcm-token-def456"}}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "delete_device",
            "device": {"token": "apns-token-abc123"}}),
        json!({"type": "person", "action": "merge", "primary": {"id": "42"},
            "secondary": {"email": "dup@example.com"}}),
        json!({"type": "person", "action": "merge", "primary": {"cio_id": "03000001a2b3"},
            "secondary": {"id": "43"}}),
        json!({"type": "person", "identifiers": {"id": "42"}, "action": "suppress"}),
        json!({"type": "person", "identifiers": {"email": "jane@example.com"}, "action": "unsuppress"}),
        // object
        json!({"type": "object", "identifiers": object, "action": "identify",
            "attributes": {"name": "Acme", "plan": "enterprise"},
            "cio_relationships": [{"identifiers": {"id": "42"}, "relationship_attributes": {"role": "owner"}}]}),
        json!({"type": "object", "identifiers": {"cio_object_id": "o9"}, "action": "identify",
            "attributes": {"name": "Initech"}}),
        json!({"type": "object", "identifiers": object, "action": "delete"}),
        json!({"type": "object", "identifiers": {"cio_object_id": "o9"}, "action": "delete"}),
        json!({"type": "object", "identifiers": object, "action": "add_relationships",
            "cio_relationships": [{"identifiers": {"email": "jane@example.com"}}]}),
        json!({"type": "object", "identifiers": {"cio_object_id": "o9"}, "action": "delete_relationships",
            "cio_relationships": [{"identifiers": {"cio_id": "03000001a2b3"}}]}),
        // delivery
        json!({"type": "delivery", "identifiers": {"id": "RPILAgUBcRhIBqSfeiIwdIYJKxTY"},
            "action": "event", "name": "opened", "timestamp": 1_613_063_089,
            "attributes": {"device_token": "apns-token-abc123"}}),
        json!({"type": "delivery", "identifiers": {"id": "RPILAgUBcRhIBqSfeiIwdIYJKxTY"},
            "action": "event", "name": "converted", "attributes": {"recipient": "jane@example.com"}}),
        json!({"type": "delivery", "identifiers": {"id": "RPILAgUBcRhIBqSfeiIwdIYJKxTY"},
            "action": "event", "name": "delivered"}),
        // our v1-only entry types
        json!({"type": "segment", "action": "add_customers", "segment_id": 7, "id_type": "email",
            "ids": ["a+b@example.com"]}),
        json!({"type": "segment", "action": "remove_customers", "segment_id": 7, "ids": ["42", "43"]}),
        json!({"type": "form", "action": "submit", "form_id": "signup",
            "data": {"email": "jane@example.com", "plan": "pro"}}),
    ]
}

#[test]
fn every_entry_round_trips_unchanged() {
    let entries = canonical_entries();
    let mut actions = std::collections::BTreeSet::new();
    for entry in &entries {
        let op = decode(entry);
        let json = op.to_json();
        let back: Value = serde_json::from_slice(&json).expect("to_json writes JSON");
        assert_eq!(&back, entry, "to_json changed the entry");
        assert_eq!(
            Operation::from_json(&json).ok().as_ref(),
            Some(&op),
            "{entry}"
        );
        assert_valid(&op);
        actions.insert(format!("{}/{}", op.entry_type(), op.action_name()));
    }
    let expected = [
        "delivery/event",
        "form/submit",
        "object/add_relationships",
        "object/delete",
        "object/delete_relationships",
        "object/identify",
        "person/add_device",
        "person/add_relationships",
        "person/delete",
        "person/delete_device",
        "person/delete_relationships",
        "person/event",
        "person/identify",
        "person/merge",
        "person/page",
        "person/screen",
        "person/suppress",
        "person/unsuppress",
        "segment/add_customers",
        "segment/remove_customers",
    ];
    assert_eq!(
        actions.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn decoding_builds_the_operation_a_rust_caller_would() {
    assert_eq!(
        decode(
            &json!({"type": "person", "anonymous_id": "anon-1", "action": "event",
            "name": "viewed", "attributes": {"plan": "pro"}})
        ),
        event(
            EventSubject::Anonymous("anon-1".into()),
            "viewed",
            attrs([("plan", json!("pro"))])
        )
    );
    // The delivery's device token is a field of its own, not an attribute.
    assert_eq!(
        decode(
            &json!({"type": "delivery", "identifiers": {"id": "d1"}, "action": "event",
            "name": "opened", "attributes": {"device_token": "tok", "recipient": "r@example.com"}})
        ),
        Operation::DeliveryEvent(DeliveryEvent {
            delivery_id: "d1".into(),
            metric: "opened".into(),
            timestamp: None,
            device_token: Some("tok".into()),
            attributes: attrs([("recipient", json!("r@example.com"))]),
        })
    );
}

#[test]
fn numeric_ids_are_accepted_and_sent_as_strings() {
    let op = decode(&json!({"type": "person", "identifiers": {"id": 42}, "action": "delete"}));
    assert_eq!(op, Operation::Delete(id("42")));
    let written: Value = serde_json::from_slice(&op.to_json()).expect("JSON");
    assert_eq!(written["identifiers"], json!({"id": "42"}));

    let object = decode(&json!({"type": "object",
        "identifiers": {"object_type_id": 1, "object_id": 1001}, "action": "delete"}));
    assert_eq!(
        object,
        Operation::ObjectDelete(ObjectIdentifier::Object {
            object_type_id: "1".into(),
            object_id: "1001".into(),
        })
    );
    let merge = decode(&json!({"type": "person", "action": "merge",
        "primary": {"cio_id": "03000001a2b3"}, "secondary": {"id": 43}}));
    assert_eq!(
        merge,
        Operation::Merge(cio_api::Merge {
            primary: PersonIdentifier::CioId("03000001a2b3".into()),
            secondary: id("43"),
        })
    );
    let segment = decode(
        &json!({"type": "segment", "action": "add_customers", "segment_id": 7,
        "id_type": "id", "ids": [42, "43"]}),
    );
    assert_eq!(
        segment,
        Operation::SegmentMembership(SegmentMembership {
            segment_id: 7,
            change: SegmentChange::Add,
            id_type: Some(SegmentIdType::Id),
            ids: vec!["42".into(), "43".into()],
        })
    );

    // Only integers: a fraction or a boolean is not an id.
    for bad in [json!(4.2), json!(true), json!(null)] {
        let err =
            decode_err(&json!({"type": "person", "identifiers": {"id": bad}, "action": "delete"}));
        assert_eq!(err.field(), "identifiers.id");
        assert!(
            err.to_string().contains("must be a string or an integer"),
            "{err}"
        );
    }
}

fn invalid_reason(entry: &Value, field: &str) -> String {
    match decode_err(entry) {
        ValidationError::Invalid { field: f, reason } if f == field => reason,
        other => panic!("{entry}: expected an invalid {field}, got {other:?}"),
    }
}

#[test]
fn unknown_types_and_actions_are_named_with_the_choices() {
    let reason = invalid_reason(
        &json!({"type": "company", "identifiers": {"id": "42"}, "action": "identify"}),
        "type",
    );
    assert!(reason.contains("\"company\""), "{reason}");
    assert!(reason.contains("person, object, delivery"), "{reason}");

    for (entry_type, identifiers, action, choices) in [
        (
            "person",
            json!({"id": "42"}),
            "upsert",
            "identify, delete, event",
        ),
        (
            "object",
            json!({"cio_object_id": "o9"}),
            "merge",
            "identify, delete",
        ),
        ("delivery", json!({"id": "d1"}), "clicked", "expected event"),
        (
            "segment",
            json!({}),
            "add",
            "add_customers or remove_customers",
        ),
        ("form", json!({}), "send", "expected submit"),
    ] {
        let entry = json!({"type": entry_type, "identifiers": identifiers, "action": action});
        let reason = invalid_reason(&entry, "action");
        assert!(reason.contains(&format!("{action:?}")), "{reason}");
        assert!(reason.contains(choices), "{reason}");
    }
}

#[test]
fn v1_data_on_a_v2_entry_says_to_use_attributes() {
    for action in ["event", "page", "screen", "identify"] {
        let entry = json!({"type": "person", "identifiers": {"id": "42"}, "action": action,
            "name": "purchase", "data": {"price": 23.45}});
        let reason = invalid_reason(&entry, "data");
        assert!(reason.contains("`attributes`"), "{reason}");
    }
}

#[test]
fn v1_device_id_on_a_v2_entry_says_to_use_token() {
    for action in ["add_device", "delete_device"] {
        let entry = json!({"type": "person", "identifiers": {"id": "42"}, "action": action,
            "device": {"id": "apns-token-abc123", "platform": "ios"}});
        let reason = invalid_reason(&entry, "device.id");
        assert!(reason.contains("device.token"), "{reason}");
    }
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let misspelt = json!({"type": "person", "identifiers": {"id": "42"}, "action": "identify",
        "atributes": {"plan": "pro"}});
    match Operation::from_json(misspelt.to_string().as_bytes()) {
        Err(e @ DecodeError::Json(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("unknown field `atributes`"), "{msg}");
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
    let nested = json!({"type": "person", "identifiers": {"id": "42"}, "action": "add_device",
        "device": {"token": "t", "os": "ios"}});
    let msg = Operation::from_json(nested.to_string().as_bytes())
        .expect_err("refused")
        .to_string();
    assert!(msg.contains("unknown field `os`"), "{msg}");

    // A known field that means nothing for this action would be dropped: refused too.
    let reason = invalid_reason(
        &json!({"type": "person", "identifiers": {"id": "42"}, "action": "delete", "name": "x"}),
        "name",
    );
    assert!(reason.contains("would be ignored"), "{reason}");
    invalid_reason(
        &json!({"type": "person", "identifiers": {"id": "42"}, "action": "identify",
            "anonymous_id": "anon-1"}),
        "anonymous_id",
    );
}

#[test]
fn identifiers_and_anonymous_id_together_are_refused() {
    let reason = invalid_reason(
        &json!({"type": "person", "identifiers": {"id": "42"}, "anonymous_id": "anon-1",
            "action": "event", "name": "signup"}),
        "identifiers",
    );
    assert!(reason.contains("not both"), "{reason}");
    let reason = invalid_reason(
        &json!({"type": "person", "action": "event", "name": "signup"}),
        "identifiers",
    );
    assert!(reason.contains("anonymous_id"), "{reason}");
}

#[test]
fn wrongly_shaped_values_are_refused() {
    let reason = invalid_reason(
        &json!({"type": "person", "identifiers": {"id": "42"}, "action": "identify",
            "attributes": ["plan", "pro"]}),
        "attributes",
    );
    assert!(
        reason.contains("must be a JSON object, found an array"),
        "{reason}"
    );
    invalid_reason(
        &json!({"type": "person", "action": "merge", "primary": {"phone": "+15555550123"},
            "secondary": {"id": "43"}}),
        "primary.phone",
    );
    invalid_reason(
        &json!({"type": "segment", "action": "add_customers", "segment_id": 7,
            "id_type": "phone", "ids": ["1"]}),
        "id_type",
    );
    invalid_reason(
        &json!({"type": "delivery", "identifiers": {"email": "j@example.com"},
            "action": "event", "name": "opened"}),
        "identifiers",
    );
    assert!(Operation::from_json(b"{\"type\":\"person\"").is_err());
    assert!(Operation::from_json(b"[]").is_err());
}

#[test]
fn phone_identifiers_and_objects_are_v2_only() {
    let phone = Operation::Delete(PersonIdentifier::Phone("+15555550123".into()));
    assert_valid(&phone);
    let err = phone
        .to_v1()
        .expect_err("phone cannot address a person in v1");
    assert!(matches!(err, cio_api::Error::Unsupported { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let object = Operation::ObjectDelete(ObjectIdentifier::CioObjectId("o9".into()));
    let err = object.to_v1().expect_err("objects exist only in v2");
    assert!(err.to_string().contains("BatchClient"), "{err}");
    let rel = decode(&json!({"type": "person", "identifiers": {"id": "42"},
        "action": "add_relationships", "cio_relationships": [{"identifiers": {"cio_object_id": "o9"}}]}));
    assert!(rel.to_v1().is_err());
    // The anonymous-event subject is not one of these.
    assert!(event(EventSubject::Anonymous("a".into()), "e", attrs([]))
        .to_v1()
        .is_ok());
}

#[test]
fn a_timestamp_that_would_be_dropped_is_refused_and_merge_refuses_phones() {
    let err = Operation::from_json(
        br#"{"type":"person","identifiers":{"id":"1"},"action":"delete","timestamp":1700000000}"#,
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("timestamp"));
    assert!(
        err.to_string().contains("not a field of a delete entry"),
        "{err}"
    );
    let err = Operation::from_json(br#"{"type":"object","identifiers":{"cio_object_id":"o"},"action":"identify","timestamp":1}"#)
        .unwrap_err();
    assert!(
        err.to_string().contains("not a field of an identify entry"),
        "{err}"
    );
    let merge = Operation::Merge(cio_api::Merge {
        primary: cio_api::PersonIdentifier::Phone("+15555550123".into()),
        secondary: cio_api::PersonIdentifier::Id("1".into()),
    });
    let err = merge.validate(&cio_api::Limits::default()).unwrap_err();
    assert_eq!(err.field(), "primary.phone");
}
