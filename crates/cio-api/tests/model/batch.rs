//! `encode_batch`: one pass that validates every entry, keeps the valid ones in order, and
//! reports each refused one with its index in the caller's slice.

use cio_api::encode::encode_batch;
use cio_api::{
    EventSubject, FormSubmit, Limits, Operation, SegmentChange, SegmentMembership, ValidationError,
};
use serde_json::{json, Value};

use super::*;

fn body_entries(body: &[u8]) -> Vec<Value> {
    let v: Value = serde_json::from_slice(body).expect("the batch body is JSON");
    let obj = v.as_object().expect("the batch body is an object");
    assert_eq!(obj.len(), 1, "the body holds only `batch`: {v}");
    obj["batch"]
        .as_array()
        .expect("`batch` is an array")
        .clone()
}

fn entry_json(op: &Operation) -> Value {
    serde_json::from_slice(&op.to_json()).expect("an entry is JSON")
}

#[test]
fn refused_entries_keep_their_index_and_the_rest_are_sent_in_order() {
    let ops = vec![
        // 0: refused, first (no comma may be left behind)
        event(EventSubject::Person(id("42")), &"n".repeat(101), attrs([])),
        // 1: sent
        event(
            EventSubject::Person(id("42")),
            "signup",
            attrs([("plan", json!("pro"))]),
        ),
        // 2: refused: no v2 form
        Operation::SegmentMembership(SegmentMembership {
            segment_id: 7,
            change: SegmentChange::Add,
            id_type: None,
            ids: vec!["42".into()],
        }),
        // 3, 4: sent
        identify(id("43"), attrs([("plan", json!("basic"))])),
        Operation::Delete(id("44")),
        // 5: refused: the entry is over 32 KiB although every field is fine
        identify_of_size("45", 32_769),
        // 6: sent
        Operation::Suppress(id("46")),
        // 7: refused, last (no trailing comma)
        Operation::Delete(id("")),
    ];
    let encoded = encode_batch(&ops, &Limits::default()).expect("the batch fits");

    assert_eq!(encoded.sent, vec![1, 3, 4, 6]);
    let rejected: Vec<(usize, &str)> = encoded
        .rejected
        .iter()
        .map(|(i, e)| (*i, e.field()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (0, "batch[0].name"),
            (2, "batch[2].type"),
            (5, "batch[5].entry"),
            (7, "batch[7].identifiers.id"),
        ]
    );
    assert_eq!(encoded.rejected[0].1, too_large("batch[0].name", 100, 101));
    assert_eq!(
        encoded.rejected[2].1,
        too_large("batch[5].entry", 32_768, 32_769)
    );
    assert_eq!(
        encoded.rejected[3].1,
        ValidationError::Empty {
            field: "batch[7].identifiers.id".into()
        }
    );
    assert!(
        encoded.rejected[1].1.to_string().contains("v1 TrackClient"),
        "{}",
        encoded.rejected[1].1
    );

    let expected: Vec<Value> = encoded.sent.iter().map(|&i| entry_json(&ops[i])).collect();
    assert_eq!(body_entries(&encoded.body), expected);
}

#[test]
fn a_batch_of_only_refused_entries_has_no_body() {
    let ops = vec![
        Operation::Delete(id("")),
        Operation::FormSubmit(FormSubmit {
            form_id: "signup".into(),
            data: attrs([]),
        }),
    ];
    let encoded = encode_batch(&ops, &Limits::default()).expect("nothing to send is not an error");
    assert!(encoded.body.is_empty());
    assert!(encoded.sent.is_empty());
    assert_eq!(
        encoded.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 1]
    );
}

#[test]
fn a_batch_body_decodes_back_to_the_same_operations() {
    let ops = vec![
        identify(
            id("42"),
            attrs([("plan", json!("pro")), ("seats", json!(5))]),
        ),
        event(
            EventSubject::Anonymous("anon-1".into()),
            "viewed \"pricing\"\n",
            attrs([("path", json!("/pricing"))]),
        ),
        Operation::Unsuppress(PersonIdentifier::Email("jane@example.com".into())),
    ];
    let encoded = encode_batch(&ops, &Limits::default()).expect("valid");
    let decoded: Vec<Operation> = body_entries(&encoded.body).iter().map(decode).collect();
    assert_eq!(decoded, ops);
}
