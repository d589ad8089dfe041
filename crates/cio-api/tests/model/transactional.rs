//! App API transactional messages: `TransactionalMessage::validate` and the SDK's bodies.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use cio_api::transactional::{MAX_ATTACHMENT_BYTES, MAX_RECIPIENTS};
use cio_api::{MessageIdentifiers, MessageKind, TransactionalMessage, ValidationError};
use serde_json::{json, Value};

use super::missing;

const FIXTURE: &str = include_str!("../fixtures/node_sdk_requests.json");

fn to_person(id: &str) -> MessageIdentifiers {
    MessageIdentifiers {
        id: Some(json!(id)),
        ..MessageIdentifiers::default()
    }
}

/// A template email to person 42.
fn template_email() -> TransactionalMessage {
    TransactionalMessage {
        transactional_message_id: Some(json!("welcome")),
        identifiers: to_person("42"),
        to: Some("jane@example.com".into()),
        ..TransactionalMessage::default()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[test]
fn a_message_has_exactly_one_identifier() {
    assert_eq!(template_email().validate(MessageKind::Email), Ok(()));
    for (ids, found) in [
        (MessageIdentifiers::default(), vec![]),
        (
            MessageIdentifiers {
                id: Some(json!(42)),
                email: Some("jane@example.com".into()),
                cio_id: None,
            },
            vec!["id", "email"],
        ),
        (
            MessageIdentifiers {
                id: None,
                email: Some("jane@example.com".into()),
                cio_id: Some("03000001a2b3".into()),
            },
            vec!["email", "cio_id"],
        ),
    ] {
        let msg = TransactionalMessage {
            identifiers: ids,
            ..template_email()
        };
        assert_eq!(
            msg.validate(MessageKind::Email),
            Err(ValidationError::IdentifierCount {
                field: "identifiers".into(),
                expected: "one of id, email, cio_id",
                found: found.into_iter().map(String::from).collect(),
            })
        );
    }
}

#[test]
fn an_email_without_a_template_needs_to_from_subject_and_body() {
    let full = TransactionalMessage {
        transactional_message_id: None,
        from: Some("support@example.com".into()),
        subject: Some("Your receipt".into()),
        body: Some("<p>Thanks!</p>".into()),
        ..template_email()
    };
    assert_eq!(full.validate(MessageKind::Email), Ok(()));
    let without = |f: fn(&mut TransactionalMessage)| {
        let mut m = full.clone();
        f(&mut m);
        m.validate(MessageKind::Email)
    };
    assert_eq!(without(|m| m.to = None), Err(missing("to")));
    assert_eq!(without(|m| m.from = None), Err(missing("from")));
    assert_eq!(without(|m| m.subject = None), Err(missing("subject")));
    assert_eq!(without(|m| m.body = None), Err(missing("body")));
    // A template supplies from, subject and body.
    assert_eq!(template_email().validate(MessageKind::Email), Ok(()));
    // Other channels always need a template.
    let push = TransactionalMessage {
        transactional_message_id: None,
        ..template_email()
    };
    assert_eq!(
        push.validate(MessageKind::Push),
        Err(missing("transactional_message_id"))
    );
}

#[test]
fn an_email_has_at_most_15_recipients_across_to_cc_and_bcc() {
    let addresses = |n: usize, tag: &str| {
        (0..n)
            .map(|i| format!("{tag}{i}@example.com"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let with = |cc: usize, bcc: usize| TransactionalMessage {
        cc: Some(addresses(cc, "cc")),
        bcc: Some(addresses(bcc, "bcc")),
        ..template_email()
    };
    assert_eq!(MAX_RECIPIENTS, 15);
    assert_eq!(with(7, 7).validate(MessageKind::Email), Ok(())); // 1 + 7 + 7
    assert_eq!(
        with(7, 8).validate(MessageKind::Email),
        Err(ValidationError::TooMany {
            field: "to, cc and bcc".into(),
            what: "recipients",
            limit: 15,
            actual: 16,
        })
    );
}

#[test]
fn attachments_are_at_most_2_mib_in_total() {
    assert_eq!(MAX_ATTACHMENT_BYTES, 2 * 1024 * 1024);
    let with = |second: usize| TransactionalMessage {
        attachments: Some(BTreeMap::from([
            ("invoice.pdf".to_owned(), "A".repeat(1024 * 1024)),
            ("terms.pdf".to_owned(), "B".repeat(second)),
        ])),
        ..template_email()
    };
    assert_eq!(with(1024 * 1024).validate(MessageKind::Email), Ok(()));
    assert_eq!(
        with(1024 * 1024 + 1).validate(MessageKind::Email),
        Err(ValidationError::TooLarge {
            field: "attachments".into(),
            limit: 2 * 1024 * 1024,
            actual: 2 * 1024 * 1024 + 1,
        })
    );
}

#[test]
fn send_at_is_at_most_90_days_ahead() {
    let day = 24 * 3600;
    let at = |t: i64| TransactionalMessage {
        send_at: Some(t),
        ..template_email()
    };
    // A minute either side of the boundary, so the test does not depend on the clock's tick.
    assert_eq!(
        at(now() + 90 * day - 60).validate(MessageKind::Email),
        Ok(())
    );
    assert_eq!(at(now() - day).validate(MessageKind::Email), Ok(()));
    match at(now() + 90 * day + 60).validate(MessageKind::Email) {
        Err(ValidationError::Invalid { field, reason }) => {
            assert_eq!(field, "send_at");
            assert!(reason.contains("more than 90 days ahead"), "{reason}");
        }
        other => panic!("expected send_at to be refused, got {other:?}"),
    }
}

/// The SDK's `/v1/send/*` bodies deserialize, pass validation, and serialize back unchanged
/// (channel-specific fields such as push `custom_device` travel in `extra`).
#[test]
fn node_sdk_send_bodies_round_trip() {
    let all: Vec<Value> = serde_json::from_str(FIXTURE).expect("the fixture is JSON");
    let sends: Vec<&Value> = all
        .iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/v1/send/"))
        })
        .collect();
    assert!(sends.len() >= 8, "the fixture lost its send entries");
    for entry in sends {
        let path = entry["path"].as_str().unwrap_or_default();
        let kind = MessageKind::parse(path.trim_start_matches("/v1/send/"))
            .unwrap_or_else(|| panic!("unknown channel in {path}"));
        let msg: TransactionalMessage = serde_json::from_value(entry["body"].clone())
            .unwrap_or_else(|e| panic!("{}: {e}", entry["call"]));
        assert_eq!(msg.validate(kind), Ok(()), "{}", entry["call"]);
        assert_eq!(
            serde_json::to_value(&msg).ok().as_ref(),
            Some(&entry["body"]),
            "{}",
            entry["call"]
        );
    }
}
