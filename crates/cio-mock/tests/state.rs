//! What the mock keeps of what it is sent, as a test that asks "what does person 42 look like
//! now?" meets it: over loopback, through the App API reads and `GET /__mock/people/{id}`.
//! Each test states the Customer.io rule it checks; the caps are checked by count, with the
//! evictions the stats report.

use bytes::Bytes;
use cio_api::{AppCredentials, ClientOptions, PipelinesCredentials, TrackCredentials, Transport};
use cio_mock::{MockHandle, MockServer, StoreLimits};
use http::{HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

/// A mock and the three kinds of credentials, talking through one transport.
struct Api {
    t: Transport,
    mock: MockHandle,
    track: HeaderValue,
    app: HeaderValue,
    cdp: HeaderValue,
}

impl Api {
    async fn start(limits: StoreLimits) -> Api {
        let mock = MockServer::builder()
            .unlimited()
            .store_limits(limits)
            .start()
            .await
            .unwrap();
        Api {
            t: Transport::new(&ClientOptions::default()),
            mock,
            track: TrackCredentials::new("site", "key").header(),
            app: AppCredentials::new("app").header(),
            cdp: PipelinesCredentials::new("wk").header(),
        }
    }

    async fn send(
        &self,
        auth: &HeaderValue,
        method: Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(serde_json::to_vec(&body).unwrap())
        };
        let what = format!("{method} {path}");
        let r = self
            .t
            .send(
                method,
                &format!("{}{path}", self.mock.url()),
                auth,
                Some(body),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let v = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", r.body))
        };
        (r.status, v)
    }

    /// A Track call that must be accepted.
    async fn track(&self, method: Method, path: &str, body: Value) {
        let (status, v) = self.send(&self.track, method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {v}");
    }

    /// A v1 identify (`PUT /api/v1/customers/{id}`, `id` as it goes in the path).
    async fn identify(&self, id: &str, attributes: Value) {
        self.track(Method::PUT, &format!("/api/v1/customers/{id}"), attributes)
            .await;
    }

    async fn batch(&self, entries: Vec<Value>) {
        self.track(Method::POST, "/api/v2/batch", json!({ "batch": entries }))
            .await;
    }

    async fn app_get(&self, path: &str) -> (StatusCode, Value) {
        self.send(&self.app, Method::GET, &format!("/v1{path}"), Value::Null)
            .await
    }

    /// `getAttributes` of a person that must exist: the `customer` object.
    async fn customer(&self, path: &str) -> Value {
        let (status, v) = self.app_get(path).await;
        assert_eq!(status, StatusCode::OK, "GET /v1{path}: {v}");
        v["customer"].clone()
    }

    fn person(&self, id: &str) -> Value {
        self.mock
            .person(id)
            .unwrap_or_else(|| panic!("the mock keeps no person {id:?}"))
    }
}

/// One field (a JSON pointer) of every member of a JSON array, as text.
fn column(list: &Value, pointer: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|m| match m.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => panic!("no {pointer} in {m}"),
        })
        .collect()
}

fn event(id: &str, name: &str, event_id: &str, ts: i64, data: Value) -> Value {
    json!({"type": "person", "identifiers": {"id": id}, "action": "event", "name": name,
           "id": event_id, "timestamp": ts, "attributes": data})
}

#[tokio::test]
async fn identify_merges_attributes_in_timestamp_order_and_update_never_creates() {
    let api = Api::start(StoreLimits::default()).await;
    let put = |body: Value| api.track(Method::PUT, "/api/v1/customers/42", body);
    put(json!({"email": "ada@example.com", "plan": "free", "seats": 3, "_timestamp": 1_000})).await;
    // Older than what set `plan`: ignored for `plan`, taken for the attribute it adds.
    put(json!({"plan": "pro", "region": "eu", "_timestamp": 900})).await;
    let c = api.customer("/customers/42/attributes").await;
    assert_eq!(c["attributes"]["plan"], "free", "{c}");
    assert_eq!(c["attributes"]["region"], "eu");
    assert_eq!(c["timestamps"]["plan"], 1_000);
    assert_eq!(c["timestamps"]["region"], 900);
    assert_eq!(c["identifiers"]["email"], "ada@example.com");
    assert_eq!(c["identifiers"]["id"], "42");
    // Newer: taken. An empty string removes an attribute; so does null.
    put(json!({"plan": "pro", "seats": "", "region": null, "_timestamp": 1_100})).await;
    let c = api.customer("/customers/42/attributes").await;
    assert_eq!(c["attributes"]["plan"], "pro");
    assert!(c["attributes"].get("seats").is_none(), "{c}");
    assert!(c["attributes"].get("region").is_none(), "{c}");
    // By email and by cio_id, the same person.
    let cio_id = c["identifiers"]["cio_id"].as_str().unwrap().to_owned();
    let by_email = api
        .customer("/customers/ada%40example.com/attributes?id_type=email")
        .await;
    let by_cio = api
        .customer(&format!("/customers/{cio_id}/attributes?id_type=cio_id"))
        .await;
    assert_eq!(by_email, c);
    assert_eq!(by_cio, c);

    // `_update: true` updates someone who exists and creates no one.
    api.identify("43", json!({"plan": "x", "_update": true}))
        .await;
    let (status, _) = api.app_get("/customers/43/attributes").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    put(json!({"plan": "team", "_update": true})).await;
    assert_eq!(
        api.customer("/customers/42/attributes").await["attributes"]["plan"],
        "team"
    );

    // Addressed by cio_id, an `id` attribute changes the id: the old one finds no one.
    api.track(
        Method::PUT,
        &format!("/api/v1/customers/cio_{cio_id}"),
        json!({"id": "42b"}),
    )
    .await;
    assert_eq!(
        api.app_get("/customers/42/attributes").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.customer("/customers/42b/attributes").await["identifiers"]["cio_id"],
        cio_id.as_str()
    );

    // v2 identify, with the entry's timestamp ordering it.
    api.batch(vec![
        json!({"type": "person", "identifiers": {"id": "7"}, "action": "identify",
               "timestamp": 2_000, "attributes": {"tier": "gold"}}),
        json!({"type": "person", "identifiers": {"id": "7"}, "action": "identify",
               "timestamp": 1_500, "attributes": {"tier": "bronze"}}),
    ])
    .await;
    assert_eq!(
        api.customer("/customers/7/attributes").await["attributes"]["tier"],
        "gold"
    );
    // getCustomersByEmail: a `+` must be sent as %2B; sent bare it is a space and finds no
    // one, as Customer.io warns. Emails match without regard to case.
    api.identify("42b", json!({"email": "a+b@example.com"}))
        .await;
    let (_, v) = api.app_get("/customers?email=a%2Bb%40example.com").await;
    assert_eq!(v["results"][0]["id"], "42b", "{v}");
    let (_, v) = api.app_get("/customers?email=A%2BB%40Example.com").await;
    assert_eq!(v["results"][0]["id"], "42b", "{v}");
    let (_, v) = api.app_get("/customers?email=a+b@example.com").await;
    assert_eq!(v, json!({"results": []}));
    let (_, v) = api.app_get("/customers?email=nobody%40example.com").await;
    assert_eq!(v, json!({"results": []}));
    let (status, _) = api.app_get("/customers").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(api.mock.stats().people, 2);
}

#[tokio::test]
async fn latest_events_come_back_newest_first_capped_per_person() {
    let api = Api::start(StoreLimits {
        events_per_person: 5,
        ..StoreLimits::default()
    })
    .await;
    // Canonical entries (the one-pass path) and v1 events, for one person.
    let entries = (0..6)
        .map(|i| event("42", "viewed", &format!("e{i}"), 1_000 + i, json!({"n": i})))
        .collect();
    api.batch(entries).await;
    api.track(
        Method::POST,
        "/api/v1/customers/42/events",
        json!({"name": "purchase", "id": "e6", "timestamp": 2_000, "data": {"total": 9.5}}),
    )
    .await;
    api.track(
        Method::POST,
        "/api/v1/customers/42/events",
        json!({"type": "page", "name": "/pricing", "timestamp": 2_001}),
    )
    .await;
    let (status, v) = api.app_get("/customers/42/activities?limit=3").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let names = column(&v["activities"], "/name");
    assert_eq!(names, ["/pricing", "purchase", "viewed"]);
    assert_eq!(v["activities"][0]["type"], "page");
    assert_eq!(v["activities"][1]["data"], json!({"total": 9.5}));
    assert_eq!(v["activities"][1]["id"], "e6");
    assert_eq!(v["activities"][2]["data"], json!({"n": 5}));
    assert_eq!(v["activities"][2]["customer_identifiers"]["id"], "42");
    // The next page from the cursor: the rest of the five kept.
    assert_eq!(v["next"], "3");
    let (_, v) = api
        .app_get("/customers/42/activities?limit=3&start=3")
        .await;
    let ids = column(&v["activities"], "/id");
    assert_eq!(ids, ["e4", "e3"], "{v}");
    assert_eq!(v["next"], "");
    // Filters.
    let (_, v) = api
        .app_get("/customers/42/activities?type=event&name=viewed")
        .await;
    assert_eq!(v["activities"].as_array().unwrap().len(), 3);
    // Eight sent, five kept: three let go, counted.
    let stats = api.mock.stats();
    assert_eq!(stats.evicted_events, 3);
    assert_eq!(api.person("42")["events"].as_array().unwrap().len(), 5);
    // Limits are checked.
    for bad in ["limit=0", "limit=101", "limit=x"] {
        let (status, _) = api
            .app_get(&format!("/customers/42/activities?{bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        api.app_get("/customers/nobody/activities").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn devices_suppression_segments_and_merge() {
    let api = Api::start(StoreLimits::default()).await;
    api.identify("1", json!({"email": "one@example.com", "plan": "pro"}))
        .await;
    api.track(
        Method::PUT,
        "/api/v1/customers/1/devices",
        json!({"device": {"id": "tok-a", "platform": "ios", "last_used": 10}}),
    )
    .await;
    api.track(
        Method::PUT,
        "/api/v1/customers/1/devices",
        json!({"device": {"id": "tok-a", "platform": "ios", "last_used": 20}}),
    )
    .await;
    api.batch(vec![
        json!({"type": "person", "identifiers": {"id": "1"}, "action": "add_device",
                          "device": {"token": "tok-b", "platform": "android"}}),
    ])
    .await;
    api.track(
        Method::DELETE,
        "/api/v1/customers/1/devices/tok-b",
        Value::Null,
    )
    .await;
    let c = api.customer("/customers/1/attributes").await;
    assert_eq!(
        c["devices"],
        json!([{"id": "tok-a", "platform": "ios", "last_used": 20}])
    );

    // Manual segments: the people named who exist.
    api.identify("2", json!({"plan": "free", "city": "Oslo"}))
        .await;
    api.track(
        Method::POST,
        "/api/v1/segments/7/add_customers",
        json!({"ids": ["1", "2", "ghost"]}),
    )
    .await;
    api.track(
        Method::POST,
        "/api/v1/segments/9/add_customers",
        json!({"ids": ["1"]}),
    )
    .await;
    api.track(
        Method::POST,
        "/api/v1/segments/7/remove_customers",
        json!({"ids": ["1"]}),
    )
    .await;
    let (_, v) = api.app_get("/customers/1/segments").await;
    let ids = column(&v["segments"], "/id");
    assert_eq!(ids, ["9"], "{v}");
    assert_eq!(v["segments"][0]["type"], "manual");
    assert!(
        api.mock.person("ghost").is_none(),
        "a segment change creates no one"
    );

    // Merge 2 into 1: the primary keeps its values, gains what it lacked; 2 is gone.
    api.track(
        Method::POST,
        "/api/v1/merge_customers",
        json!({"primary": {"id": "1"}, "secondary": {"id": "2"}}),
    )
    .await;
    let c = api.customer("/customers/1/attributes").await;
    assert_eq!(c["attributes"]["plan"], "pro");
    assert_eq!(c["attributes"]["city"], "Oslo");
    assert_eq!(
        api.app_get("/customers/2/attributes").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, v) = api.app_get("/customers/1/segments").await;
    assert_eq!(
        v["segments"].as_array().unwrap().len(),
        2,
        "segment 7 came with 2: {v}"
    );

    // Suppressed: the App API no longer finds them, the test view does; writes are dropped.
    api.track(Method::POST, "/api/v1/customers/1/suppress", Value::Null)
        .await;
    assert_eq!(
        api.app_get("/customers/1/attributes").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, v) = api.app_get("/customers?email=one%40example.com").await;
    assert_eq!(v, json!({"results": []}));
    api.identify("1", json!({"plan": "enterprise"})).await;
    api.batch(vec![event("1", "opened", "s1", 5, json!({}))])
        .await;
    let p = api.person("1");
    assert_eq!(p["suppressed"], true);
    assert_eq!(p["attributes"]["plan"], "pro");
    assert_eq!(api.mock.stats().dropped_suppressed, 2);
    api.track(Method::POST, "/api/v1/customers/1/unsuppress", Value::Null)
        .await;
    api.identify("1", json!({"plan": "enterprise"})).await;
    assert_eq!(
        api.customer("/customers/1/attributes").await["attributes"]["plan"],
        "enterprise"
    );

    // Delete.
    api.track(Method::DELETE, "/api/v1/customers/1", Value::Null)
        .await;
    assert!(api.mock.person("1").is_none());
}

#[tokio::test]
async fn objects_and_relationships_are_kept_on_both_sides() {
    let api = Api::start(StoreLimits::default()).await;
    api.batch(vec![
        json!({"type": "object", "identifiers": {"object_type_id": "1", "object_id": "acme"},
               "action": "identify", "attributes": {"name": "Acme", "seats": 10},
               "cio_relationships": [{"identifiers": {"id": "u1"}}]}),
        json!({"type": "person", "identifiers": {"id": "u2"}, "action": "add_relationships",
               "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]}),
        json!({"type": "person", "identifiers": {"id": "u3"}, "action": "identify",
               "attributes": {"plan": "x"},
               "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]}),
        json!({"type": "person", "identifiers": {"id": "u3"}, "action": "delete_relationships",
               "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]}),
    ])
    .await;
    let t = Transport::new(&ClientOptions::default());
    let r = t
        .send(
            Method::GET,
            &format!("{}/__mock/objects/1/acme", api.mock.url()),
            &HeaderValue::from_static(""),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let o: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        o["object"]["attributes"],
        json!({"name": "Acme", "seats": 10})
    );
    let mut related = column(&o["relationships"], "/id");
    related.sort_unstable();
    assert_eq!(related, ["u1", "u2"], "{o}");
    assert_eq!(
        api.person("u2")["relationships"],
        json!([{"object_type_id": "1", "object_id": "acme"}])
    );
    assert_eq!(api.person("u3")["relationships"], json!([]));
    assert_eq!(api.mock.stats().objects, 1);
}

#[tokio::test]
async fn pipelines_calls_feed_the_same_people() {
    let api = Api::start(StoreLimits::default()).await;
    let (status, _) = api
        .send(
            &api.cdp,
            Method::POST,
            "/v1/batch",
            json!({"batch": [
                {"type": "identify", "userId": "p1", "traits": {"email": "p1@example.com", "plan": "pro"}},
                {"type": "track", "userId": "p1", "event": "Signed Up", "properties": {"via": "ad"},
                 "messageId": "m1", "timestamp": "2026-12-01T10:00:00Z"},
                {"type": "group", "userId": "p1", "groupId": "g9", "traits": {"name": "Team"}},
                {"type": "track", "anonymousId": "anon", "event": "Browsed"}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let p = api.person("p1");
    assert_eq!(p["identifiers"]["email"], "p1@example.com");
    assert_eq!(p["attributes"]["plan"], "pro");
    assert_eq!(p["events"][0]["name"], "Signed Up");
    assert_eq!(p["events"][0]["id"], "m1");
    assert_eq!(p["events"][0]["timestamp"], 1_796_119_200);
    assert_eq!(p["events"][0]["data"], json!({"via": "ad"}));
    assert_eq!(
        p["relationships"],
        json!([{"object_type_id": "1", "object_id": "g9"}])
    );
    assert_eq!(api.mock.stats().people, 1, "the anonymous call kept no one");
}

#[tokio::test]
async fn get_customers_attributes_takes_up_to_100_ids() {
    let api = Api::start(StoreLimits::default()).await;
    api.batch(
        (0..3)
            .map(|i| {
                json!({"type": "person", "identifiers": {"id": format!("c{i}")},
                            "action": "identify", "attributes": {"n": i}})
            })
            .collect(),
    )
    .await;
    let post = |ids: Value| {
        api.send(
            &api.app,
            Method::POST,
            "/v1/customers/attributes",
            json!({ "ids": ids }),
        )
    };
    let (status, v) = post(json!(["c0", "c2", "missing"])).await;
    assert_eq!(status, StatusCode::OK);
    let found = column(&v["customers"], "/customer/id");
    assert_eq!(found, ["c0", "c2"]);
    assert_eq!(v["customers"][1]["customer"]["attributes"]["n"], 2);
    // By another id_type.
    let (status, v) = api
        .send(
            &api.app,
            Method::POST,
            "/v1/customers/attributes?id_type=cio_id",
            json!({"ids": [v["customers"][0]["customer"]["identifiers"]["cio_id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["customers"][0]["customer"]["id"], "c0", "{v}");
    let hundred: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    assert_eq!(post(json!(hundred)).await.0, StatusCode::OK);
    let too_many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let (status, v) = post(json!(too_many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["meta"]["error"].as_str().unwrap().contains("1 to 100"),
        "{v}"
    );
    assert_eq!(post(json!([])).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn caps_evict_the_least_recently_used_and_count_it() {
    let api = Api::start(StoreLimits {
        people: 5,
        event_ids: 64,
        ..StoreLimits::default()
    })
    .await;
    let identify = |id: String| {
        json!({"type": "person", "identifiers": {"id": id}, "action": "identify",
               "attributes": {"plan": "pro"}})
    };
    api.batch((0..5).map(|i| identify(format!("p{i}"))).collect())
        .await;
    // p0 is read (a use), so p1 is now the least recently used.
    api.customer("/customers/p0/attributes").await;
    api.batch(vec![identify("p5".into())]).await;
    assert!(api.mock.person("p0").is_some(), "read recently: kept");
    assert!(
        api.mock.person("p1").is_none(),
        "least recently used: evicted"
    );
    let stats = api.mock.stats();
    assert_eq!((stats.people, stats.evicted_people), (5, 1));

    // The de-duplication window: 64 ids, in two generations of 32 over 16 shards (2 each).
    // An id repeated at once is a duplicate; after a thousand newer ids it is forgotten.
    api.batch(vec![
        event("p0", "e", "first", 1, json!({})),
        event("p0", "e", "first", 1, json!({})),
    ])
    .await;
    assert_eq!(api.mock.stats().duplicate_event_ids, 1);
    for chunk in 0..10 {
        api.batch(
            (0..100)
                .map(|i| event("p0", "e", &format!("id{chunk}-{i}"), 2, json!({})))
                .collect(),
        )
        .await;
    }
    api.batch(vec![event("p0", "e", "first", 1, json!({}))])
        .await;
    let stats = api.mock.stats();
    assert_eq!(stats.duplicate_event_ids, 1, "forgotten, so taken as new");
    assert_eq!(stats.unique_event_ids, 1_002);
    assert!(stats.event_ids_forgotten >= 1_002 - 64, "{stats:?}");
}

#[tokio::test]
async fn the_byte_budget_evicts_people_whatever_their_count() {
    let api = Api::start(StoreLimits {
        bytes: 1 << 20,
        ..StoreLimits::default()
    })
    .await;
    let big = "x".repeat(900);
    for round in 0..20 {
        api.batch(
            (0..50)
                .map(|i| {
                    event(
                        &format!("r{round}-{i}"),
                        "big",
                        &format!("{round}-{i}"),
                        1,
                        json!({ "blob": big }),
                    )
                })
                .collect(),
        )
        .await;
    }
    let stats = api.mock.stats();
    assert!(stats.state_bytes <= 1 << 20, "{stats:?}");
    assert!(stats.evicted_people > 0, "{stats:?}");
    assert_eq!(stats.people + stats.evicted_people, 1_000);
    assert!(api.mock.person("r19-49").is_some(), "the newest stays");
}

#[tokio::test]
async fn without_state_the_reads_say_why() {
    let mock = MockServer::builder()
        .keep_state(false)
        .start()
        .await
        .unwrap();
    let t = Transport::new(&ClientOptions::default());
    let r = t
        .send(
            Method::GET,
            &format!("{}/v1/customers/1/attributes", mock.url()),
            &AppCredentials::new("k").header(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
    assert!(String::from_utf8_lossy(&r.body).contains("keeps no state"));
    assert!(mock.person("1").is_none());
}

/// Every request the official Node SDK 5.2.0 sends for its reads (recorded in cio-api's
/// `tests/fixtures/node_sdk_reads.json`), sent as it sent them: the mock answers each from
/// what it holds, 200 for the people it has and 404 for those it has not.
#[tokio::test]
async fn the_official_sdks_read_requests_are_answered() {
    let api = Api::start(StoreLimits::default()).await;
    api.identify("42", json!({"email": "ada+1@example.com"}))
        .await;
    api.identify("user%2F7%20%C3%BC", json!({"plan": "x"}))
        .await;
    api.track(
        Method::POST,
        "/api/v1/customers/42/events",
        json!({"name": "Signed Up"}),
    )
    .await;
    let fixture: Vec<Value> = serde_json::from_str(include_str!(
        "../../cio-api/tests/fixtures/node_sdk_reads.json"
    ))
    .unwrap();
    for req in &fixture {
        let call = req["call"].as_str().unwrap();
        let method: Method = req["method"].as_str().unwrap().parse().unwrap();
        let (status, v) = api
            .send(
                &api.app,
                method,
                req["path"].as_str().unwrap(),
                req["body"].clone(),
            )
            .await;
        let expected = if call.contains("d9c1") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected, "{call}: {v}");
    }
}

/// Customer.io's identify rule: an identifier new in the path with one in the body that belongs
/// to someone updates that person and gives them the path's identifier; a phone reads them
/// too (id_type=phone).
#[tokio::test]
async fn an_identify_by_a_new_id_with_a_known_email_updates_that_person() {
    let api = Api::start(StoreLimits::default()).await;
    api.batch(vec![json!({"type": "person", "identifiers": {"email": "Jo@Example.com"},
                          "action": "identify", "attributes": {"plan": "free", "phone": "+14155552671"}})])
        .await;
    api.identify("u-9", json!({"email": "jo@example.com", "plan": "pro"}))
        .await;
    assert_eq!(api.mock.stats().people, 1, "no second person");
    let c = api.customer("/customers/u-9/attributes").await;
    assert_eq!(c["attributes"]["plan"], "pro");
    assert_eq!(
        c["identifiers"]["email"], "jo@example.com",
        "the value last sent"
    );
    let by_phone = api
        .customer("/customers/%2B14155552671/attributes?id_type=phone")
        .await;
    assert_eq!(by_phone["identifiers"]["id"], "u-9");
}

/// Customer.io links what someone did before they were identified: events by anonymous id
/// (v1, v2 and Pipelines) become the person's when an identify carries that anonymous id.
#[tokio::test]
async fn anonymous_events_become_the_persons_when_identified() {
    let api = Api::start(StoreLimits::default()).await;
    api.track(
        Method::POST,
        "/api/v1/events",
        json!({"name": "viewed_pricing", "anonymous_id": "anon-1", "timestamp": 100}),
    )
    .await;
    api.batch(vec![
        json!({"type": "person", "anonymous_id": "anon-1", "action": "page",
                          "name": "/signup", "timestamp": 200}),
    ])
    .await;
    let (status, _) = api
        .send(
            &api.cdp,
            Method::POST,
            "/v1/track",
            json!({"anonymousId": "anon-2", "event": "Browsed", "timestamp": "2026-12-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.mock.stats().anonymous_ids, 2);
    assert_eq!(api.mock.stats().people, 0);

    api.identify(
        "u1",
        json!({"email": "u1@example.com", "anonymous_id": "anon-1"}),
    )
    .await;
    let (_, v) = api.app_get("/customers/u1/activities").await;
    let names = column(&v["activities"], "/name");
    assert_eq!(names, ["/signup", "viewed_pricing"], "{v}");
    // A Pipelines identify with both ids takes the other's.
    let (status, _) = api
        .send(
            &api.cdp,
            Method::POST,
            "/v1/identify",
            json!({"userId": "u2", "anonymousId": "anon-2", "traits": {"plan": "pro"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.person("u2")["events"][0]["name"], "Browsed");
    assert_eq!(api.mock.stats().anonymous_ids, 0);
}
