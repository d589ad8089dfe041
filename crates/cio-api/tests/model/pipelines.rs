//! Pipelines (CDP): `PipelinesRequest::encode` checks required fields and sizes, because an
//! over-size request gets a 200 from Customer.io and is silently dropped.

use cio_api::{CallKind, Limits, PipelinesCall, PipelinesRequest, ValidationError};
use serde_json::{json, Value};

use super::{attrs, missing, padding_for, too_large};

fn user(kind: Option<CallKind>) -> PipelinesCall {
    PipelinesCall {
        kind,
        user_id: Some("42".into()),
        ..PipelinesCall::default()
    }
}

fn call(kind: CallKind, c: PipelinesCall) -> Result<Vec<u8>, ValidationError> {
    PipelinesRequest::Call(kind, c).encode(&Limits::default())
}

fn batch(calls: Vec<PipelinesCall>) -> Result<Vec<u8>, ValidationError> {
    PipelinesRequest::Batch {
        batch: calls,
        context: None,
        integrations: None,
    }
    .encode(&Limits::default())
}

/// A track call whose JSON grows by one byte per byte of `pad`.
fn track_with_padding(kind: Option<CallKind>, pad: usize) -> PipelinesCall {
    PipelinesCall {
        event: Some("Order Completed".into()),
        properties: Some(attrs([
            ("order_id", json!("ord-1001")),
            ("total", json!(23.45)),
            ("note", Value::String("x".repeat(pad))),
        ])),
        ..user(kind)
    }
}

#[test]
fn each_kind_has_its_required_fields() {
    // track needs an event
    assert_eq!(call(CallKind::Track, user(None)), Err(missing("event")));
    let track = PipelinesCall {
        event: Some("Signed Up".into()),
        ..user(None)
    };
    assert!(call(CallKind::Track, track).is_ok());
    // group needs a groupId
    assert_eq!(call(CallKind::Group, user(None)), Err(missing("groupId")));
    let group = PipelinesCall {
        group_id: Some("acme".into()),
        ..user(None)
    };
    assert!(call(CallKind::Group, group).is_ok());
    // alias needs previousId and userId (an anonymousId does not do)
    assert_eq!(
        call(CallKind::Alias, user(None)),
        Err(missing("previousId"))
    );
    let alias = PipelinesCall {
        previous_id: Some("anon-1".into()),
        ..PipelinesCall::default()
    };
    assert_eq!(
        call(
            CallKind::Alias,
            PipelinesCall {
                anonymous_id: Some("anon-1".into()),
                ..alias.clone()
            }
        ),
        Err(missing("userId"))
    );
    assert!(call(
        CallKind::Alias,
        PipelinesCall {
            user_id: Some("42".into()),
            ..alias
        }
    )
    .is_ok());
    // everything else needs a userId or an anonymousId
    for kind in [
        CallKind::Identify,
        CallKind::Page,
        CallKind::Screen,
        CallKind::Track,
        CallKind::Group,
    ] {
        let nobody = PipelinesCall {
            event: Some("e".into()),
            group_id: Some("g".into()),
            ..PipelinesCall::default()
        };
        assert_eq!(
            call(kind, nobody.clone()),
            Err(missing("userId or anonymousId")),
            "{kind:?}"
        );
        let anonymous = PipelinesCall {
            anonymous_id: Some("anon-1".into()),
            ..nobody
        };
        assert!(call(kind, anonymous).is_ok(), "{kind:?}");
    }
}

#[test]
fn a_call_is_at_most_32_kib() {
    let size = |pad: usize| {
        serde_json::to_vec(&track_with_padding(None, pad))
            .map(|v| v.len())
            .unwrap_or(0)
    };
    let pad = padding_for(32_768, size);
    let body = call(CallKind::Track, track_with_padding(None, pad)).expect("exactly 32 KiB passes");
    assert_eq!(body.len(), 32_768);
    assert_eq!(
        call(CallKind::Track, track_with_padding(None, pad + 1)),
        Err(too_large("body", 32_768, 32_769))
    );
}

#[test]
fn a_batch_is_at_most_500_kib() {
    // 16 calls of about 30 KB and a last one padded so the body is exactly 512,000 bytes.
    let calls = |last_pad: usize| {
        let mut v: Vec<PipelinesCall> = (0..16)
            .map(|_| track_with_padding(Some(CallKind::Track), 30_000))
            .collect();
        v.push(track_with_padding(Some(CallKind::Track), last_pad));
        v
    };
    let size = |pad: usize| json!({ "batch": calls(pad) }).to_string().len();
    let pad = padding_for(512_000, size);
    let last_entry = serde_json::to_vec(&track_with_padding(Some(CallKind::Track), pad))
        .map(|v| v.len())
        .unwrap_or(0);
    assert!(
        last_entry <= 32_768,
        "every call stays within its own limit"
    );

    let body = batch(calls(pad)).expect("exactly 500 KiB passes");
    assert_eq!(body.len(), 512_000);
    assert_eq!(
        batch(calls(pad + 1)),
        Err(too_large("batch", 512_000, 512_001))
    );
}

#[test]
fn batch_entries_are_checked_one_by_one() {
    let typed = || user(Some(CallKind::Identify));
    // every entry names its type
    assert_eq!(
        batch(vec![typed(), user(None)]),
        Err(missing("batch[1].type"))
    );
    // and has that type's required fields
    assert_eq!(
        batch(vec![typed(), typed(), user(Some(CallKind::Track))]),
        Err(missing("batch[2].event"))
    );
    let nobody = PipelinesCall {
        kind: Some(CallKind::Page),
        ..PipelinesCall::default()
    };
    assert_eq!(
        batch(vec![nobody]),
        Err(missing("batch[0].userId or batch[0].anonymousId"))
    );
    // and stays within 32 KiB
    let big = track_with_padding(Some(CallKind::Track), 32_768);
    match batch(vec![typed(), big]) {
        Err(ValidationError::TooLarge { field, limit, .. }) => {
            assert_eq!((field.as_str(), limit), ("batch[1]", 32_768));
        }
        other => panic!("expected the big entry to be refused, got {other:?}"),
    }
    assert_eq!(
        batch(vec![]),
        Err(ValidationError::Empty {
            field: "batch".into()
        })
    );
}

#[test]
fn batch_context_and_integrations_are_sent_once_for_all_entries() {
    let body = PipelinesRequest::Batch {
        batch: vec![user(Some(CallKind::Identify))],
        context: Some(attrs([("library", json!({"name": "cio-rs"}))])),
        integrations: Some(json!({"All": true})),
    }
    .encode(&Limits::default())
    .expect("valid");
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        v,
        json!({"batch": [{"type": "identify", "userId": "42"}],
            "context": {"library": {"name": "cio-rs"}}, "integrations": {"All": true}})
    );
}
