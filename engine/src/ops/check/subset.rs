//! Which objects a `--read-data-subset` run reads in full.
//!
//! A slice `n/m` picks objects by their name (a hash, so uniformly spread):
//! the m slices are disjoint and together cover every object, so m runs with
//! n = 1..=m read every byte exactly once. A percentage picks at random.

use std::str::FromStr;

use rand::Rng;

use crate::error::Error;
use crate::percent::Percent;

/// A part of the repository to read in full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// The n-th (1-based) of m deterministic slices by object name.
    Slice {
        /// Which slice, from 1 to `of`.
        n: u32,
        /// How many slices.
        of: u32,
    },
    /// Each object with this probability, in percent (0 < p ≤ 100).
    Percent(f64),
}

impl Subset {
    /// True when the object named `name` (64 hex digits) is in this subset.
    pub fn selects(&self, name: &str) -> bool {
        match *self {
            Subset::Slice { n, of } => slice_of(name, of) == n - 1,
            Subset::Percent(p) => rand::thread_rng().gen_bool((p / 100.0).clamp(0.0, 1.0)),
        }
    }
}

/// The 0-based slice of `of` an object name falls in.
fn slice_of(name: &str, of: u32) -> u32 {
    // The first 16 hex digits are uniformly spread (names are hashes); a name
    // that is not hex (never stored by lifeboat) falls in slice 0.
    let head = name.get(..16).unwrap_or(name);
    let value = u64::from_str_radix(head, 16).unwrap_or(0);
    (value % u64::from(of)) as u32
}

impl FromStr for Subset {
    type Err = Error;

    /// `n/m` (1 ≤ n ≤ m ≤ 10000) or `P%` (0 < P ≤ 100, as
    /// [`Percent::parse_positive`] reads it). The `%` is required here,
    /// unlike elsewhere: a bare `7` could as well mean the slice `1/7`.
    fn from_str(text: &str) -> Result<Self, Error> {
        let unreadable = || {
            Error::InvalidInput(format!(
                "--read-data-subset {text:?}: use n/m (for example 1/7: the first of 7 slices) or a percentage (for example 5%)"
            ))
        };
        if text.trim_end().ends_with('%') {
            return Percent::parse_positive(text)
                .map(|p| Subset::Percent(p.value()))
                .map_err(|e| Error::InvalidInput(format!("--read-data-subset {e}")));
        }
        let (n, of) = text.split_once('/').ok_or_else(unreadable)?;
        let n: u32 = n.trim().parse().map_err(|_| unreadable())?;
        let of: u32 = of.trim().parse().map_err(|_| unreadable())?;
        if n == 0 || of == 0 || n > of || of > 10_000 {
            return Err(unreadable());
        }
        Ok(Subset::Slice { n, of })
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subset::Slice { n, of } => write!(f, "{n}/{of}"),
            Subset::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_slices_and_percentages() {
        assert_eq!(
            "2/7".parse::<Subset>().unwrap(),
            Subset::Slice { n: 2, of: 7 }
        );
        assert_eq!("5%".parse::<Subset>().unwrap(), Subset::Percent(5.0));
        // The percentage forms are those of every other percent flag.
        assert_eq!("2.5 %".parse::<Subset>().unwrap(), Subset::Percent(2.5));
        assert_eq!("100%".parse::<Subset>().unwrap(), Subset::Percent(100.0));
        for bad in [
            "0/7", "8/7", "7", "x/7", "0%", "101%", "-1%", "1/0", "", "5%%", "1e1%",
        ] {
            assert!(bad.parse::<Subset>().is_err(), "{bad} accepted");
        }
        let zero = "0%".parse::<Subset>().unwrap_err().to_string();
        assert!(
            zero.contains("--read-data-subset") && zero.contains("above 0%"),
            "{zero}"
        );
    }

    #[test]
    fn slices_partition_every_name() {
        let names: Vec<String> = (0..500u32)
            .map(|i| hex::encode(blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        let mut seen = vec![0; names.len()];
        for n in 1..=7 {
            let slice = Subset::Slice { n, of: 7 };
            let mut count = 0;
            for (i, name) in names.iter().enumerate() {
                if slice.selects(name) {
                    seen[i] += 1;
                    count += 1;
                }
            }
            // Roughly a seventh each (500/7 ≈ 71).
            assert!((40..110).contains(&count), "slice {n}: {count}");
        }
        assert!(seen.iter().all(|&s| s == 1));
    }
}
