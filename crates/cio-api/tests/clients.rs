//! Every client and every operation against the mock over a real socket, and every error class a
//! caller must handle (401, 400, 207, 429 in both `Retry-After` forms, 503, refused connection,
//! timeout, a kept-alive connection closed by the server, redirects).

mod scripted;

use std::collections::BTreeMap;
use std::time::Duration;

use cio_api::{
    AppClient, AppCredentials, AppRequest, BatchClient, BroadcastTrigger, CallKind, ClientOptions,
    EntryError, Error, Limits, MessageIdentifiers, MessageKind, Operation, PipelinesCall,
    PipelinesClient, PipelinesCredentials, PipelinesRequest, Region, TrackClient, TrackCredentials,
    TransactionalMessage,
};
use cio_mock::{Faults, MockServer};
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt};

use scripted::{Script, ScriptedServer};

fn creds() -> TrackCredentials {
    TrackCredentials::new("site", "key")
}

fn op(v: serde_json::Value) -> Operation {
    Operation::from_value(v).expect("a valid entry")
}

/// One of every Track v1 write, as entries.
fn every_v1_operation() -> Vec<Operation> {
    vec![
        op(
            json!({"type":"person","identifiers":{"id":"42"},"action":"identify","attributes":{"email":"jane@example.com","plan":"pro"},"timestamp":1700000000}),
        ),
        op(
            json!({"type":"person","identifiers":{"email":"a+b@example.com"},"action":"identify","attributes":{"first_name":"A"}}),
        ),
        op(
            json!({"type":"person","identifiers":{"cio_id":"03000001"},"action":"identify","attributes":{"email":"new@example.com"}}),
        ),
        op(
            json!({"type":"person","identifiers":{"id":"44"},"action":"identify","attributes":{},"cio_relationships":[{"identifiers":{"object_type_id":"1","object_id":"acme"},"relationship_attributes":{"role":"admin"}}]}),
        ),
        op(json!({"type":"person","identifiers":{"id":"43"},"action":"delete"})),
        op(json!({"type":"person","identifiers":{"id":"42"},"action":"suppress"})),
        op(json!({"type":"person","identifiers":{"id":"42"},"action":"unsuppress"})),
        op(
            json!({"type":"person","identifiers":{"id":"42"},"action":"event","name":"purchase","id":"01HZX9QK7J8M2N3P4Q5R6S7T8V","timestamp":1700000000,"attributes":{"price":23.45}}),
        ),
        op(
            json!({"type":"person","identifiers":{"id":"42"},"action":"page","name":"https://example.com/pricing","id":"01HZX9QK7J8M2N3P4Q5R6S7T8W"}),
        ),
        op(
            json!({"type":"person","identifiers":{"id":"42"},"action":"screen","name":"Home","id":"01HZX9QK7J8M2N3P4Q5R6S7T8X"}),
        ),
        op(
            json!({"type":"person","anonymous_id":"anon-1","action":"event","name":"viewed","id":"01HZX9QK7J8M2N3P4Q5R6S7T8Y"}),
        ),
        op(
            json!({"type":"person","anonymous_id":"","action":"event","name":"invite","attributes":{"recipient":"alex@example.com"}}),
        ),
        op(
            json!({"type":"person","identifiers":{"id":"42"},"action":"add_device","device":{"token":"apns-1","platform":"ios","last_used":1700000000,"attributes":{"app_version":"2.3.1"}}}),
        ),
        op(
            json!({"type":"person","identifiers":{"id":"42"},"action":"delete_device","device":{"token":"fcm:tok/en+1"}}),
        ),
        op(
            json!({"type":"person","action":"merge","primary":{"id":"42"},"secondary":{"email":"dup@example.com"}}),
        ),
        op(
            json!({"type":"delivery","identifiers":{"id":"RPILAgUB"},"action":"event","name":"opened","timestamp":1613063089}),
        ),
        op(
            json!({"type":"delivery","identifiers":{"id":"RPILAgUB"},"action":"event","name":"delivered","attributes":{"device_token":"apns-1"}}),
        ),
        op(json!({"type":"segment","action":"add_customers","segment_id":7,"ids":["42","43"]})),
        op(
            json!({"type":"segment","action":"remove_customers","segment_id":7,"id_type":"email","ids":["a@example.com"]}),
        ),
        op(
            json!({"type":"form","action":"submit","form_id":"signup","data":{"email":"jane@example.com"}}),
        ),
    ]
}

#[tokio::test]
async fn track_client_sends_every_v1_operation() {
    let mock = MockServer::builder()
        .track_credentials("site", "key")
        .unlimited()
        .start()
        .await
        .unwrap();
    let mut client = TrackClient::new(mock.region(), creds());
    let ops = every_v1_operation();
    for op in ops.clone() {
        let name = op.stat_name();
        let resp = client.ready().await.unwrap().call(op).await;
        let resp = resp.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(resp.status.is_success(), "{name}: {}", resp.status);
    }
    let stats = mock.stats();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for op in &ops {
        *expected.entry(op.stat_name().to_owned()).or_default() += 1;
    }
    assert_eq!(stats.accepted, expected);
    assert_eq!(stats.rejected, 0);
    // Four events carry ids; the invite does not.
    assert_eq!(stats.unique_event_ids, 4);
    assert_eq!(stats.events_without_id, 1);
    assert_eq!(
        stats.by_status.get("204"),
        Some(&1),
        "form submit answers 204"
    );
}

#[tokio::test]
async fn track_client_refuses_v2_only_operations_before_sending() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = TrackClient::new(mock.region(), creds());
    for v in [
        json!({"type":"object","identifiers":{"object_type_id":"1","object_id":"acme"},"action":"identify","attributes":{}}),
        json!({"type":"person","identifiers":{"phone":"+15555550123"},"action":"identify","attributes":{}}),
        json!({"type":"person","identifiers":{"id":"1"},"action":"add_relationships","cio_relationships":[{"identifiers":{"object_type_id":"1","object_id":"a"}}]}),
    ] {
        let err = client.clone().oneshot(op(v)).await.unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("BatchClient"), "{err}");
        assert!(!err.is_retryable());
    }
    assert_eq!(mock.stats().requests, 0);
}

#[tokio::test]
async fn batch_client_sends_every_v2_entry_type_and_action() {
    let mock = MockServer::builder()
        .track_credentials("site", "key")
        .start()
        .await
        .unwrap();
    let client = BatchClient::new(mock.region(), creds());
    let mut ops: Vec<Operation> = every_v1_operation()
        .into_iter()
        .filter(|o| o.has_v2_form())
        // v2 delivery entries are opened, converted or delivered; all of ours are.
        .collect();
    ops.extend([
        op(json!({"type":"person","identifiers":{"phone":"+15555550123"},"action":"identify","attributes":{"plan":"pro"}})),
        op(json!({"type":"person","identifiers":{"id":"42"},"action":"add_relationships","cio_relationships":[{"identifiers":{"object_type_id":"1","object_id":"acme"},"relationship_attributes":{"role":"admin"}}]})),
        op(json!({"type":"person","identifiers":{"id":"42"},"action":"delete_relationships","cio_relationships":[{"identifiers":{"cio_object_id":"obj1"}}]})),
        op(json!({"type":"object","identifiers":{"object_type_id":"1","object_id":"acme"},"action":"identify","attributes":{"name":"Acme"},"cio_relationships":[{"identifiers":{"id":"42"}}]})),
        op(json!({"type":"object","identifiers":{"cio_object_id":"obj1"},"action":"delete"})),
        op(json!({"type":"object","identifiers":{"object_type_id":"1","object_id":"acme"},"action":"add_relationships","cio_relationships":[{"identifiers":{"email":"jane@example.com"}}]})),
        op(json!({"type":"object","identifiers":{"object_type_id":"1","object_id":"acme"},"action":"delete_relationships","cio_relationships":[{"identifiers":{"id":"42"}}]})),
    ]);
    let n = ops.len();
    let answer = client.clone().oneshot(ops.clone()).await.unwrap();
    assert_eq!(answer.status, Some(http::StatusCode::OK));
    assert_eq!(answer.accepted(), n, "{:?}", answer.outcomes);
    let stats = mock.stats();
    assert_eq!(stats.accepted.values().sum::<u64>(), n as u64);
    assert_eq!(stats.requests, 1, "one request for the whole batch");
    // And one entity on its own.
    client.entity(&ops[0]).await.unwrap();
    assert_eq!(mock.stats().requests, 2);
}

#[tokio::test]
async fn batch_client_maps_207_and_local_rejections_to_the_exact_entries() {
    let mock = MockServer::builder().start().await.unwrap();
    // The client lets ids up to 300 bytes through; the mock enforces Customer.io's 150, so those
    // entries are refused by the server (207) while the 2000-byte value is refused locally.
    let relaxed = ClientOptions {
        limits: Limits {
            identifier_bytes: 300,
            ..Limits::default()
        },
        ..ClientOptions::default()
    };
    let client = BatchClient::builder(mock.region(), creds())
        .options(relaxed.clone())
        .build();
    let long_id = "x".repeat(200);
    let ops = vec![
        op(json!({"type":"person","identifiers":{"id":"0"},"action":"identify","attributes":{}})),
        op(json!({"type":"person","identifiers":{"id":long_id},"action":"delete"})),
        op(
            json!({"type":"person","identifiers":{"id":"2"},"action":"identify","attributes":{"bio":"y".repeat(2000)}}),
        ),
        op(
            json!({"type":"person","identifiers":{"id":"3"},"action":"event","name":"e","id":"01HZX9QK7J8M2N3P4Q5R6S7T00"}),
        ),
        op(json!({"type":"person","identifiers":{"id":long_id},"action":"event","name":"e"})),
    ];
    let answer = client.oneshot(ops).await.unwrap();
    assert_eq!(answer.status, Some(http::StatusCode::MULTI_STATUS));
    let o = &answer.outcomes;
    assert!(o[0].is_ok() && o[3].is_ok(), "{o:?}");
    assert!(
        matches!(&o[1], Err(EntryError::Rejected { field: Some(f), .. }) if f == "identifiers.id"),
        "{o:?}"
    );
    assert!(matches!(&o[4], Err(EntryError::Rejected { .. })), "{o:?}");
    match &o[2] {
        Err(EntryError::Invalid(e)) => {
            assert_eq!(e.field(), "batch[2].attributes.bio");
            assert_eq!((e.limit(), e.actual()), (Some(1000), Some(2000)));
        }
        other => panic!("{other:?}"),
    }
    let stats = mock.stats();
    assert_eq!(stats.accepted.values().sum::<u64>(), 2);
    assert_eq!(stats.rejected, 2);
}

#[tokio::test]
async fn batch_client_reads_errors_on_a_200_and_refuses_a_207_without_them() {
    let server = ScriptedServer::start(vec![
        Script::respond(200, &[], r#"{"errors":[{"batch_index":1,"reason":"invalid","field":"name","message":"bad name"}]}"#),
        Script::respond(207, &[], ""),
        Script::respond(207, &[], r#"{"errors":[{"batch_index":9,"reason":"invalid","message":"?"}]}"#),
    ])
    .await;
    let client = BatchClient::new(server.region(), creds());
    let two = || {
        vec![
            op(json!({"type":"person","identifiers":{"id":"1"},"action":"delete"})),
            op(json!({"type":"person","identifiers":{"id":"2"},"action":"delete"})),
        ]
    };
    let answer = client.clone().oneshot(two()).await.unwrap();
    assert!(answer.outcomes[0].is_ok());
    assert!(
        matches!(&answer.outcomes[1], Err(EntryError::Rejected { message, .. }) if message == "bad name")
    );
    let err = client.clone().oneshot(two()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err}");
    let err = client.oneshot(two()).await.unwrap_err();
    assert!(err.to_string().contains("batch_index"), "{err}");
}

#[tokio::test]
async fn app_client_sends_every_channel_and_triggers_broadcasts() {
    let mock = MockServer::builder()
        .app_key("app-secret")
        .app_limit(None)
        .start()
        .await
        .unwrap();
    let client = AppClient::new(mock.region(), AppCredentials::new("app-secret"));
    for kind in MessageKind::ALL {
        let msg = TransactionalMessage {
            transactional_message_id: Some(json!(3)),
            identifiers: MessageIdentifiers {
                id: Some(json!("42")),
                ..Default::default()
            },
            to: Some("jane@example.com".into()),
            message_data: Some(
                json!({"code": "A1"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            ..Default::default()
        };
        let resp = client
            .clone()
            .oneshot(AppRequest::Send(kind, msg))
            .await
            .unwrap();
        assert!(resp.delivery_id().is_some(), "{kind:?}: {:?}", resp.body);
    }
    let trigger = BroadcastTrigger {
        campaign_id: 12,
        body: json!({"data": {"headline": "Spring sale"}, "ids": ["42"]})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    client
        .clone()
        .oneshot(AppRequest::TriggerBroadcast(trigger))
        .await
        .unwrap();
    let stats = mock.stats();
    for k in [
        "send_email",
        "send_push",
        "send_sms",
        "send_whatsapp",
        "send_inbox_message",
        "send_in_app",
        "broadcast_trigger",
    ] {
        assert_eq!(stats.accepted.get(k), Some(&1), "{k}");
    }
    // A template-less email without a subject is refused before sending.
    let msg = TransactionalMessage {
        identifiers: MessageIdentifiers {
            email: Some("jane@example.com".into()),
            ..Default::default()
        },
        to: Some("jane@example.com".into()),
        from: Some("us@example.com".into()),
        body: Some("hi".into()),
        ..Default::default()
    };
    let err = client
        .oneshot(AppRequest::Send(MessageKind::Email, msg))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid input: subject is required");
}

#[tokio::test]
async fn app_client_does_not_mark_ambiguous_send_failures_retryable_unless_asked() {
    let mock = MockServer::builder().app_limit(None).start().await.unwrap();
    mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let send = || {
        AppRequest::Send(
            MessageKind::Sms,
            TransactionalMessage {
                transactional_message_id: Some(json!(7)),
                identifiers: MessageIdentifiers {
                    id: Some(json!("42")),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
    };
    let client = AppClient::new(mock.region(), AppCredentials::new("k"));
    let err = client.clone().oneshot(send()).await.unwrap_err();
    assert!(matches!(err, Error::NotRetryable(_)), "{err}");
    assert!(!err.is_retryable());
    assert!(err.status().is_some_and(|s| s.is_server_error()));
    let err = client.retry_sends(true).oneshot(send()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn pipelines_client_sends_every_call_and_batches() {
    let mock = MockServer::builder()
        .pipelines_key("wk")
        .start()
        .await
        .unwrap();
    let client = PipelinesClient::new(mock.region(), PipelinesCredentials::new("wk"));
    let call = |kind: CallKind| {
        let mut c = PipelinesCall {
            user_id: Some("42".into()),
            ..Default::default()
        };
        match kind {
            CallKind::Track => c.event = Some("signup".into()),
            CallKind::Group => c.group_id = Some("acme".into()),
            CallKind::Alias => c.previous_id = Some("anon-1".into()),
            CallKind::Page | CallKind::Screen => c.name = Some("Home".into()),
            CallKind::Identify => {}
        }
        c
    };
    let kinds = [
        CallKind::Identify,
        CallKind::Track,
        CallKind::Page,
        CallKind::Screen,
        CallKind::Group,
        CallKind::Alias,
    ];
    for kind in kinds {
        client
            .clone()
            .oneshot(PipelinesRequest::Call(kind, call(kind)))
            .await
            .unwrap();
    }
    let batch = kinds
        .iter()
        .map(|k| PipelinesCall {
            kind: Some(*k),
            ..call(*k)
        })
        .collect();
    client
        .clone()
        .oneshot(PipelinesRequest::Batch {
            batch,
            context: None,
            integrations: None,
        })
        .await
        .unwrap();
    let stats = mock.stats();
    for k in kinds {
        assert_eq!(
            stats.accepted.get(&format!("cdp_{}", k.as_str())),
            Some(&2),
            "{k:?}"
        );
    }
    // Over 32 KB: Customer.io would answer 200 and drop it; the client refuses it instead.
    let mut big = call(CallKind::Identify);
    big.traits = Some(
        json!({"blob": "x".repeat(40_000)})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let err = client
        .oneshot(PipelinesRequest::Call(CallKind::Identify, big))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("over the limit of 32768 bytes"),
        "{err}"
    );
    assert_eq!(mock.stats().oversize_ignored, 0);
}

#[tokio::test]
async fn wrong_credentials_are_a_permanent_401_with_the_message() {
    let mock = MockServer::builder()
        .track_credentials("site", "key")
        .start()
        .await
        .unwrap();
    let client = TrackClient::new(mock.region(), TrackCredentials::new("site", "wrong"));
    let err = client
        .oneshot(every_v1_operation().remove(0))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("Unauthorized"), "{err}");
}

#[tokio::test]
async fn a_400_carries_customer_ios_message() {
    let mock = MockServer::builder().start().await.unwrap();
    let relaxed = ClientOptions {
        limits: Limits {
            event_name_bytes: 500,
            ..Limits::default()
        },
        ..ClientOptions::default()
    };
    let client = TrackClient::builder(mock.region(), creds())
        .options(relaxed.clone())
        .build();
    let long = op(
        json!({"type":"person","identifiers":{"id":"1"},"action":"event","name":"n".repeat(101)}),
    );
    let err = client.oneshot(long).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::BAD_REQUEST));
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("name is 101 bytes, over the limit of 100 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn a_429_from_the_rate_limit_says_how_long_to_wait() {
    let mock = MockServer::builder()
        .track_rate(1, 1)
        .start()
        .await
        .unwrap();
    let client = TrackClient::new(mock.region(), creds());
    let identify = every_v1_operation().remove(0);
    client.clone().oneshot(identify.clone()).await.unwrap();
    let err = client.oneshot(identify).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(mock.stats().rate_limited, 1);
}

#[tokio::test]
async fn retry_after_as_an_http_date_and_a_503() {
    let in_3s = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3));
    let server = ScriptedServer::start(vec![
        Script::respond(
            429,
            &[("Retry-After", in_3s.as_str())],
            r#"{"meta":{"error":"slow down"}}"#,
        ),
        Script::respond(503, &[], "Service Unavailable"),
        Script::respond(429, &[], ""),
    ])
    .await;
    let client = TrackClient::new(server.region(), creds());
    let identify = every_v1_operation().remove(0);
    let err = client.clone().oneshot(identify.clone()).await.unwrap_err();
    let wait = err.retry_after().expect("a Retry-After");
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_secs(3),
        "{wait:?}"
    );
    assert!(err.to_string().contains("slow down"));
    let err = client.clone().oneshot(identify.clone()).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), None);
    let err = client.oneshot(identify).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), None, "a 429 without Retry-After");
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = TrackClient::new(Region::custom(&format!("http://{addr}")).unwrap(), creds());
    let err = client
        .oneshot(every_v1_operation().remove(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = ScriptedServer::start(vec![Script::Hang]).await;
    let options = ClientOptions {
        timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let client = TrackClient::builder(server.region(), creds())
        .options(options.clone())
        .build();
    let started = std::time::Instant::now();
    let err = client
        .oneshot(every_v1_operation().remove(0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Sends `op` twice on one client. The server answers the first, then closes the kept-alive
/// connection when the second arrives on it (it dropped the idle connection as the client reused
/// it), and answers whatever comes on a new connection.
async fn second_send_meets_a_closed_connection(
    op: Operation,
) -> (Result<cio_api::TrackResponse, Error>, ScriptedServer) {
    let server = ScriptedServer::start(vec![
        Script::respond(200, &[], "{}"),
        Script::CloseWithoutAnswer,
        Script::respond(200, &[], "{}"),
    ])
    .await;
    let client = TrackClient::new(server.region(), creds());
    client.clone().oneshot(op.clone()).await.unwrap();
    (client.oneshot(op).await, server)
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_server_is_replaced_transparently() {
    // An identify is a PUT: idempotent, so sent again on a new connection.
    let (second, server) =
        second_send_meets_a_closed_connection(every_v1_operation().remove(0)).await;
    second.expect("the stale connection is retried once on a new one");
    assert_eq!(server.connections(), 2);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_post_whose_connection_closed_unanswered_is_not_sent_again_behind_the_callers_back() {
    // The server may have acted on a POST before the connection closed: the transport leaves
    // the decision to the caller's retry policy (the App API client refuses to resend a message)
    // rather than sending it twice itself.
    let event =
        op(json!({"type":"person","identifiers":{"id":"42"},"action":"event","name":"purchase"}));
    let (second, server) = second_send_meets_a_closed_connection(event).await;
    let err = second.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(
        err.is_retryable(),
        "the caller's retry policy may still resend it"
    );
    assert_eq!(server.requests().len(), 2, "sent once each, not resent");
}

#[tokio::test]
async fn a_url_with_a_query_and_no_path_gets_a_slash() {
    let server = ScriptedServer::start(vec![Script::respond(200, &[], "{}")]).await;
    let transport = cio_api::Transport::new(&ClientOptions::default());
    let auth = TrackCredentials::new("site", "key").header();
    let url = format!("{}?q=1", server.url());
    transport
        .send(http::Method::GET, &url, &auth, None)
        .await
        .unwrap();
    let head = &server.requests()[0];
    assert!(head.starts_with("GET /?q=1 HTTP/1.1\r\n"), "{head}");
}

#[tokio::test]
async fn redirects_are_followed_only_where_credentials_may_go() {
    let other = ScriptedServer::start(vec![Script::respond(200, &[], "{}")]).await;
    let elsewhere = format!("{}/api/v1/customers/42", other.url());
    let server = ScriptedServer::start(vec![
        Script::respond(307, &[("Location", "/api/v1/customers/42?moved=1")], ""),
        Script::respond(200, &[], "{}"),
        Script::respond(302, &[("Location", elsewhere.as_str())], ""),
    ])
    .await;
    let client = TrackClient::new(server.region(), creds());
    let identify = every_v1_operation().remove(0);
    client
        .clone()
        .oneshot(identify.clone())
        .await
        .expect("same-origin redirect followed");
    let reqs = server.requests();
    assert!(
        reqs[1].starts_with("PUT /api/v1/customers/42?moved=1 "),
        "{}",
        reqs[1]
    );
    assert!(reqs[1]
        .to_ascii_lowercase()
        .contains("authorization: basic"));
    let err = client.oneshot(identify).await.unwrap_err();
    assert!(matches!(err, Error::Redirect { .. }), "{err}");
    assert!(
        other.requests().is_empty(),
        "nothing, and no credentials, reached the other host"
    );
}

#[tokio::test]
async fn clients_compose_under_service_builder_and_share_a_pool() {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let transport = cio_api::Transport::new(&ClientOptions::default());
    let track = TrackClient::builder(mock.region(), creds())
        .transport(transport.clone())
        .build();
    let batch = BatchClient::builder(mock.region(), creds())
        .transport(transport)
        .build();
    let mut svc = ServiceBuilder::new().concurrency_limit(4).service(track);
    for op in every_v1_operation().into_iter().take(3) {
        svc.ready().await.unwrap().call(op).await.unwrap();
    }
    let answer = ServiceBuilder::new()
        .map_request(|v: Vec<Operation>| v)
        .service(batch)
        .oneshot(every_v1_operation().into_iter().take(3).collect())
        .await
        .unwrap();
    assert_eq!(answer.accepted(), 3);
}

#[tokio::test]
async fn five_hundred_concurrent_clients_all_get_correct_answers() {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500 {
        let client = TrackClient::new(mock.region(), creds());
        tasks.spawn(async move {
            let op = op(json!({"type":"person","identifiers":{"id":format!("user-{i}")},"action":"event","name":"load","id":format!("01HZX9QK7J8M2N3P4Q5R6{i:05}")}));
            client.oneshot(op).await
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 500);
    let stats = mock.stats();
    assert_eq!(stats.requests, 500);
    assert_eq!(stats.unique_event_ids, 500);
    assert_eq!(stats.duplicate_event_ids, 0);
}

#[test]
fn secrets_never_reach_debug_output_or_logs() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let debug = rt.block_on(async {
        let mock = MockServer::builder()
            .track_credentials("site", "track-s3cret")
            .start()
            .await
            .unwrap();
        let good = TrackClient::new(mock.region(), TrackCredentials::new("site", "track-s3cret"));
        let bad = TrackClient::new(mock.region(), TrackCredentials::new("site", "wrong-s3cret"));
        let app = AppClient::new(mock.region(), AppCredentials::new("app-s3cret"));
        let identify = every_v1_operation().remove(0);
        good.clone().oneshot(identify.clone()).await.unwrap();
        let err = bad.clone().oneshot(identify).await.unwrap_err();
        tracing::info!(?good, ?bad, ?app, %err, "clients");
        format!("{good:?} {bad:?} {app:?} {err:?}")
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("clients"), "the capture works");
    for text in [&debug, &logs] {
        assert!(!text.contains("s3cret"), "{text}");
        // Nor the Basic token that encodes it.
        assert!(!text.contains("c2l0ZTp0cmFjay1zM2NyZXQ"), "{text}");
    }
}

/// The mock accepts every request the official Node SDK sends (the fixture records them), so an
/// SDK pointed at it with its `url` option works unchanged.
#[tokio::test]
async fn the_mock_accepts_every_request_the_node_sdk_sends() {
    let fixture: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("fixtures/node_sdk_requests.json")).unwrap();
    let mock = MockServer::builder()
        .track_credentials("site", "key")
        .app_key("app-key")
        .unlimited()
        // The fixture triggers one broadcast several times in a row.
        .broadcast_interval(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let transport = cio_api::Transport::new(&ClientOptions::default());
    let basic = TrackCredentials::new("site", "key").header();
    let bearer = AppCredentials::new("app-key").header();
    let mut sent = 0;
    for entry in &fixture {
        let call = entry["call"].as_str().unwrap();
        let path = entry["path"].as_str().unwrap();
        // Reads are not writes the mock models.
        if entry["method"] == "GET" {
            continue;
        }
        let method: http::Method = entry["method"].as_str().unwrap().parse().unwrap();
        let auth = if path.starts_with("/v1/") {
            &bearer
        } else {
            &basic
        };
        let body = match &entry["body"] {
            serde_json::Value::Null => None,
            b => Some(bytes::Bytes::from(serde_json::to_vec(b).unwrap())),
        };
        let resp = transport
            .send(method, &format!("{}{path}", mock.url()), auth, body)
            .await
            .unwrap();
        assert!(
            resp.status.is_success(),
            "{call}: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        sent += 1;
    }
    assert!(sent >= 45, "only {sent} fixture requests were sent");
    assert_eq!(mock.stats().rejected, 0);
}

/// What the Pipelines client puts on every call before sending: a `messageId` where none was
/// given (a caller's is kept), a `timestamp`, `context.library`; and with `strict(true)` the
/// `X-Strict-Mode: 1` header. Read from the bytes a capturing HTTP service receives.
#[tokio::test]
async fn pipelines_calls_get_message_id_timestamp_and_library_and_strict_mode_is_a_header() {
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};
    type Seen = Arc<Mutex<Vec<(http::HeaderMap, serde_json::Value)>>>;
    let seen: Seen = Arc::default();
    let capture = {
        let seen = seen.clone();
        tower::service_fn(
            move |req: http::Request<http_body_util::Full<bytes::Bytes>>| {
                let seen = seen.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let json = serde_json::from_slice(&body).unwrap();
                    seen.lock().unwrap().push((parts.headers, json));
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                    ))
                }
            },
        )
    };
    let client = PipelinesClient::builder(Region::Us, PipelinesCredentials::new("wk"))
        .service(capture)
        .build();
    let track = |id: Option<&str>| PipelinesCall {
        user_id: Some("42".into()),
        event: Some("signup".into()),
        message_id: id.map(str::to_owned),
        ..Default::default()
    };
    for _ in 0..2 {
        client
            .send(&PipelinesRequest::Call(CallKind::Track, track(None)))
            .await
            .unwrap();
    }
    client
        .send(&PipelinesRequest::Call(
            CallKind::Track,
            track(Some("mine")),
        ))
        .await
        .unwrap();
    client
        .strict(true)
        .send(&PipelinesRequest::Batch {
            batch: vec![PipelinesCall {
                kind: Some(CallKind::Track),
                ..track(None)
            }],
            context: None,
            integrations: None,
        })
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    let ids: Vec<&str> = seen[..3]
        .iter()
        .map(|(_, b)| b["messageId"].as_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1], "a fresh id per call");
    assert_eq!(ids[0].len(), 36, "UUID-shaped: {}", ids[0]);
    assert_eq!(&ids[0][14..15], "4", "version 4: {}", ids[0]);
    assert_eq!(ids[2], "mine", "the caller's id is kept");
    for (headers, body) in seen.iter() {
        let call = if body.get("batch").is_some() {
            &body["batch"][0]
        } else {
            body
        };
        let ts = call["timestamp"].as_str().unwrap();
        assert!(
            ts.ends_with('Z') && ts.contains('T') && ts.len() == 24,
            "{ts}"
        );
        assert_eq!(call["context"]["library"]["name"], "cio-rs", "{call}");
        assert_eq!(
            call["context"]["library"]["version"],
            env!("CARGO_PKG_VERSION")
        );
        let strict = headers
            .get(cio_api::STRICT_MODE)
            .map(|v| v.to_str().unwrap());
        assert_eq!(
            strict,
            body.get("batch").map(|_| "1"),
            "only the strict client asks"
        );
    }
}

#[test]
fn a_message_id_from_a_stable_hash_is_the_same_every_time() {
    let id = cio_api::pipelines::message_id_from(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    assert_eq!(id, "01234567-89ab-cdef-0011-223344556677");
}

/// The edges of Customer.io's API, client and mock together: a broadcast trigger takes one
/// audience and not an empty one (refused before sending), the mock lets one broadcast go
/// every interval (429 with Retry-After otherwise), `/push/events` takes only opened,
/// converted and delivered, and `unsubscribe` reaches `/unsubscribe/{delivery_id}`.
#[tokio::test]
async fn broadcasts_push_metrics_and_unsubscribe_follow_customer_io() {
    let mock = MockServer::builder()
        .app_limit(None)
        .broadcast_interval(Duration::from_millis(600))
        .start()
        .await
        .unwrap();
    let app = AppClient::new(mock.region(), AppCredentials::new("app"));
    let trigger = |id: u64, body: serde_json::Value| {
        AppRequest::TriggerBroadcast(BroadcastTrigger {
            campaign_id: id,
            body: body.as_object().cloned().unwrap_or_default(),
        })
    };
    for (body, why) in [
        (json!({"recipients": {}}), "recipients must not be empty"),
        (json!({"ids": []}), "ids must not be empty"),
        (
            json!({"ids": ["1"], "emails": ["a@example.com"]}),
            "one audience, got 2",
        ),
    ] {
        let err = app.send(&trigger(7, body)).await.unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    assert_eq!(mock.stats().requests, 0, "refused before sending");
    // No audience: the broadcast's own (set up in Customer.io).
    app.send(&trigger(7, json!({"data": {"x": 1}})))
        .await
        .unwrap();
    let err = app
        .clone()
        .retries(None)
        .send(&trigger(7, json!({"ids": ["42"]})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Api { status, retry_after: Some(_), .. } if status.as_u16() == 429),
        "{err:?}"
    );
    app.send(&trigger(8, json!({"ids": ["42"]}))).await.unwrap();
    // With the default retries the 429 is waited out (its Retry-After) and the trigger goes.
    let started = std::time::Instant::now();
    app.send(&trigger(7, json!({"ids": ["42"]}))).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    let track = TrackClient::new(mock.region(), creds());
    let push = |metric: &str| {
        op(
            json!({"type": "delivery", "action": "event", "identifiers": {"id": "d-1"},
            "name": metric, "attributes": {"device_token": "tok-1"}}),
        )
    };
    let err = track.send(&push("clicked")).await.unwrap_err();
    assert!(err.to_string().contains("not a push metric"), "{err}");
    track.send(&push("opened")).await.unwrap();
    track.unsubscribe("d-1", true).await.unwrap();
    track.unsubscribe("d-1", false).await.unwrap();
    assert!(track.unsubscribe(" ", true).await.is_err());
    let stats = mock.stats();
    assert_eq!(
        stats.accepted.get("broadcast_trigger"),
        Some(&3),
        "{stats:?}"
    );
    assert_eq!(stats.accepted.get("unsubscribe"), Some(&2), "{stats:?}");
    assert_eq!(stats.accepted.get("delivery_event"), Some(&1), "{stats:?}");
}

/// `cio mock --redirect-to`: a host that redirects an account living elsewhere. To the same
/// origin (the mock redirecting to itself under `/eu`) the client follows with its
/// credentials; to another host that is not `https://*.customer.io` it stops, and nothing
/// reaches that host.
#[tokio::test]
async fn a_redirecting_mock_is_followed_with_credentials_only_where_they_may_go() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let us = MockServer::builder()
        .listen(([127, 0, 0, 1], port).into())
        .track_credentials("site", "key")
        .redirect_to(format!("http://127.0.0.1:{port}/eu").parse().unwrap())
        .start()
        .await
        .unwrap();
    let identify = every_v1_operation().remove(0);
    TrackClient::new(us.region(), creds())
        .send(&identify)
        .await
        .expect("followed to the same origin, credentials included");
    let stats = us.stats();
    assert_eq!(stats.by_status.get("307"), Some(&1), "{stats:?}");
    assert_eq!(
        stats.unauthorized, 0,
        "the credentials went along: {stats:?}"
    );
    assert_eq!(stats.accepted.values().sum::<u64>(), 1, "{stats:?}");

    let elsewhere = MockServer::builder().start().await.unwrap();
    let redirecting = MockServer::builder()
        .redirect_to(elsewhere.url().parse().unwrap())
        .start()
        .await
        .unwrap();
    let err = TrackClient::new(redirecting.region(), creds())
        .send(&identify)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Redirect { .. }), "{err}");
    assert_eq!(
        elsewhere.stats().requests,
        0,
        "nothing, and no credentials, went there"
    );
}

/// An outside truth: tests/conformance/track_v2.json lists requests with the status and error
/// field Customer.io's documentation gives them, each row naming the page it comes from (and,
/// where two pages disagree, which reading we chose). Every row runs against the mock (sent as
/// is to `/api/v2/entity`) and against the client's own validation, so a wrong limit in
/// `cio_api::validate` fails here even though the mock shares it.
#[tokio::test]
async fn the_conformance_table_holds_for_the_mock_and_the_client() {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("conformance/track_v2.json")).unwrap();
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let transport = cio_api::Transport::new(&ClientOptions::default());
    let auth = creds().header();
    let limits = Limits::default();
    let mut failures = Vec::new();
    for row in &rows {
        let name = row["name"].as_str().unwrap();
        assert!(
            row["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("https://docs.customer.io/")),
            "{name}: every row names its Customer.io doc page"
        );
        let status = row["status"].as_u64().unwrap() as u16;
        let field = row["field"].as_str();
        let body = match row.get("entry_bytes").and_then(|n| n.as_u64()) {
            // An identify of exactly this many bytes: attributes of at most 1000 bytes each.
            Some(n) => {
                let head = r#"{"type":"person","identifiers":{"id":"42"},"action":"identify","attributes":{"#;
                let mut body = head.to_owned();
                let mut i = 0;
                loop {
                    // What one more `"aNN":"..."` may take, leaving room for `}}`.
                    let key = format!("{}\"a{i}\":\"", if i > 0 { "," } else { "" });
                    let room = n as usize - body.len() - key.len() - 1 - 2;
                    body.push_str(&key);
                    body.push_str(&"p".repeat(room.min(1000)));
                    body.push('"');
                    i += 1;
                    if room <= 1000 {
                        break;
                    }
                }
                body.push_str("}}");
                assert_eq!(body.len() as u64, n, "{name}: the padding");
                body
            }
            None => serde_json::to_string(&row["entry"]).unwrap(),
        };
        // The mock.
        let r = transport
            .send(
                http::Method::POST,
                &format!("{}/api/v2/entity", mock.url()),
                &auth,
                Some(bytes::Bytes::from(body.clone())),
            )
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&r.body);
        if r.status.as_u16() != status || field.is_some_and(|f| !text.contains(f)) {
            failures.push(format!("mock, {name}: {} {text}", r.status));
        }
        // The client, before sending: the entry's own checks and the 32 KiB bound.
        let judged = Operation::from_json(body.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|op| {
                cio_api::encode::Entry::new(&op, &limits)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        match (status, &judged) {
            (200, Ok(())) => {}
            (200, Err(e)) => failures.push(format!("client, {name}: refused: {e}")),
            (_, Ok(())) => failures.push(format!("client, {name}: accepted, expected {status}")),
            (_, Err(e)) if field.is_some_and(|f| !e.contains(f)) => {
                failures.push(format!("client, {name}: {e} does not name {field:?}"))
            }
            _ => {}
        }
    }
    assert!(rows.len() >= 20, "{} rows", rows.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// App and Pipelines requests are retried by default with the Track numbers: a 503 then a 200
/// is one success. A Pipelines retry carries the same messageId as its first attempt; a
/// transactional send whose outcome is unknown is still attempted once.
#[tokio::test]
async fn app_and_pipelines_requests_are_retried_by_default() {
    let server = ScriptedServer::start(vec![
        Script::respond(503, &[], "{}"),
        Script::respond(200, &[], r#"{"id":1}"#),
        Script::respond(503, &[], "{}"),
        Script::respond(200, &[], "{}"),
    ])
    .await;
    let app = AppClient::new(server.region(), AppCredentials::new("app"));
    app.send(&AppRequest::TriggerBroadcast(BroadcastTrigger {
        campaign_id: 3,
        body: serde_json::Map::new(),
    }))
    .await
    .expect("the 503 retried");
    let cdp = PipelinesClient::new(server.region(), PipelinesCredentials::new("wk"));
    cdp.send(&PipelinesRequest::Call(
        CallKind::Track,
        PipelinesCall {
            user_id: Some("42".into()),
            event: Some("signup".into()),
            ..Default::default()
        },
    ))
    .await
    .expect("the 503 retried");
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    let message_id = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["messageId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        message_id(&bodies[2]),
        message_id(&bodies[3]),
        "one messageId for both attempts"
    );

    // Without retries the 503 is the answer.
    let server = ScriptedServer::start(vec![Script::respond(503, &[], "{}")]).await;
    let err = PipelinesClient::new(server.region(), PipelinesCredentials::new("wk"))
        .retries(None)
        .send(&PipelinesRequest::Call(
            CallKind::Identify,
            PipelinesCall {
                user_id: Some("42".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(server.requests().len(), 1);
}
