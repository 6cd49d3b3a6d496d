//! Durations given on the command line (`--retry-lock`, `--grace`): one
//! parser, so every such flag accepts the same forms.
//!
//! `humantime` reads `30s`, `5m`, `2h`, `7d`, `2w`, `1h30m` and `1h 30m`;
//! a bare number is taken as seconds, as `--retry-lock 90` always was.
//! Calendar lengths (`--keep-within 1y6m`) are not durations and are parsed
//! by the engine's forget policy instead.

use std::time::Duration;

/// The forms shown in every error, so a mistyped value teaches the right one.
const EXAMPLES: &str = "e.g. 90 (seconds), 30s, 5m, 2h, 7d or 1h30m";

/// Parses a duration flag's value; clap prefixes the error with the flag.
///
/// # Errors
/// A one-line message quoting `text` with examples.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}): use {EXAMPLES}"))
}

/// `1h 30m`, `45s`, `2days`: a duration for messages, in the units that
/// [`parse`] reads back.
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_the_flags_and_docs_use_parses() {
        let secs = |t: &str| parse(t).map(|d| d.as_secs());
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("0"), Ok(0));
        assert_eq!(secs("0s"), Ok(0));
        assert_eq!(secs("30s"), Ok(30));
        assert_eq!(secs("5m"), Ok(300));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("12h"), Ok(43_200));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("1h 30m"), Ok(5400));
        assert_eq!(secs("2d"), Ok(172_800));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("2w"), Ok(1_209_600));
    }

    #[test]
    fn bad_durations_are_one_line_errors_with_examples() {
        for bad in [
            "",
            "m",
            "5x",
            "1h30",
            "-5s",
            "-1h",
            "soon",
            "99999999999999999999d",
        ] {
            let message = parse(bad).expect_err(bad);
            assert!(!message.contains('\n'), "{message}");
            assert!(message.contains("e.g. 90 (seconds), 30s"), "{message}");
        }
    }

    #[test]
    fn shown_durations_parse_back() {
        assert_eq!(show(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(show(Duration::ZERO), "0s");
        for secs in [0, 45, 3600, 5400, 172_800] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&show(d)), Ok(d));
        }
    }
}
