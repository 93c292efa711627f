//! An incident (D6, D9–D14): one matter, one document, from the first report to the final
//! one, with the leaders' instructions and what is known of its attachments.

use serde::{Deserialize, Serialize};

use crate::{Checked, time};

/// The four categories of D9.
pub const CATEGORIES: [&str; 4] = [
    "natural_disaster",
    "accident",
    "public_health",
    "social_security",
];

/// How soon reports are due (D11, D12): set per deployment, overridden per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// D11: the first report is due this long after the event became known.
    pub first_report_ms: i64,
    /// D12: follow-up reports are due this often until the final report.
    pub follow_up_ms: i64,
}

impl Default for Intervals {
    /// The statutory defaults: one hour, then every two hours.
    fn default() -> Self {
        Intervals {
            first_report_ms: 60 * 60 * 1000,
            follow_up_ms: 2 * 60 * 60 * 1000,
        }
    }
}

impl Intervals {
    /// The deployment's intervals, replaced by those a unit sets (minutes).
    pub fn with(self, first_report_minutes: Option<i64>, follow_up_minutes: Option<i64>) -> Self {
        Intervals {
            first_report_ms: first_report_minutes.map_or(self.first_report_ms, |minutes| {
                minutes.saturating_mul(60_000)
            }),
            follow_up_ms: follow_up_minutes
                .map_or(self.follow_up_ms, |minutes| minutes.saturating_mul(60_000)),
        }
    }
}

/// Urgency (D10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    /// Urgent: straight to the responsible leader's phone.
    Red,
    /// Important: to the work group.
    Yellow,
    /// Routine queue.
    Blue,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Red => "red",
            Grade::Yellow => "yellow",
            Grade::Blue => "blue",
        }
    }
}

/// Severity (D9), I most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Level {
    I,
    II,
    III,
    IV,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::I => "I",
            Level::II => "II",
            Level::III => "III",
            Level::IV => "IV",
        }
    }
}

/// One report in an incident's chain (D11–D12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub kind: ReportKind,
    #[serde(default, deserialize_with = "time::optional")]
    pub at: Option<i64>,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    First,
    FollowUp,
    Final,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::First => "first",
            ReportKind::FollowUp => "follow_up",
            ReportKind::Final => "final",
        }
    }
}

/// A leader's instruction (批示) and the steps taken to complete it (D14). Every field has a
/// default so that a malformed instruction keeps its place in the list: who wrote it is
/// looked up by position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Instruction {
    pub by: Option<String>,
    /// The user the instruction is addressed to, who is alerted (D14, D23).
    pub to: Option<String>,
    #[serde(deserialize_with = "time::optional")]
    pub at: Option<i64>,
    pub text: String,
    pub steps: Vec<Step>,
    pub done: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Step {
    #[serde(deserialize_with = "time::optional")]
    pub at: Option<i64>,
    pub by: Option<String>,
    pub text: String,
}

/// What is known of an attachment; the bytes travel separately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub sha256: String,
    pub size: u64,
    pub mime: String,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
}

/// An incident: one matter, one document, from the first report to the final one (D6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Incident {
    #[serde(default = "crate::schema_one")]
    pub schema: i64,
    pub title: String,
    pub category: Option<String>,
    pub level: Option<Level>,
    pub grade: Option<Grade>,
    pub status: Option<String>,
    /// When the event became known: the clock of D11 starts here.
    #[serde(deserialize_with = "time::optional")]
    pub known_at: Option<i64>,
    pub location: Option<String>,
    pub casualties: Option<String>,
    pub measures: Option<String>,
    pub reported_by: Option<String>,
    #[serde(deserialize_with = "time::optional")]
    pub reported_at: Option<i64>,
    pub reports: Vec<Report>,
    pub instructions: Vec<Instruction>,
    pub attachments: Vec<Attachment>,
}

impl Incident {
    /// The first report: the earliest `first` in the chain, else the report that created it.
    pub fn first_report_at(&self) -> Option<i64> {
        self.report_times(ReportKind::First)
            .min()
            .or(self.reported_at)
    }

    pub fn follow_up_times(&self) -> Vec<i64> {
        let mut times: Vec<i64> = self.report_times(ReportKind::FollowUp).collect();
        times.sort_unstable();
        times
    }

    pub fn final_report_at(&self) -> Option<i64> {
        self.report_times(ReportKind::Final).min()
    }

    fn report_times(&self, kind: ReportKind) -> impl Iterator<Item = i64> + '_ {
        self.reports
            .iter()
            .filter(move |report| report.kind == kind)
            .filter_map(|report| report.at)
    }
}

/// An incident's reporting against its deadlines (D11–D13), as of `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timeliness {
    pub known_at: Option<i64>,
    pub first_report_due_at: Option<i64>,
    pub first_report_at: Option<i64>,
    /// Minutes past the deadline (0 when on time); for a missing first report, so far.
    pub first_report_minutes_late: Option<i64>,
    pub follow_ups_made: usize,
    /// Follow-ups that should exist by now (or by the final report).
    pub follow_ups_due: usize,
    pub next_follow_up_due_at: Option<i64>,
    pub closed_at: Option<i64>,
}

impl Timeliness {
    pub fn of(
        known_at: Option<i64>,
        first_report_at: Option<i64>,
        follow_ups: &[i64],
        closed_at: Option<i64>,
        now: i64,
        intervals: Intervals,
    ) -> Timeliness {
        let first_report_due_at =
            known_at.map(|known| time::after(known, intervals.first_report_ms));
        let first_report_minutes_late = first_report_due_at.map(|due| {
            let reported = first_report_at.unwrap_or(now);
            reported.saturating_sub(due).max(0) / 60_000
        });
        let (follow_ups_due, next_follow_up_due_at) = match first_report_at {
            Some(first) => {
                let until = closed_at.unwrap_or(now);
                let every = intervals.follow_up_ms.max(60_000);
                let due = until.saturating_sub(first).max(0) / every;
                let next = closed_at
                    .is_none()
                    .then(|| time::after(first, due.saturating_add(1).saturating_mul(every)));
                (usize::try_from(due).unwrap_or(usize::MAX), next)
            }
            None => (0, None),
        };
        Timeliness {
            known_at,
            first_report_due_at,
            first_report_at,
            first_report_minutes_late,
            follow_ups_made: follow_ups.len(),
            follow_ups_due,
            next_follow_up_due_at,
            closed_at,
        }
    }
}

/// The core elements of a first report (D11) that `incident` lacks.
pub fn missing_core_elements(incident: &Incident) -> Vec<&'static str> {
    let filled = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
    let mut missing = Vec::new();
    if incident.known_at.is_none() {
        missing.push("time");
    }
    if !filled(&incident.location) {
        missing.push("place");
    }
    if !filled(&incident.category) {
        missing.push("nature");
    }
    if !filled(&incident.casualties) {
        missing.push("casualties and losses");
    }
    if !filled(&incident.measures) {
        missing.push("measures taken");
    }
    if !filled(&incident.reported_by) {
        missing.push("reporter");
    }
    missing
}

pub(crate) fn check(incident: &Incident, checked: &mut Checked) {
    if incident.title.trim().is_empty() {
        checked.warnings.push("the incident has no title".into());
    }
    if incident.grade.is_none() {
        checked
            .warnings
            .push("no grade: it will be handled as routine (blue)".into());
    }
    if let Some(category) = &incident.category
        && !CATEGORIES.contains(&category.as_str())
    {
        checked.warnings.push(format!(
            "category `{category}` is none of natural_disaster, accident, public_health, social_security"
        ));
    }
    for element in missing_core_elements(incident) {
        checked
            .warnings
            .push(format!("missing core element: {element}"));
    }
    let finals = incident
        .reports
        .iter()
        .filter(|report| report.kind == ReportKind::Final)
        .count();
    if finals > 1 {
        checked.errors.push("more than one final report".into());
    }
    for (index, report) in incident.reports.iter().enumerate() {
        if report.at.is_none() {
            checked
                .errors
                .push(format!("report {} has no time", index + 1));
        }
    }
    for (index, instruction) in incident.instructions.iter().enumerate() {
        if instruction.at.is_none() || instruction.text.trim().is_empty() {
            checked
                .errors
                .push(format!("instruction {} needs a time and a text", index + 1));
        }
    }
    for attachment in &incident.attachments {
        if attachment.sha256.len() != 64
            || !attachment.sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            checked.errors.push(format!(
                "attachment hash `{}` is not SHA-256 hex",
                attachment.sha256
            ));
        }
        if let (Some(lat), Some(lon)) = (attachment.lat, attachment.lon)
            && (!(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon))
        {
            checked
                .errors
                .push("attachment position is off the globe".into());
        }
    }
}
