//! An axum service whose `POST /signup` identifies the new person and tracks a `signed_up`
//! event through the batched, rate-limited stack, and flushes what is batched on graceful
//! shutdown (Ctrl-C / SIGTERM).
//!
//! ```text
//! cargo run --release --example axum_signup
//! curl -X POST localhost:3000/signup -H 'content-type: application/json' \
//!      -d '{"id":"42","email":"jane@example.com","plan":"pro"}'
//! ```
//!
//! Without `CIO_ENDPOINT` / `CIO_REGION` it starts an embedded mock Customer.io and prints its
//! stats on shutdown. With `CIO_REGION=us|eu` (or `CIO_ENDPOINT=URL`), `CIO_SITE_ID` and
//! `CIO_API_KEY` it sends to that workspace.
//!
//! The handler answers 202 once Customer.io (through the batch) accepted both operations, 422
//! when the input breaks a Customer.io limit, 503 when delivery failed after retries. Copy
//! `app()` into your service: the stack is a cloneable `tower::Service`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use cio_toolkit::api::stack::{BatchedStack, StackConfig, StackError, StackService};
use cio_toolkit::api::{
    BatchClient, EntryError, Event, EventKind, EventSubject, Identify, Limits, Operation,
    PersonIdentifier, Region, TrackCredentials,
};
use serde::Deserialize;
use tower::ServiceExt;

/// The signup form.
#[derive(Debug, Deserialize)]
pub struct Signup {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub plan: Option<String>,
}

/// The axum app over a stack's service.
pub fn app(stack: StackService) -> Router {
    Router::new()
        .route("/signup", post(signup))
        .with_state(stack)
}

async fn signup(
    State(stack): State<StackService>,
    Json(form): Json<Signup>,
) -> (StatusCode, Json<serde_json::Value>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let person = PersonIdentifier::Id(form.id.clone());
    let mut attributes = serde_json::Map::new();
    attributes.insert("email".into(), form.email.clone().into());
    attributes.insert("created_at".into(), now.as_secs().into());
    if let Some(plan) = &form.plan {
        attributes.insert("plan".into(), plan.clone().into());
    }
    let identify = Operation::Identify(Identify {
        identifier: person.clone(),
        attributes,
        relationships: Vec::new(),
        timestamp: Some(now.as_secs() as i64),
    });
    // Give the event its id before the first attempt: a retry is then de-duplicated.
    let event_id = ulid::Ulid::from_parts(now.as_millis() as u64, rand::random()).to_string();
    let event = Operation::Event(Event {
        subject: EventSubject::Person(person),
        kind: EventKind::Event,
        name: "signed_up".into(),
        id: Some(event_id.clone()),
        timestamp: Some(now.as_secs() as i64),
        data: serde_json::Map::new(),
    });
    // Refuse bad input at once, rather than when its batch comes back.
    for op in [&identify, &event] {
        if let Err(e) = op.validate(&Limits::default()) {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(serde_json::json!({"error": e.to_string(), "field": e.field()})),
            );
        }
    }
    let (a, b) = tokio::join!(stack.clone().oneshot(identify), stack.oneshot(event));
    match a.and(b) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"event_id": event_id})),
        ),
        Err(StackError::Item(EntryError::Invalid(e))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({"error": e.to_string(), "field": e.field()})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": e.to_string()})),
        ),
    }
}

/// Serves `app` on `listener` until `shutdown`; then stops taking connections and flushes what
/// is batched at once (the handlers still waiting for their batch get their answer), and returns
/// when every answer is out.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stack: BatchedStack,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let flush = stack.clone();
    axum::serve(listener, app(stack.service()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Don't let in-flight requests wait for the linger: flush now, while axum drains.
            tokio::spawn(async move { flush.close().await });
        })
        .await?;
    stack.close().await;
    Ok(())
}

#[allow(dead_code)] // the tests include this file as a module and use only `app` and `serve`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut mock = None;
    let region = match (std::env::var("CIO_ENDPOINT"), std::env::var("CIO_REGION")) {
        (Ok(url), _) => Region::custom(&url)?,
        (_, Ok(r)) => Region::parse(&r)?,
        _ => {
            let m = cio_toolkit::mock::MockServer::builder().start().await?;
            println!(
                "no CIO_ENDPOINT or CIO_REGION: using an embedded mock at {}",
                m.url()
            );
            let region = m.region();
            mock = Some(m);
            region
        }
    };
    let credentials = TrackCredentials::new(
        std::env::var("CIO_SITE_ID").unwrap_or_else(|_| "site".into()),
        std::env::var("CIO_API_KEY").unwrap_or_else(|_| "key".into()),
    );
    let stack = BatchedStack::new(
        BatchClient::new(region, credentials),
        StackConfig {
            batch: cio_toolkit::layers::batch::BatchConfig {
                max_linger: Duration::from_millis(50),
                ..StackConfig::default().batch
            },
            ..StackConfig::default()
        },
    )?;
    let addr: SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}; POST /signup, Ctrl-C to stop");
    serve(listener, stack, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    if let Some(m) = mock {
        println!("mock accepted: {:?}", m.stats().accepted);
    }
    Ok(())
}
