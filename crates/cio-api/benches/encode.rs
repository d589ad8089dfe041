//! Validating and encoding a full Track v2 batch (close to the 500 KiB body limit), decoding one
//! input line, and mapping one event to its v1 request.
//!
//! ```text
//! cargo bench -p cio-api --bench encode
//! ```
//!
//! Batch cases report `Throughput::Elements(n)`, so criterion prints the time per entry
//! (`thrpt` in elements/s; divide the batch time by n for ns per entry).

use std::hint::black_box;

use cio_api::encode::encode_batch;
use cio_api::{
    Attributes, Event, EventKind, EventSubject, Identify, Limits, Operation, PersonIdentifier,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};

/// Crockford base32, as a ULID uses.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID-shaped id (26 characters: 48-bit time, 80 bits of counter-derived noise).
fn ulid_like(i: u64) -> String {
    let time = 1_700_000_000_000u64 + i;
    let noise = (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    let mut out = String::with_capacity(26);
    for k in (0..10).rev() {
        out.push(CROCKFORD[((time >> (5 * k)) & 31) as usize] as char);
    }
    for k in (0..16).rev() {
        out.push(CROCKFORD[((noise >> (5 * k)) & 31) as usize] as char);
    }
    out
}

/// An order event of about 300 bytes of JSON with 5 to 8 attributes.
fn event(i: usize) -> Operation {
    let mut data = Attributes::new();
    data.insert("order_id".into(), json!(format!("ord-{:08}", i)));
    data.insert("total".into(), json!(19.99 + (i % 50) as f64));
    data.insert("currency".into(), json!("EUR"));
    data.insert("items".into(), json!(1 + i % 4));
    data.insert(
        "coupon".into(),
        json!(if i % 3 == 0 { "SPRING" } else { "" }),
    );
    let extra: [(&str, Value); 3] = [
        ("channel", json!("web")),
        ("first_order", json!(i % 7 == 0)),
        ("shipping", json!("standard")),
    ];
    for (k, v) in extra.into_iter().take(i % 4) {
        data.insert(k.into(), v);
    }
    Operation::Event(Event {
        subject: EventSubject::Person(PersonIdentifier::Id(format!("user-{:07}", i % 100_000))),
        kind: EventKind::Event,
        name: "order_completed".into(),
        id: Some(ulid_like(i as u64)),
        timestamp: Some(1_700_000_000 + i as i64),
        data,
    })
}

/// A profile update with 20 attributes.
fn identify(i: usize) -> Operation {
    let mut a = Attributes::new();
    a.insert("email".into(), json!(format!("user{i}@example.com")));
    a.insert("first_name".into(), json!("Jane"));
    a.insert("last_name".into(), json!("Doe"));
    a.insert("created_at".into(), json!(1_600_000_000 + i));
    a.insert("plan".into(), json!(["free", "pro", "team"][i % 3]));
    a.insert("seats".into(), json!(i % 20));
    a.insert("country".into(), json!("DE"));
    a.insert("language".into(), json!("de"));
    a.insert("timezone".into(), json!("Europe/Berlin"));
    a.insert("newsletter".into(), json!(i % 2 == 0));
    a.insert("lifetime_value".into(), json!(120.5 + i as f64));
    a.insert("last_login".into(), json!(1_700_000_000 + i));
    a.insert("company".into(), json!("Acme GmbH"));
    a.insert("role".into(), json!("admin"));
    a.insert("phone_verified".into(), json!(true));
    a.insert("referrer".into(), json!("https://example.com/blog/post"));
    a.insert("utm_source".into(), json!("newsletter"));
    a.insert("utm_campaign".into(), json!("spring_sale"));
    a.insert("orders".into(), json!(i % 30));
    a.insert("tags".into(), json!(["beta", "early"]));
    Operation::Identify(Identify {
        identifier: PersonIdentifier::Id(format!("user-{i:07}")),
        attributes: a,
        relationships: Vec::new(),
        timestamp: None,
    })
}

/// As many entries as fit in one batch body, leaving a little room under the limit.
fn full_batch(make: fn(usize) -> Operation) -> Vec<Operation> {
    let budget = Limits::default().batch_bytes - 1024;
    let mut size = br#"{"batch":[]}"#.len();
    let mut ops = Vec::new();
    for i in 0.. {
        let op = make(i);
        let add = op.to_json().len() + usize::from(!ops.is_empty());
        if size + add > budget {
            break;
        }
        size += add;
        ops.push(op);
    }
    ops
}

fn bench_batch(c: &mut Criterion, name: &str, make: fn(usize) -> Operation) {
    let limits = Limits::default();
    let ops = full_batch(make);
    let encoded = encode_batch(&ops, &limits).expect("the benchmark batch is valid");
    assert!(encoded.rejected.is_empty());
    eprintln!(
        "{name}: {} entries, {} bytes, {} bytes per entry",
        ops.len(),
        encoded.body.len(),
        encoded.body.len() / ops.len()
    );
    let mut group = c.benchmark_group("encode_batch");
    group.throughput(Throughput::Elements(ops.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| encode_batch(black_box(&ops), black_box(&limits)))
    });
    group.finish();
}

fn batches(c: &mut Criterion) {
    bench_batch(c, "events_300B", event);
    bench_batch(c, "identify_20_attrs", identify);
}

fn single(c: &mut Criterion) {
    let op = event(42);
    let line = op.to_json();
    eprintln!("event line: {} bytes", line.len());
    let mut group = c.benchmark_group("single_event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("from_json", |b| {
        b.iter(|| Operation::from_json(black_box(&line)))
    });
    group.bench_function("to_v1", |b| b.iter(|| black_box(&op).to_v1()));
    group.finish();
}

criterion_group!(benches, batches, single);
criterion_main!(benches);
