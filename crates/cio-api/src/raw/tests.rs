//! The fast path against the full path: whatever [`vouch`] takes, the full path takes too, and
//! the bytes sent mean what the full path would send.

use rand::{rngs::SmallRng, Rng, SeedableRng};
use serde_json::Value;

use super::*;
use crate::encode::Entry;
use crate::Operation;

fn full(line: &[u8], limits: &Limits) -> Result<Entry, String> {
    let op = Operation::from_json(line).map_err(|e| e.to_string())?;
    Entry::new(&op, limits).map_err(|e| e.to_string())
}

/// An entry's meaning: the parsed JSON, with the one difference the encoder makes on purpose
/// (an empty event `attributes` left out; an identify's always written) evened out.
fn meaning(bytes: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    let m = v.as_object_mut().unwrap();
    if m.get("attributes")
        .is_some_and(|a| a == &serde_json::json!({}))
    {
        m.remove("attributes");
    }
    v
}

/// The invariant, for any input: vouched means accepted by the full path, the same kind and id,
/// the bytes in serde_json's own form (same length when written again) and the same meaning.
fn check(line: &[u8], limits: &Limits) -> bool {
    // As `Entry::from_wire` takes it: the total size is checked on the bytes sent.
    let Some(v) = vouch(line, limits).filter(|_| line.len() <= limits.entry_bytes) else {
        return false;
    };
    let text = String::from_utf8_lossy(line);
    let entry = full(line, limits)
        .unwrap_or_else(|e| panic!("vouched for what the full path refuses ({e}): {text}"));
    let op = Operation::from_json(line).unwrap();
    assert_eq!(v.kind, op.stat_name(), "{text}");
    assert_eq!(v.event_id, op.event_id(), "{text}");
    assert_eq!(v.is_idempotent(), op.is_idempotent(), "{text}");
    let parsed: Value = serde_json::from_slice(line).unwrap();
    assert_eq!(
        serde_json::to_vec(&parsed).unwrap().len(),
        line.len(),
        "vouched for bytes serde_json would write otherwise: {text}"
    );
    assert_eq!(meaning(line), meaning(entry.wire()), "{text}");
    true
}

const GOOD: &[&str] = &[
    r#"{"action":"event","attributes":{"coupon":"","currency":"EUR","items":1,"order_id":"ord-00000000","total":232.99},"id":"01M8F0ASG0V2S0000000000000","identifiers":{"id":"user-015212"},"name":"cart_updated","timestamp":1795800000,"type":"person"}"#,
    r#"{"action":"identify","attributes":{"created_at":1779160910,"email":"user-012106@example.com","plan":"enterprise","seats":158},"identifiers":{"id":"user-012106"},"type":"person"}"#,
    r#"{"type":"person","identifiers":{"email":"a@b.c"},"action":"identify"}"#,
    r#"{"type":"person","identifiers":{"cio_id":"a1"},"action":"identify","attributes":{},"timestamp":-5}"#,
    r#"{"type":"person","identifiers":{"phone":"+15551234567"},"action":"page","name":"/home","id":"x1"}"#,
    r#"{"type":"person","anonymous_id":"anon-1","action":"screen","name":"Home","attributes":{"a":[1,-2,3.5,-0.0,1e+300,1e-7,true,false,null,{"b":{"c":[]}}]}}"#,
    r#"{"type":"person","identifiers":{"id":"q\"uo\\te\n\u0001"},"action":"event","name":"é \"x\" 😀","id":"i"}"#,
    r#"{"type":"person","identifiers":{"id":"7"},"action":"event","name":"no id"}"#,
    r#"{"type":"person","identifiers":{"id":"7"},"action":"identify","attributes":{"k\tey":"v\u001fal","n":18446744073709551615,"m":-9223372036854775808}}"#,
];

/// Each is valid, and left to the full path (it would send other bytes, or judge otherwise).
const NOT_VOUCHED: &[&str] = &[
    // numbers serde_json writes otherwise
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"a":1e300}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"a":1.50}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"a":1E-7}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"a":100000000000000000000}}"#,
    // whitespace
    r#"{"type": "person","identifiers":{"id":"1"},"action":"identify"}"#,
    r#" {"type":"person","identifiers":{"id":"1"},"action":"identify"}"#,
    // escapes serde_json does not write
    r#"{"type":"person","identifiers":{"id":"a\/b"},"action":"identify"}"#,
    r#"{"type":"person","identifiers":{"id":"\u00e9"},"action":"identify"}"#,
    r#"{"type":"person","identifiers":{"id":"\u000a"},"action":"identify"}"#,
    r#"{"type":"person","identifiers":{"id":"\u001F"},"action":"identify"}"#,
    // numbers in another form
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"x":1.50}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"x":1E5}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"x":-0}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"x":18446744073709551616}}"#,
    // normalised by the full path
    r#"{"type":"person","identifiers":{"id":42},"action":"identify"}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":null}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"a":1,"a":2}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"o":{"a":1,"a":2}}}"#,
    // shapes it does not take
    r#"{"type":"person","identifiers":{"id":"1"},"action":"delete"}"#,
    r#"{"type":"object","identifiers":{"object_type_id":"1","object_id":"2"},"action":"identify"}"#,
    r#"{"type":"person","anonymous_id":"","action":"event","name":"invite","attributes":{"recipient":"a@b.c"}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","cio_relationships":[{"identifiers":{"object_type_id":"1","object_id":"2"}}]}"#,
];

const BAD: &[&str] = &[
    r#"{"type":"person","identifiers":{"id":"1"},"action":"event"}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","name":"x"}"#,
    r#"{"type":"person","identifiers":{"id":"1","email":"a@b.c"},"action":"identify"}"#,
    r#"{"type":"person","identifiers":{"id":""},"action":"identify"}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"anonymous_id":"a","action":"event","name":"x"}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"x","data":{}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"x","timestamp":1.5}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"x","id":""}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"":1}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","type":"person"}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify"}x"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify""#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"a":tru}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"a":01}}"#,
    r#"{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"a":"x	y"}}"#,
];

#[test]
fn it_takes_canonical_entries_and_leaves_the_rest_to_the_full_path() {
    let limits = Limits::default();
    for line in GOOD {
        assert!(check(line.as_bytes(), &limits), "not vouched: {line}");
    }
    for line in NOT_VOUCHED {
        assert!(full(line.as_bytes(), &limits).is_ok(), "{line}");
        assert!(vouch(line.as_bytes(), &limits).is_none(), "{line}");
    }
    for line in BAD {
        assert!(full(line.as_bytes(), &limits).is_err(), "{line}");
        assert!(vouch(line.as_bytes(), &limits).is_none(), "{line}");
    }
    assert!(vouch(
        b"{\"type\":\"person\",\"identifiers\":{\"id\":\"\xff\"},\"action\":\"identify\"}",
        &limits
    )
    .is_none());
}

#[test]
fn at_every_limit_it_agrees_with_the_full_path() {
    let limits = Limits::default();
    let event = |name: &str, id: &str, data: &str| {
        format!(
            r#"{{"type":"person","identifiers":{{"id":"{id}"}},"action":"event","name":"{name}","id":"e1","attributes":{data}}}"#
        )
    };
    let identify = |attrs: &str| {
        format!(
            r#"{{"type":"person","identifiers":{{"id":"1"}},"action":"identify","attributes":{attrs}}}"#
        )
    };
    let many = |n: usize| {
        let members: Vec<String> = (0..n).map(|i| format!(r#""a{i}":{i}"#)).collect();
        format!("{{{}}}", members.join(","))
    };
    let big_data = |len: usize| {
        // {"d":"..."} is 8 bytes around the text.
        format!(r#"{{"d":"{}"}}"#, "x".repeat(len - 8))
    };
    let cases = [
        event(&"n".repeat(100), "1", "{}"),
        event(&"n".repeat(101), "1", "{}"),
        event(&format!("{}\\n", "n".repeat(98)), "1", "{}"),
        event(&format!("{}\\n", "n".repeat(99)), "1", "{}"),
        event("x", &"i".repeat(150), "{}"),
        event("x", &"i".repeat(151), "{}"),
        event("x", "1", &big_data(limits.event_data_bytes)),
        event("x", "1", &big_data(limits.event_data_bytes + 1)),
        identify(&many(300)),
        identify(&many(301)),
        identify(&format!(r#"{{"v":"{}"}}"#, "v".repeat(1000))),
        identify(&format!(r#"{{"v":"{}"}}"#, "v".repeat(1001))),
        identify(&format!(r#"{{"v":"{}\""}}"#, "v".repeat(999))),
        identify(&format!(r#"{{"v":["{}"]}}"#, "v".repeat(996))),
        identify(&format!(r#"{{"v":["{}"]}}"#, "v".repeat(997))),
        identify(&format!(r#"{{"{}":1}}"#, "k".repeat(150))),
        identify(&format!(r#"{{"{}":1}}"#, "k".repeat(151))),
    ];
    let small = Limits {
        entry_bytes: 200,
        ..Limits::default()
    };
    for line in &cases {
        for limits in [&limits, &small] {
            let fast = Entry::from_wire(line.clone().into(), limits, |_| unreachable!());
            let slow = full(line.as_bytes(), limits);
            assert_eq!(fast.is_some(), slow.is_ok(), "{line}: {slow:?}");
            check(line.as_bytes(), limits);
        }
    }
}

#[test]
fn an_added_id_is_the_only_change() {
    let limits = Limits::default();
    let line = r#"{"type":"person","identifiers":{"id":"7"},"action":"page","name":"/","timestamp":1700000000}"#;
    let entry = Entry::from_wire(line.into(), &limits, |ts| {
        assert_eq!(ts, Some(1_700_000_000));
        "01HF0000000000000000000000".into()
    })
    .unwrap();
    assert!(entry.is_idempotent());
    let op = Operation::from_json(line.as_bytes()).unwrap();
    let mut op_with_id = op.clone();
    if let Operation::Event(e) = &mut op_with_id {
        e.id = Some("01HF0000000000000000000000".into());
    }
    let slow = Entry::new(&op_with_id, &limits).unwrap();
    assert_eq!(meaning(entry.wire()), meaning(slow.wire()));
    assert_eq!(entry.wire().len(), slow.wire().len());
    // Reused: the same buffer, not a copy.
    let bytes = bytes::Bytes::from(GOOD[0]);
    let entry = Entry::from_wire(bytes.clone(), &limits, |_| unreachable!()).unwrap();
    assert_eq!(entry.wire().as_ptr(), bytes.as_ptr());
}

/// Random edits of good lines (a byte changed, inserted, removed; a member doubled): whatever
/// is still vouched for holds the invariant, and the fast path is exercised on many of them.
#[test]
fn mutated_lines_never_get_past_it_wrongly() {
    let limits = Limits::default();
    let mut rng = SmallRng::seed_from_u64(13);
    const BYTES: &[u8] = b" \t\"\\u0019aefE.-+,:{}[]nul";
    let mut vouched = 0;
    for round in 0..40_000 {
        let mut line = GOOD[round % GOOD.len()].as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..3) {
            let at = rng.gen_range(0..line.len());
            match rng.gen_range(0..4) {
                0 => line[at] = BYTES[rng.gen_range(0..BYTES.len())],
                1 => line.insert(at, BYTES[rng.gen_range(0..BYTES.len())]),
                2 => {
                    line.remove(at);
                }
                _ => {
                    // Double a stretch ending at a comma: often a member given twice.
                    if let Some(end) = line[at..].iter().position(|&b| b == b',') {
                        let piece = line[at..=at + end].to_vec();
                        line.splice(at..at, piece);
                    }
                }
            }
            if line.is_empty() {
                break;
            }
        }
        vouched += usize::from(check(&line, &limits));
    }
    assert!(vouched > 1_000, "only {vouched} mutants vouched for");
}

#[test]
fn a_batch_the_client_wrote_splits_into_the_entries_it_vouches_for() {
    let limits = Limits::default();
    let entries: Vec<Entry> = GOOD
        .iter()
        .map(|line| full(line.as_bytes(), &limits).unwrap())
        .collect();
    let batch = crate::encode::PreparedBatch::from_entries(&entries);
    let split = vouch_batch(batch.body(), &limits).expect("the client's own body");
    assert_eq!(split.len(), entries.len());
    for ((text, vouched), entry) in split.iter().zip(&entries) {
        assert_eq!(text.as_bytes(), &entry.wire()[..]);
        assert_eq!(Some(*vouched), vouch(text.as_bytes(), &limits));
    }
    assert_eq!(
        vouch_batch(br#"{"batch":[]}"#, &limits).map(|v| v.len()),
        Some(0)
    );
    // One entry the full path must judge, or any other shape: the whole body goes the full way.
    for body in [
        format!(r#"{{"batch":[{},{}]}}"#, GOOD[0], NOT_VOUCHED[0]),
        format!(r#"{{"batch":[{},{}]}}"#, GOOD[0], BAD[0]),
        format!(r#"{{"batch": [{}]}}"#, GOOD[0]),
        format!(r#"{{"batch":[{}]}} "#, GOOD[0]),
        format!(r#"{{"batch":[{},]}}"#, GOOD[0]),
        format!(r#"{{"batch":[{}],"x":1}}"#, GOOD[0]),
        format!(r#"{{"batch":[{}{}]}}"#, GOOD[0], GOOD[1]),
    ] {
        assert!(vouch_batch(body.as_bytes(), &limits).is_none(), "{body}");
    }
}

#[test]
fn the_plain_run_ends_at_the_first_quote_backslash_or_control_character() {
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..40);
        let b: Vec<u8> = (0..len)
            .map(|_| match rng.gen_range(0..10) {
                0 => *[
                    b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xff,
                ]
                .get(rng.gen_range(0..11))
                .unwrap(),
                _ => rng.gen_range(0x20..=0xff),
            })
            .collect();
        let expected = b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        assert_eq!(super::plain_prefix(&b), expected, "{b:?}");
    }
}
