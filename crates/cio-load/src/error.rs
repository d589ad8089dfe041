//! The errors a load test can end with, apart from a failed threshold (which is a result, not an
//! error: see [`crate::Report::passed`]).

use std::path::PathBuf;

/// Where a problem in a scenario file is: the file, the line and column (1-based), and the field
/// as a dotted path (`scenarios.checkout.stages[1].target`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file, or `<inline>` for text given in code.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field, when known.
    pub field: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

/// One problem found in a scenario file: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where.
    pub location: Location,
    /// What is wrong, and what to do about it.
    pub message: String,
    /// The offending line of the file, for display.
    pub source_line: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location.field {
            Some(field) => write!(f, "{}: `{field}`: {}", self.location, self.message)?,
            None => write!(f, "{}: {}", self.location, self.message)?,
        }
        if let (Some(line), Some(text)) = (self.location.line, &self.source_line) {
            let gutter = line.to_string().len();
            write!(f, "\n{:gutter$} |\n{line} | {text}", "")?;
            if let Some(col) = self.location.column {
                write!(f, "\n{:gutter$} | {:>col$}", "", "^")?;
            }
        }
        Ok(())
    }
}

/// Everything that stops a load test from starting or finishing (exit code 1 in `cio load`).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The scenario file could not be read.
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The scenario file (or a plan built in code) is invalid; every problem found is listed.
    #[error("{}", problems_text(.0))]
    Invalid(Vec<Problem>),
    /// The target cannot be used as configured (missing credentials, bad URL).
    #[error("target: {0}")]
    Target(String),
    /// A report could not be written.
    #[error("cannot write {path}: {source}", path = .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The layer stack could not be built from the scenario's settings.
    #[error("scenario {scenario:?}: {reason}")]
    Stack {
        /// The scenario.
        scenario: String,
        /// Why.
        reason: String,
    },
}

fn problems_text(problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&p.to_string());
    }
    out
}

impl LoadError {
    /// One problem in a plan built in code (no file, no line).
    pub(crate) fn in_code(field: impl Into<String>, message: impl Into<String>) -> LoadError {
        LoadError::Invalid(vec![Problem {
            location: Location {
                file: PathBuf::from("<code>"),
                line: None,
                column: None,
                field: Some(field.into()),
            },
            message: message.into(),
            source_line: None,
        }])
    }
}
