//! Times in records: milliseconds since the Unix epoch, as devices write them. A time outside
//! 2000–2100 is a typo or an attack (`known_at: 1e19` once overflowed the deadline
//! arithmetic), so it is refused where it is read: the field counts as absent and the record
//! is flagged. Every computation on a time from a document saturates.

use serde::{Deserialize, Deserializer};

/// 2000-01-01T00:00:00Z.
pub const EARLIEST_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z (exclusive).
pub const LATEST_MS: i64 = 4_102_444_800_000;

/// Whether `ms` is a time a record may carry.
pub fn plausible(ms: i64) -> bool {
    (EARLIEST_MS..LATEST_MS).contains(&ms)
}

/// A JSON number as a time: integers, and floats with no fraction (JavaScript numbers).
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

fn checked(number: Number) -> Result<i64, String> {
    let ms = match number {
        Number::Int(ms) => Some(ms),
        Number::Float(ms) if ms.fract() == 0.0 && ms.abs() < 9.0e15 => {
            #[allow(clippy::cast_possible_truncation)] // whole and far below i64::MAX: exact
            Some(ms as i64)
        }
        Number::Float(_) => None,
    };
    match ms {
        Some(ms) if plausible(ms) => Ok(ms),
        _ => Err("not a time between the years 2000 and 2100 (milliseconds)".into()),
    }
}

/// `#[serde(default, deserialize_with = "time::optional")]`: null or absent is None; anything
/// but a plausible time is an error, which the lenient reader turns into a flagged, absent
/// field.
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Option::<Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => checked(number).map(Some).map_err(serde::de::Error::custom),
    }
}

/// The same for a list of times.
pub fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    Vec::<Number>::deserialize(deserializer)?
        .into_iter()
        .map(|number| checked(number).map_err(serde::de::Error::custom))
        .collect()
}

/// `at + by`, saturating: for deadlines computed from a record's times.
pub fn after(at: i64, by_ms: i64) -> i64 {
    at.saturating_add(by_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct At {
        #[serde(default, deserialize_with = "optional")]
        at: Option<i64>,
    }

    fn at(json: &str) -> Result<Option<i64>, String> {
        serde_json::from_str::<At>(json)
            .map(|at| at.at)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn only_plausible_times_are_read() {
        assert_eq!(at(r#"{"at": 1700000000000}"#), Ok(Some(1_700_000_000_000)));
        assert_eq!(at(r#"{"at": 1.7e12}"#), Ok(Some(1_700_000_000_000)));
        assert_eq!(at(r#"{"at": null}"#), Ok(None));
        assert_eq!(at("{}"), Ok(None));
        for bad in [
            "1e19",
            "-1",
            "2000",
            "1.5",
            "9223372036854775807",
            "\"today\"",
        ] {
            assert!(at(&format!(r#"{{"at": {bad}}}"#)).is_err(), "{bad}");
        }
        assert_eq!(after(i64::MAX - 1, 10), i64::MAX);
    }
}
