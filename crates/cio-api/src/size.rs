//! Size arithmetic: how many bytes a value takes on the wire, exactly as serde_json writes it,
//! computed without serializing.

use serde_json::Value;

use crate::Attributes;

/// The length of `s` as a JSON string's content (between the quotes), escapes included, exactly
/// as serde_json writes it.
pub fn escaped_len(s: &str) -> usize {
    let mut n = s.len();
    for &b in s.as_bytes() {
        if b < 0x20 {
            n += match b {
                b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                _ => 5,
            };
        } else if b == b'"' || b == b'\\' {
            n += 1;
        }
    }
    n
}

/// The length of `v`'s compact JSON text, exactly as serde_json writes it, without allocating.
pub fn json_len(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => number_len(n),
        Value::String(s) => escaped_len(s) + 2,
        Value::Array(a) => 2 + a.iter().map(json_len).sum::<usize>() + a.len().saturating_sub(1),
        Value::Object(m) => object_len(m),
    }
}

pub(crate) fn object_len(m: &Attributes) -> usize {
    2 + m
        .iter()
        .map(|(k, v)| escaped_len(k) + 3 + json_len(v))
        .sum::<usize>()
        + m.len().saturating_sub(1)
}

fn number_len(n: &serde_json::Number) -> usize {
    serialized_len(n)
}

/// The length of `value`'s compact JSON, counted as it is written, without a buffer.
pub fn serialized_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

/// The size of an attribute value as sent: a string's escaped content, anything else its JSON.
pub(crate) fn value_len(v: &Value) -> usize {
    match v {
        Value::String(s) => escaped_len(s),
        other => json_len(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_len_matches_serde_json() {
        let samples = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-12345),
            json!(u64::MAX),
            json!(1.5),
            json!(1e300),
            json!("plain"),
            json!("quote\" back\\ nl\n tab\t bell\u{7} é ü 😀"),
            json!([1, "two", [3], {"four": 4}]),
            json!({"a": {"b": [null, false, "x\u{1}y"]}, "": ""}),
        ];
        for v in samples {
            assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len(), "{v}");
        }
    }
}
