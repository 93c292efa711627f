//! A unit's daily report during holidays, or its zero report when nothing happened (D15).

use serde::{Deserialize, Serialize};

use crate::{Checked, time};

/// A daily report during holidays, or a zero report when nothing happened (D15).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyReport {
    #[serde(default = "crate::schema_one")]
    pub schema: i64,
    /// The day reported, `YYYY-MM-DD`.
    pub date: String,
    /// A zero report: nothing to report (零报告).
    #[serde(default)]
    pub zero: bool,
    #[serde(default)]
    pub text: String,
    /// The last holiday day's report covers the whole holiday.
    #[serde(default)]
    pub holiday_summary: bool,
    #[serde(default, deserialize_with = "time::optional")]
    pub submitted_at: Option<i64>,
}

pub(crate) fn check(report: &DailyReport, checked: &mut Checked) {
    if date(&report.date).is_none() {
        checked
            .errors
            .push(format!("`{}` is not a date (YYYY-MM-DD)", report.date));
    }
    if !report.zero && report.text.trim().is_empty() {
        checked
            .warnings
            .push("an empty daily report: mark it a zero report if nothing happened".into());
    }
}

/// `YYYY-MM-DD` with a plausible month and day.
fn date(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('-');
    let year: u32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    (parts.next().is_none()
        && text.len() == 10
        && (2000..2100).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day))
    .then_some((year, month, day))
}
