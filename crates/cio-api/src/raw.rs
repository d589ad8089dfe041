//! Entries taken as they came: a v2 entry's own bytes, checked in one pass and sent unchanged.
//!
//! A line of the pipeline's input is already a v2 entry. When its bytes are exactly what
//! Customer.io would get from us anyway, parsing it into an [`crate::Operation`] and writing it
//! out again only costs time. [`vouch`] walks the bytes once, checks the entry against the
//! [`Limits`] as [`crate::Operation::validate`] does, and says whether the bytes can go out
//! as they are. It vouches only for what it can judge completely; anything else gets `None`,
//! and the caller takes the full path (parse, validate, encode), which also words the error for a
//! bad entry. So the fast path never accepts what the full path refuses, and never sends
//! anything whose meaning differs from what the full path would send.
//!
//! # What it vouches for
//!
//! Person `identify`, `event`, `page` and `screen` entries (nearly every line of a real
//! stream), with no field outside what the action takes, written as serde_json writes JSON:
//! - no whitespace outside strings;
//! - strings whose escapes are exactly serde_json's (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`,
//!   `\u00xx` for other control characters), so that the escaped length the limits are measured
//!   on is the length on the wire, and two keys are equal exactly when their bytes are;
//! - integers in i64/u64 range, and other numbers in the shortest form that reads back as the
//!   same f64 exactly as serde_json writes it;
//! - no key twice in any object (the full path would keep the last one and send one; the raw
//!   bytes would carry both).
//!
//! Not vouched for, so re-encoded by the full path: numeric identifiers (they become strings),
//! `"attributes": null` (taken as empty), relationships, `\u` escapes of other characters, `\/`,
//! an empty `anonymous_id` (an invite), an `id` with escapes, and every other entry type.
//!
//! # Why by hand
//!
//! No JSON crate reports whether its input was in canonical form: serde_json (and simd-json,
//! sonic-rs) give values or raw slices, not whether the whitespace, escapes and number forms
//! are the ones its serializer writes, nor duplicate keys inside maps. Building a `Value` to find
//! out is the cost this module exists to avoid. The scanner is small, knows only the shapes
//! above, and is tested against the full path on every case it takes (see the tests).

use serde_json::ser::Formatter;

use crate::limits::Limits;

/// What [`vouch`] learnt about an entry it takes as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vouched<'a> {
    /// The operation's kind, as [`crate::Operation::stat_name`] names it.
    pub kind: &'static str,
    /// The event's `id`, when it is an event that has one.
    pub event_id: Option<&'a str>,
    /// The entry's `timestamp`.
    pub timestamp: Option<i64>,
    /// An event, page or screen (which de-duplicates on its id).
    pub is_event: bool,
}

impl Vouched<'_> {
    /// An event without an `id`: Customer.io cannot de-duplicate it, so the pipeline adds one.
    pub fn needs_id(&self) -> bool {
        self.is_event && self.event_id.is_none()
    }

    /// Whether sending it twice acts once, as [`crate::Operation::is_idempotent`] says.
    pub fn is_idempotent(&self) -> bool {
        !self.needs_id()
    }
}

/// Checks `entry` (one v2 entry, no surrounding whitespace) against `limits` in one pass, and
/// returns what it is when its bytes can be sent as they are; `None` when the full path must
/// judge it (see the [module docs](self)). The entry's total size is not checked here: it is
/// checked on the bytes finally sent (an id may be added).
///
/// ```
/// use cio_api::{raw::vouch, Limits};
///
/// let line = br#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"signup","id":"01J0000000000000000000000"}"#;
/// let v = vouch(line, &Limits::default()).unwrap();
/// assert_eq!((v.kind, v.event_id), ("event", Some("01J0000000000000000000000")));
/// // Whitespace, a numeric identifier, a name over the limit: the full path decides.
/// assert!(vouch(br#"{"type": "person","identifiers":{"id":"42"},"action":"delete"}"#, &Limits::default()).is_none());
/// assert!(vouch(br#"{"type":"person","identifiers":{"id":42},"action":"identify"}"#, &Limits::default()).is_none());
/// ```
pub fn vouch<'a>(entry: &'a [u8], limits: &Limits) -> Option<Vouched<'a>> {
    let text = std::str::from_utf8(entry).ok()?;
    let mut c = Cursor {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let fields = c.entry(limits)?;
    if c.i != c.b.len() {
        return None;
    }
    fields.judge(limits)
}

/// Splits a v2 `/batch` body written as [`crate::encode`] writes it (`{"batch":[entry,...]}`,
/// no whitespace) whose every entry [`vouch`]es, in one pass: each entry's text with what was
/// learnt of it. `None` when any part is not so; the caller then parses the body in full.
/// Entry sizes are not checked here, as with [`vouch`].
///
/// ```
/// use cio_api::{raw::vouch_batch, Limits};
///
/// let body = br#"{"batch":[{"type":"person","identifiers":{"id":"1"},"action":"identify","attributes":{"plan":"pro"}},{"type":"person","identifiers":{"id":"2"},"action":"event","name":"signup","id":"e1"}]}"#;
/// let entries = vouch_batch(body, &Limits::default()).unwrap();
/// assert_eq!(entries.len(), 2);
/// assert_eq!((entries[1].1.kind, entries[1].1.event_id), ("event", Some("e1")));
/// assert!(vouch_batch(br#"{"batch": []}"#, &Limits::default()).is_none());
/// ```
pub fn vouch_batch<'a>(body: &'a [u8], limits: &Limits) -> Option<Vec<(&'a str, Vouched<'a>)>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut c = Cursor {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    c.literal(b"{\"batch\":[")?;
    let mut entries = Vec::new();
    if c.peek()? != b']' {
        loop {
            let start = c.i;
            let vouched = c.entry(limits)?.judge(limits)?;
            entries.push((text.get(start..c.i)?, vouched));
            match c.peek()? {
                b',' => c.i += 1,
                b']' => break,
                _ => return None,
            }
        }
    }
    c.literal(b"]}")?;
    (c.i == c.b.len()).then_some(entries)
}

/// The top-level fields of an entry, as far as the fast path takes them.
#[derive(Default)]
struct Fields<'a> {
    entry_type: Option<&'a str>,
    action: Option<&'a str>,
    identifiers: bool,
    anonymous_id: bool,
    attributes: Option<Attrs>,
    name: bool,
    id: Option<&'a str>,
    timestamp: Option<i64>,
}

/// What the scan of an `attributes` object found.
struct Attrs {
    /// Its length on the wire: what the event-data limit measures.
    len: usize,
    /// Top-level keys.
    count: usize,
    /// Every name and value within the per-attribute limits (what identify checks).
    within_limits: bool,
}

impl<'a> Fields<'a> {
    fn judge(self, limits: &Limits) -> Option<Vouched<'a>> {
        if self.entry_type != Some("person") {
            return None;
        }
        let (kind, is_event) = match self.action? {
            "identify" => ("identify", false),
            "event" => ("event", true),
            "page" => ("page", true),
            "screen" => ("screen", true),
            _ => return None,
        };
        if is_event {
            // Exactly one subject, a name; the data within its limit.
            if self.identifiers == self.anonymous_id || !self.name {
                return None;
            }
            if let Some(a) = &self.attributes {
                if a.len > limits.event_data_bytes {
                    return None;
                }
            }
        } else {
            if !self.identifiers || self.anonymous_id || self.name || self.id.is_some() {
                return None;
            }
            if let Some(a) = &self.attributes {
                if a.count > limits.attributes_per_call || !a.within_limits {
                    return None;
                }
            }
        }
        Some(Vouched {
            kind,
            event_id: self.id,
            timestamp: self.timestamp,
            is_event,
        })
    }
}

/// Objects nested deeper than this are left to the full path (serde_json stops at 128).
const MAX_DEPTH: usize = 64;

struct Cursor<'a> {
    /// The entry, checked as UTF-8 once: slices between ASCII delimiters are UTF-8 too.
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// The top-level object.
    fn entry(&mut self, limits: &Limits) -> Option<Fields<'a>> {
        let mut f = Fields::default();
        let mut seen = 0u16;
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            return None;
        }
        loop {
            let (key, escaped) = self.string()?;
            if escaped {
                return None;
            }
            self.eat(b':')?;
            let bit = match key {
                "type" => {
                    f.entry_type = Some(self.plain_string()?);
                    1
                }
                "action" => {
                    f.action = Some(self.plain_string()?);
                    2
                }
                "identifiers" => {
                    self.person_identifier(limits)?;
                    f.identifiers = true;
                    4
                }
                "anonymous_id" => {
                    sized(self.string()?.0, limits.identifier_bytes)?;
                    f.anonymous_id = true;
                    8
                }
                "attributes" => {
                    f.attributes = Some(self.attributes(limits)?);
                    16
                }
                "name" => {
                    sized(self.string()?.0, limits.event_name_bytes)?;
                    f.name = true;
                    32
                }
                "id" => {
                    let s = self.plain_string()?;
                    f.id = Some(sized(s, limits.identifier_bytes)?);
                    64
                }
                "timestamp" => {
                    f.timestamp = Some(self.integer()?);
                    128
                }
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(f);
                }
                _ => return None,
            }
        }
    }

    /// `{"id"|"email"|"phone"|"cio_id":"..."}`: one identifier, a string within the limit.
    fn person_identifier(&mut self, limits: &Limits) -> Option<()> {
        self.eat(b'{')?;
        let key = self.plain_string()?;
        if !matches!(key, "id" | "email" | "phone" | "cio_id") {
            return None;
        }
        self.eat(b':')?;
        if self.peek()? != b'"' {
            return None;
        }
        let (value, _) = self.string()?;
        if value.is_empty() || value.len() > limits.identifier_bytes {
            return None;
        }
        self.eat(b'}')
    }

    /// An `attributes` object: its size, key count, and whether every name and value is within
    /// the per-attribute limits.
    fn attributes(&mut self, limits: &Limits) -> Option<Attrs> {
        let start = self.i;
        let mut within_limits = true;
        let count = self.object(1, |key, value| {
            within_limits &= !key.is_empty()
                && key.len() <= limits.attribute_name_bytes
                && value <= limits.attribute_value_bytes;
        })?;
        Some(Attrs {
            len: self.i - start,
            count,
            within_limits,
        })
    }

    /// An object at `depth`, calling `each(key, value_len)` for its members (a string value's
    /// length is its text between the quotes, as [`crate::size`] measures it). Returns the
    /// number of members; `None` on anything not canonical, or a key given twice.
    fn object(&mut self, depth: usize, mut each: impl FnMut(&str, usize)) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(0);
        }
        let mut keys = Keys::default();
        loop {
            let (key, _) = self.string()?;
            if !keys.insert(key) {
                return None;
            }
            self.eat(b':')?;
            let start = self.i;
            let value_len = if self.peek()? == b'"' {
                self.string()?.0.len()
            } else {
                self.value(depth)?;
                self.i - start
            };
            each(key, value_len);
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(keys.len);
                }
                _ => return None,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(depth + 1, |_, _| {}).map(|_| ()),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.value(depth)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string without escapes.
    fn plain_string(&mut self) -> Option<&'a str> {
        match self.string()? {
            (s, false) => Some(s),
            (_, true) => None,
        }
    }

    /// A string: its text between the quotes (still escaped), and whether it holds escapes.
    /// `None` unless every escape is one serde_json writes.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            // Most bytes are plain: skip them eight at a time.
            self.i += plain_prefix(self.b.get(self.i..)?)?;
            match self.b[self.i] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match *self.b.get(self.i)? {
                        b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            let control = match hex {
                                [b'0', b'0', hi @ (b'0' | b'1'), lo] => {
                                    let lo = match lo {
                                        b'0'..=b'9' => lo - b'0',
                                        b'a'..=b'f' => lo - b'a' + 10,
                                        _ => return None,
                                    };
                                    (hi - b'0') << 4 | lo
                                }
                                _ => return None,
                            };
                            // serde_json writes these five with their short escapes.
                            if matches!(control, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        // Both ends are ASCII quotes, so both are character boundaries.
        let s = self.text.get(start..self.i)?;
        self.i += 1;
        Some((s, escaped))
    }

    /// An integer as serde_json writes an i64.
    fn integer(&mut self) -> Option<i64> {
        let start = self.i;
        self.number()?;
        let text = self.text.get(start..self.i)?;
        text.parse().ok()
    }

    /// A number in the form serde_json writes it back: an integer within i64/u64 range, or the
    /// shortest form of a finite f64.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        self.eat(b'-').unwrap_or(());
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
            float = true;
        }
        let text = self.text.get(start..self.i)?;
        if !float {
            // serde_json reads -0 as a float, and an integer out of range as a float too.
            let fits = if text.starts_with('-') {
                text != "-0" && text.parse::<i64>().is_ok()
            } else {
                text.parse::<u64>().is_ok()
            };
            return fits.then_some(());
        }
        let value: f64 = text.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        // Written back exactly as serde_json writes it (`1e+300`, not `1e300`), or left to the
        // full path.
        let mut buf = [0u8; 40];
        let mut out = &mut buf[..];
        serde_json::ser::CompactFormatter
            .write_f64(&mut out, value)
            .ok()?;
        let written = 40 - out.len();
        (&buf[..written] == text.as_bytes()).then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

/// The keys of one object seen so far, to refuse a key given twice. Few keys (nearly every
/// object): a linear search over an inline array; more: a sorted vector.
#[derive(Default)]
struct Keys<'a> {
    inline: [&'a str; 16],
    more: Vec<&'a str>,
    len: usize,
}

impl<'a> Keys<'a> {
    fn insert(&mut self, key: &'a str) -> bool {
        if self.len < self.inline.len() {
            if self.inline[..self.len].contains(&key) {
                return false;
            }
            self.inline[self.len] = key;
        } else {
            if self.inline.contains(&key) {
                return false;
            }
            match self.more.binary_search(&key) {
                Ok(_) => return false,
                Err(at) => self.more.insert(at, key),
            }
        }
        self.len += 1;
        true
    }
}

/// The length of the plain run at the start of `b`: bytes before the first quote, backslash or
/// control character (`None` if there is none). Eight bytes a step (SWAR): memchr finds up to
/// three given bytes, not a range, and on the short strings of an entry its setup cost was
/// most of the scan.
fn plain_prefix(b: &[u8]) -> Option<usize> {
    const LO: u64 = u64::from_ne_bytes([0x01; 8]);
    const HI: u64 = u64::from_ne_bytes([0x80; 8]);
    // The lowest flagged byte of each mask is exact (a borrow only flags bytes above a real
    // match), so the lowest flag of their union is the first special byte.
    let flags = |w: u64| {
        let quote = w ^ (LO * u64::from(b'"'));
        let backslash = w ^ (LO * u64::from(b'\\'));
        ((quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (w.wrapping_sub(LO * 0x20) & !w))
            & HI
    };
    let mut words = b.chunks_exact(8);
    let mut i = 0;
    for word in &mut words {
        let m = flags(u64::from_le_bytes(word.try_into().ok()?));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// `s` when it is neither empty nor longer than `max` bytes (escaped, as on the wire).
fn sized(s: &str, max: usize) -> Option<&str> {
    (!s.is_empty() && s.len() <= max).then_some(s)
}

#[cfg(test)]
mod tests;
