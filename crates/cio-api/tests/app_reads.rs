//! The App API reads of people through `AppClient`: typed answers from the stateful mock, the
//! App API's 10 requests/s kept by the client's rate limit layer, reads retried like any
//! idempotent request, and a person Customer.io does not know as `None`.

#[allow(dead_code)]
mod scripted;

use std::time::{Duration, Instant};

use cio_api::{
    ActivityQuery, AppClient, AppCredentials, BatchClient, Operation, PersonIdentifier,
    TrackCredentials,
};
use cio_mock::MockServer;
use serde_json::json;
use tower::ServiceExt;

use scripted::{Script, ScriptedServer};

fn id(v: &str) -> PersonIdentifier {
    PersonIdentifier::Id(v.into())
}

#[tokio::test]
async fn reads_answer_what_was_sent_typed() {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let batch = BatchClient::new(mock.region(), TrackCredentials::new("site", "key"));
    let mut ops: Vec<Operation> = vec![Operation::from_value(json!({
        "type": "person", "identifiers": {"id": "42"}, "action": "identify",
        "attributes": {"email": "ada+1@example.com", "plan": "pro"}, "timestamp": 1_700_000_000
    }))
    .unwrap()];
    for i in 0..12 {
        ops.push(
            Operation::from_value(json!({
                "type": "person", "identifiers": {"id": "42"}, "action": "event",
                "name": if i % 2 == 0 { "viewed" } else { "clicked" },
                "id": format!("01J00000000000000000000{i:03}"), "timestamp": 1_700_000_100 + i,
                "attributes": {"n": i}
            }))
            .unwrap(),
        );
    }
    ops.push(
        Operation::from_value(json!({"type": "person", "identifiers": {"id": "42"},
            "action": "add_device", "device": {"token": "tok", "platform": "ios"}}))
        .unwrap(),
    );
    batch.clone().oneshot(ops).await.unwrap();

    let app = AppClient::new(mock.region(), AppCredentials::new("app"));
    let c = app.attributes(&id("42")).await.unwrap().expect("person 42");
    assert_eq!(c.identifiers.email.as_deref(), Some("ada+1@example.com"));
    assert_eq!(c.attributes["plan"], "pro");
    assert_eq!(c.timestamps["plan"], 1_700_000_000);
    assert_eq!(c.devices[0].id, "tok");
    let by_email = app
        .attributes(&PersonIdentifier::Email("ada+1@example.com".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email, c);
    assert_eq!(app.attributes(&id("nobody")).await.unwrap(), None);

    let found = app.customers_by_email("ada+1@example.com").await.unwrap();
    assert_eq!(found[0].id.as_deref(), Some("42"));
    assert!(app
        .customers_by_email("x@example.com")
        .await
        .unwrap()
        .is_empty());

    let many = app
        .customers_attributes(&["42".into(), "missing".into()])
        .await
        .unwrap();
    assert_eq!(many.len(), 1);
    let too_many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let err = app.customers_attributes(&too_many).await.unwrap_err();
    assert!(err.to_string().contains("over the limit of 100"), "{err}");

    assert_eq!(app.segments(&id("42")).await.unwrap(), Some(vec![]));
    assert_eq!(app.segments(&id("nobody")).await.unwrap(), None);

    // Activities: newest first, paged with the cursor, filtered by name.
    let q = ActivityQuery {
        limit: Some(5),
        ..ActivityQuery::default()
    };
    let page = app.activities(&id("42"), &q).await.unwrap().unwrap();
    let ns: Vec<i64> = page
        .activities
        .iter()
        .map(|a| a.data["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [11, 10, 9, 8, 7]);
    let q2 = ActivityQuery {
        start: page.next.clone(),
        ..q.clone()
    };
    let page2 = app.activities(&id("42"), &q2).await.unwrap().unwrap();
    assert_eq!(page2.activities[0].data["n"], 6);
    let viewed = ActivityQuery {
        name: Some("viewed".into()),
        limit: Some(100),
        ..ActivityQuery::default()
    };
    let all = app.activities(&id("42"), &viewed).await.unwrap().unwrap();
    assert_eq!(all.activities.len(), 6);
    assert_eq!(all.next, None);
    assert_eq!(mock.stats().rate_limited, 0);
}

/// The client waits for the App API's 10 requests/s: 25 reads against a mock that enforces it
/// take at least 1.4 s and meet no 429. Without the client's limit, the mock's 429s are met
/// and retried, and every read still succeeds.
#[tokio::test]
async fn reads_keep_the_app_api_limit_and_retry_what_it_refuses() {
    let mock = MockServer::builder().start().await.unwrap();
    let app = AppClient::new(mock.region(), AppCredentials::new("app"));
    let started = Instant::now();
    let reads: Vec<_> = (0..25)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { app.attributes(&id(&i.to_string())).await })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap().unwrap(), None);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1_400),
        "25 reads at 10/s with a burst of 10 take at least 1.5 s: {:?}",
        started.elapsed()
    );
    assert_eq!(mock.stats().rate_limited, 0, "the client kept the limit");

    let unlimited = app.clone().rate_limit(None);
    let reads: Vec<_> = (0..25)
        .map(|i| {
            let app = unlimited.clone();
            tokio::spawn(async move { app.segments(&id(&i.to_string())).await })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap().unwrap(), None, "retried until answered");
    }
    assert!(mock.stats().rate_limited > 0, "the mock refused some");
}

/// A read that met a 503 or a broken answer is sent again (reads change nothing); with
/// retries off the 503 is the answer.
#[tokio::test]
async fn reads_are_retried_as_idempotent_requests() {
    let server = ScriptedServer::start(vec![
        Script::respond(503, &[], "{}"),
        Script::respond(
            200,
            &[],
            r#"{"customer":{"id":"42","identifiers":{"id":"42"},"attributes":{},"timestamps":{},"unsubscribed":false,"devices":[]}}"#,
        ),
        Script::respond(503, &[], "{}"),
    ])
    .await;
    let app = AppClient::new(server.region(), AppCredentials::new("app"));
    let c = app.attributes(&id("42")).await.unwrap().unwrap();
    assert_eq!(c.id.as_deref(), Some("42"));
    let heads = server.requests();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[1].starts_with("GET /v1/customers/42/attributes?id_type=id "),
        "{}",
        heads[1]
    );
    let err = app
        .clone()
        .retries(None)
        .segments(&id("42"))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
}
