//! "Did you mean": the closest known name to a misspelt field or executor, and the executors
//! people take from other tools and k6 does not have.

/// The known name closest to `word`, if one is close enough to be what was meant. Case, `-`
/// and `_` are ignored first (`maxVUs`, `constant_vus`), then spelling is compared
/// (Jaro-Winkler, as clap's suggestions do).
pub(crate) fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let plain = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = plain(word);
    // Ties (`gracefulStop` and `graceful_stop` are one name to `plain`) go to the spelling
    // closest to what was written, so a snake_case typo gets the snake_case name.
    let mut best: Option<((f64, f64), &str)> = None;
    for name in known {
        let score = if plain(name) == wanted {
            2.0
        } else {
            strsim::jaro_winkler(&wanted, &plain(name))
        };
        let rank = (score, strsim::jaro_winkler(word, name));
        if score > 0.8 && best.is_none_or(|(b, _)| rank > b) {
            best = Some((rank, name));
        }
    }
    best.map(|(_, name)| name)
}

/// What to say of an executor name that is not one of k6's, when the name is one people
/// reach for: k6 has no `ramping-rate` (the seed plan used it).
pub(crate) fn executor_hint(name: &str) -> Option<&'static str> {
    match name.trim().to_ascii_lowercase().as_str() {
        "ramping-rate" | "ramping_rate" | "rampingrate" => Some(
            "k6 has no executor of that name; `ramping-arrival-rate` is the open-model one (iterations per time_unit, from start_rate through stages), and `ramping-vus` ramps the number of looping VUs",
        ),
        "constant-rate" | "arrival-rate" => Some(
            "k6 has no executor of that name; `constant-arrival-rate` starts `rate` iterations per time_unit",
        ),
        "externally-controlled" => Some(
            "cio load has no externally-controlled executor: nothing can change a running test's VUs from outside; use ramping-vus or ramping-arrival-rate with stages",
        ),
        _ => None,
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with "did you mean `a`?" added when
/// one of the expected names is close. Other messages are returned as they are.
pub(crate) fn unknown_field(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(field, known) {
        Some(name) => format!("{message}; did you mean `{name}`?"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_guessed_and_far_ones_are_not() {
        let fields = [
            "duration",
            "rate",
            "max_vus",
            "pre_allocated_vus",
            "graceful_stop",
        ];
        assert_eq!(closest("duraton", fields), Some("duration"));
        assert_eq!(closest("maxVUs", fields), Some("max_vus"));
        assert_eq!(
            closest("preallocatedvus", fields),
            Some("pre_allocated_vus")
        );
        assert_eq!(closest("gracefull_stop", fields), Some("graceful_stop"));
        let aliased = ["gracefulStop", "graceful_stop"];
        assert_eq!(closest("gracefull_stop", aliased), Some("graceful_stop"));
        assert_eq!(closest("gracefullStop", aliased), Some("gracefulStop"));
        assert_eq!(closest("workload_seed", fields), None);
        let executors = ["constant-arrival-rate", "constant-vus", "ramping-vus"];
        assert_eq!(
            closest("constant-velocity", executors),
            Some("constant-vus")
        );
        assert_eq!(
            closest("constantArrivalRate", executors),
            Some("constant-arrival-rate")
        );
    }

    #[test]
    fn serde_messages_get_a_guess() {
        let m = "unknown field `duraton`, expected one of `executor`, `rate`, `duration`";
        assert_eq!(unknown_field(m), format!("{m}; did you mean `duration`?"));
        let m = "unknown field `zzz`, expected `a` or `b`";
        assert_eq!(unknown_field(m), m);
        assert_eq!(
            unknown_field("invalid type: string"),
            "invalid type: string"
        );
    }

    #[test]
    fn the_seeds_ramping_rate_is_named_for_what_it_is() {
        let hint = executor_hint("ramping-rate").unwrap();
        assert!(hint.contains("k6 has no executor of that name"));
        assert!(hint.contains("`ramping-arrival-rate` is the open-model one"));
        assert_eq!(executor_hint("constant-vus"), None);
    }
}
