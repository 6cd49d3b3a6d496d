//! Percentages as users type them: `--max-unused 5%`, `drill --sample 2.5%`,
//! `check --read-data-subset 10%`.
//!
//! One parser, so every flag accepts the same forms: a plain decimal number
//! with an optional `%` (`10%`, `10`, `2.5%`, `.5%`), from 0 to 100. Signs,
//! exponents, `inf` and `NaN` are refused even though `f64::from_str` takes
//! them: nobody means `1e1%`, and a typo should not become a valid value.

use std::fmt;
use std::str::FromStr;

/// A percentage from 0 to 100 inclusive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(f64);

/// Why a text is not an accepted percentage. The messages quote the text and
/// give an example; the caller (clap, or the subset parser) names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    /// Not a plain decimal number with an optional `%`.
    #[error("{0:?} is not a percentage: give a number from 0 to 100, e.g. 5% or 2.5%")]
    NotANumber(String),
    /// Above 100.
    #[error("{0:?} is out of range: a percentage is from 0% to 100%")]
    OutOfRange(String),
    /// Zero where only a positive share makes sense (a sample of nothing).
    #[error("{0:?}: give a percentage above 0%, e.g. 5%")]
    Zero(String),
}

impl Percent {
    /// No share at all.
    pub const ZERO: Percent = Percent(0.0);
    /// Everything.
    pub const ALL: Percent = Percent(100.0);

    /// The percentage `value` (0 to 100), or `None` outside that range.
    pub fn new(value: f64) -> Option<Percent> {
        (0.0..=100.0).contains(&value).then_some(Percent(value))
    }

    /// Parses `10%`, `10`, `2.5%` or `.5 %` (surrounding spaces allowed).
    ///
    /// # Errors
    /// [`PercentError`] naming `text`, for anything else or above 100.
    pub fn parse(text: &str) -> Result<Percent, PercentError> {
        let number = text.trim();
        let number = number.strip_suffix('%').unwrap_or(number).trim_end();
        let mut digits = 0;
        let mut dots = 0;
        for c in number.chars() {
            match c {
                '0'..='9' => digits += 1,
                '.' => dots += 1,
                _ => return Err(PercentError::NotANumber(text.to_string())),
            }
        }
        if digits == 0 || dots > 1 {
            return Err(PercentError::NotANumber(text.to_string()));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| PercentError::NotANumber(text.to_string()))?;
        Percent::new(value).ok_or_else(|| PercentError::OutOfRange(text.to_string()))
    }

    /// As [`Percent::parse`], refusing 0: for a sample, where 0% would check
    /// nothing and still report success.
    ///
    /// # Errors
    /// [`PercentError::Zero`] for 0, and those of [`Percent::parse`].
    pub fn parse_positive(text: &str) -> Result<Percent, PercentError> {
        match Percent::parse(text)? {
            p if p.value() > 0.0 => Ok(p),
            _ => Err(PercentError::Zero(text.to_string())),
        }
    }

    /// The percentage, 0 to 100.
    pub fn value(self) -> f64 {
        self.0
    }

    /// The share, 0 to 1.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl FromStr for Percent {
    type Err = PercentError;

    /// As [`Percent::parse`].
    fn from_str(text: &str) -> Result<Self, PercentError> {
        Percent::parse(text)
    }
}

impl fmt::Display for Percent {
    /// `5%`, `2.5%`: the shortest form that parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_numbers_with_or_without_percent_signs() {
        let value = |t: &str| Percent::parse(t).map(Percent::value);
        assert_eq!(value("10%"), Ok(10.0));
        assert_eq!(value("10"), Ok(10.0));
        assert_eq!(value("2.5%"), Ok(2.5));
        assert_eq!(value(".5%"), Ok(0.5));
        assert_eq!(value("5."), Ok(5.0));
        assert_eq!(value(" 5 % "), Ok(5.0));
        assert_eq!(value("0%"), Ok(0.0));
        assert_eq!(value("100%"), Ok(100.0));
        assert_eq!(value("100.0"), Ok(100.0));
    }

    #[test]
    fn refuses_what_is_not_a_plain_percentage() {
        for bad in [
            "", "%", "half", "5%%", "%5", "-1%", "+5", "1e1", "inf", "NaN", "5..0", ".", "5 x",
        ] {
            assert_eq!(
                Percent::parse(bad),
                Err(PercentError::NotANumber(bad.to_string())),
                "{bad:?}"
            );
        }
        for high in ["100.01%", "150%", "1000"] {
            assert_eq!(
                Percent::parse(high),
                Err(PercentError::OutOfRange(high.to_string()))
            );
        }
    }

    #[test]
    fn positive_refuses_zero_only() {
        assert_eq!(
            Percent::parse_positive("0%"),
            Err(PercentError::Zero("0%".into()))
        );
        assert_eq!(
            Percent::parse_positive("0.0"),
            Err(PercentError::Zero("0.0".into()))
        );
        assert_eq!(Percent::parse_positive("0.1%").map(Percent::value), Ok(0.1));
        assert!(matches!(
            Percent::parse_positive("101%"),
            Err(PercentError::OutOfRange(_))
        ));
    }

    #[test]
    fn fractions_display_and_errors_read_well() {
        let p: Percent = "5%".parse().expect("parses");
        assert_eq!(p.fraction(), 0.05);
        assert_eq!(p.to_string(), "5%");
        assert_eq!(Percent::parse("2.5").expect("parses").to_string(), "2.5%");
        assert_eq!(Percent::new(100.5), None);
        assert_eq!(Percent::new(f64::NAN), None);
        let message = Percent::parse("half").expect_err("bad").to_string();
        assert!(
            message.contains("\"half\"") && message.contains("e.g. 5%"),
            "{message}"
        );
    }
}
