//! From a field path to a line and column of the file, and back.
//!
//! TOML files are parsed a second time into toml's spanned document ([`toml::de::DeTable`]),
//! which keeps the byte range of every key and value: a semantic problem found on the typed
//! plan (`stages` on a constant executor) is reported at its key's line, and a type error that
//! toml reports with a byte range is given the dotted path of the field it falls in. JSON has no
//! spanned parser here: its syntax and type errors come with serde_json's line and column, and a
//! semantic problem is placed by finding each key of its path in turn in the text, which finds
//! the right line for any file a person writes (and the closest enclosing key otherwise).

use std::fmt;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A field path such as `scenarios.checkout.stages[1].target`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn key(&self, k: &str) -> FieldPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_owned()));
        FieldPath(v)
    }

    pub fn index(&self, i: usize) -> FieldPath {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        FieldPath(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) if k.contains(['.', '{', ' ']) => write!(f, ".\"{k}\"")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The text of a scenario file, ready to place problems in it.
pub(crate) enum Source<'a> {
    Toml(&'a str, Option<Spanned<DeTable<'a>>>),
    Json(&'a str),
}

impl<'a> Source<'a> {
    pub fn toml(text: &'a str) -> Source<'a> {
        Source::Toml(text, DeTable::parse(text).ok())
    }

    pub fn text(&self) -> &'a str {
        match self {
            Source::Toml(t, _) | Source::Json(t) => t,
        }
    }

    /// The byte offset of the deepest part of `path` found in the file.
    pub fn locate(&self, path: &FieldPath) -> Option<usize> {
        match self {
            Source::Toml(_, Some(doc)) => locate_toml(doc.get_ref(), &path.0),
            Source::Toml(_, None) => None,
            Source::Json(text) => locate_json(text, &path.0),
        }
    }

    /// The dotted path of the field at byte `offset` (TOML only).
    pub fn path_at(&self, offset: usize) -> Option<FieldPath> {
        match self {
            Source::Toml(_, Some(doc)) => {
                let mut out = Vec::new();
                path_in_table(doc.get_ref(), offset, &mut out);
                (!out.is_empty()).then_some(FieldPath(out))
            }
            _ => None,
        }
    }
}

fn locate_toml(table: &DeTable<'_>, path: &[Seg]) -> Option<usize> {
    let Some((Seg::Key(first), rest)) = path.split_first() else {
        return None;
    };
    let (key, value) = table.iter().find(|(k, _)| k.get_ref() == first)?;
    let here = key.span().start;
    Some(locate_value(value, rest).unwrap_or(here))
}

fn locate_value(value: &Spanned<DeValue<'_>>, path: &[Seg]) -> Option<usize> {
    match path.first()? {
        Seg::Key(_) => locate_toml(value.get_ref().as_table()?, path),
        Seg::Index(i) => {
            let item = value.get_ref().as_array()?.get(*i)?;
            Some(locate_value(item, &path[1..]).unwrap_or(item.span().start))
        }
    }
}

/// Finds the field at `offset`. Tables opened by a `[header]` have the header's span, not their
/// content's, so their children are searched whatever their own span says.
fn path_in_table(table: &DeTable<'_>, offset: usize, out: &mut Vec<Seg>) -> bool {
    for (k, v) in table.iter() {
        out.push(Seg::Key(k.get_ref().to_string()));
        if k.span().contains(&offset) || v.span().contains(&offset) {
            path_in_value(v, offset, out);
            return true;
        }
        if path_in_value(v, offset, out) {
            return true;
        }
        out.pop();
    }
    false
}

fn path_in_value(v: &Spanned<DeValue<'_>>, offset: usize, out: &mut Vec<Seg>) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => path_in_table(t, offset, out),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                out.push(Seg::Index(i));
                if item.span().contains(&offset) {
                    path_in_value(item, offset, out);
                    return true;
                }
                if path_in_value(item, offset, out) {
                    return true;
                }
                out.pop();
            }
            false
        }
        _ => false,
    }
}

fn locate_json(text: &str, path: &[Seg]) -> Option<usize> {
    let mut pos = 0usize;
    let mut found = None;
    for seg in path {
        let Seg::Key(k) = seg else { continue };
        let needle = format!("\"{k}\"");
        let mut from = pos;
        let at = loop {
            let rel = text.get(from..)?.find(&needle)?;
            let at = from + rel;
            let after = text.get(at + needle.len()..).unwrap_or("");
            if after.trim_start().starts_with(':') {
                break at;
            }
            from = at + needle.len();
        };
        pos = at + needle.len();
        found = Some(at);
    }
    found
}

/// 1-based line and column of byte `offset`, and the line's text.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    let line_text = text[line_start..]
        .split('\n')
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_owned();
    (line, col, line_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = "[scenarios.checkout]\nexecutor = \"constant-vus\"\nstages = [\n  { target = 1, duration = \"1s\" },\n  { target = 2, duration = \"1s\" },\n]\n";

    fn path(s: &[&str]) -> FieldPath {
        FieldPath(s.iter().map(|k| Seg::Key((*k).to_owned())).collect())
    }

    #[test]
    fn toml_paths_find_their_lines_and_back() {
        let src = Source::toml(TOML);
        let at = src
            .locate(&path(&["scenarios", "checkout", "stages"]))
            .unwrap();
        assert_eq!(line_col(TOML, at).0, 3);
        let at = src
            .locate(
                &path(&["scenarios", "checkout", "stages"])
                    .index(1)
                    .key("target"),
            )
            .unwrap();
        assert_eq!(line_col(TOML, at).0, 5);
        let back = src.path_at(at).unwrap().to_string();
        assert_eq!(back, "scenarios.checkout.stages[1].target");
        // A missing key falls back to its closest parent.
        let at = src
            .locate(&path(&["scenarios", "checkout", "rate"]))
            .unwrap();
        assert_eq!(line_col(TOML, at).0, 1);
    }

    #[test]
    fn json_paths_find_their_lines() {
        let json = "{\n \"scenarios\": {\n  \"a\": {\n   \"executor\": \"x\",\n   \"stages\": []\n  }\n }\n}";
        let src = Source::Json(json);
        let at = src.locate(&path(&["scenarios", "a", "stages"])).unwrap();
        let (line, col, text) = line_col(json, at);
        assert_eq!((line, col), (5, 4));
        assert!(text.contains("stages"));
    }
}
