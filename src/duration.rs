//! Durations written as text: one parser for the two spellings certorder reads.
//!
//! - Go's (`time.ParseDuration`, what the CRDs' `renewBefore` and `certificateLifetime` hold and
//!   the API server's CEL `duration()` checks): `720h`, `1h30m`, `1.5h`, `90s`, `500ms`; units
//!   `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, fractions allowed, no days.
//! - The command line's (`certorder run --review-poll 1d`): whole numbers with `ms`, `s`, `m`,
//!   `h` or `d`, and never zero.
//!
//! Both are a sequence of number-and-unit parts added up; they differ only in the units and in
//! whether a number may have a fraction ([`Syntax`]). The arithmetic is exact (nanoseconds).

use std::time::Duration;

/// What a spelling accepts.
#[derive(Clone, Copy, Debug)]
pub struct Syntax {
    /// Unit names and their length in nanoseconds.
    pub units: &'static [(&'static str, u64)],
    /// Whether a number may have a fraction (`1.5h`).
    pub fractions: bool,
}

const NS_PER_SEC: u64 = 1_000_000_000;

/// Go's `time.ParseDuration`, without signs (certorder has no use for negative durations).
pub const GO: Syntax = Syntax {
    units: &[
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", NS_PER_SEC),
        ("m", 60 * NS_PER_SEC),
        ("h", 3600 * NS_PER_SEC),
    ],
    fractions: true,
};

/// The command line's flags: whole numbers, milliseconds to days.
pub const FLAG: Syntax = Syntax {
    units: &[
        ("ms", 1_000_000),
        ("s", NS_PER_SEC),
        ("m", 60 * NS_PER_SEC),
        ("h", 3600 * NS_PER_SEC),
        ("d", 86_400 * NS_PER_SEC),
    ],
    fractions: false,
};

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    /// A part does not start with a number (`m5`, `.h`).
    #[error("not a duration")]
    NoNumber,
    /// A number without a unit (`30`).
    #[error("no unit")]
    NoUnit,
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
    #[error("too long a duration")]
    TooLong,
}

/// Parses `text` (surrounding whitespace ignored) in `syntax`.
pub fn parse(text: &str, syntax: &Syntax) -> Result<Duration, DurationError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    let is_number = |c: char| c.is_ascii_digit() || (syntax.fractions && c == '.');
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !is_number(c)).unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest.find(is_number).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if number.is_empty() {
            return Err(DurationError::NoNumber);
        }
        let size = match syntax.units.iter().find(|(name, _)| *name == unit) {
            Some((_, size)) => *size,
            None if unit.is_empty() => return Err(DurationError::NoUnit),
            None => return Err(DurationError::UnknownUnit(unit.to_string())),
        };
        total = total.checked_add(part(number, size)?).ok_or(DurationError::TooLong)?;
    }
    let secs = u64::try_from(total / u128::from(NS_PER_SEC)).map_err(|_| DurationError::TooLong)?;
    Ok(Duration::new(secs, (total % u128::from(NS_PER_SEC)) as u32))
}

/// `number` (digits, perhaps with one `.`) times `size` nanoseconds; a fraction finer than a
/// nanosecond is dropped, as Go does.
fn part(number: &str, size: u64) -> Result<u128, DurationError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(DurationError::NoNumber);
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| DurationError::TooLong)? };
    let mut value = whole.checked_mul(u128::from(size)).ok_or(DurationError::TooLong)?;
    // Enough digits for a nanosecond of the longest unit; the rest cannot change the result.
    let fraction = &fraction[..fraction.len().min(24)];
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| DurationError::NoNumber)?;
        value += digits * u128::from(size) / 10u128.pow(fraction.len() as u32);
    }
    Ok(value)
}

/// Parses a Go duration (`720h`, `1h30m`, `90s`, `1.5h`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    parse(text, &GO).ok()
}

/// Parses a command-line flag's duration (`30s`, `5m`, `1h30m`, `500ms`, `1d`); the error says
/// how to write one.
pub fn parse_flag_duration(text: &str) -> Result<Duration, String> {
    let hint = "write a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 2h or 1h30m";
    let text = text.trim();
    match parse(text, &FLAG) {
        Ok(d) if d.is_zero() => Err(format!("{text:?} is zero; the operator would not wait at all; {hint}")),
        Ok(d) => Ok(d),
        Err(DurationError::Empty) => Err(format!("empty duration; {hint}")),
        Err(DurationError::NoNumber) => Err(format!("{text:?} is not a duration; {hint}")),
        Err(DurationError::NoUnit) => Err(format!("{text:?} has no unit; {hint}")),
        Err(DurationError::UnknownUnit(unit)) => Err(format!("{text:?} has an unknown unit {unit:?}; {hint}")),
        Err(DurationError::TooLong) => Err(format!("{text:?} is too long a duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn both_spellings_read_their_own_texts() {
        // (text, as Go reads it, as a flag reads it), in nanoseconds.
        let s = NS_PER_SEC;
        let cases: &[(&str, Option<u64>, Option<u64>)] = &[
            ("720h", Some(720 * 3600 * s), Some(720 * 3600 * s)),
            ("1h30m", Some(5400 * s), Some(5400 * s)),
            ("90s", Some(90 * s), Some(90 * s)),
            ("1500ms", Some(1500 * MS), Some(1500 * MS)),
            (" 10s ", Some(10 * s), Some(10 * s)),
            ("1m5s", Some(65 * s), Some(65 * s)),
            ("1.5h", Some(5400 * s), None),
            ("1.5s", Some(1500 * MS), None),
            (".5s", Some(500 * MS), None),
            ("5.s", Some(5 * s), None),
            ("0.1s", Some(100 * MS), None),
            ("250us", Some(250_000), None),
            ("250µs", Some(250_000), None),
            ("7ns", Some(7), None),
            ("1d", None, Some(86_400 * s)),
            ("1d2h", None, Some(93_600 * s)),
            ("10d", None, Some(864_000 * s)),
            ("0s", Some(0), None),
            ("30", None, None),
            ("", None, None),
            ("m5", None, None),
            ("h", None, None),
            ("5x", None, None),
            (".", None, None),
            ("1.2.3s", None, None),
            ("-5s", None, None),
            ("99999999999999999999h", None, None),
            ("99999999999999999999999999999999999999999h", None, None),
        ];
        for (text, go, flag) in cases {
            let nanos = |d: Duration| d.as_nanos() as u64;
            assert_eq!(parse_go_duration(text).map(nanos), *go, "Go {text:?}");
            assert_eq!(parse_flag_duration(text).ok().map(nanos), *flag, "flag {text:?}");
        }
    }

    #[test]
    fn a_bad_flag_duration_says_how_to_write_one() {
        for (text, want) in [
            ("30", "\"30\" has no unit; write a number and a unit"),
            ("5x", "\"5x\" has an unknown unit \"x\""),
            ("1.5h", "has an unknown unit \".\""),
            ("m5", "\"m5\" is not a duration"),
            ("  ", "empty duration"),
            ("0m", "\"0m\" is zero; the operator would not wait at all"),
            ("99999999999999999999h", "is too long a duration"),
        ] {
            let err = parse_flag_duration(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
