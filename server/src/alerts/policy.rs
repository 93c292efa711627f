//! Escalation policies (D10, D23): per unit and grade, steps of targets with delays and
//! repeats. A unit's own policy (table `escalation_policies`) overrides the default here.

use serde::{Deserialize, Serialize};
use sqlx::Row;

/// One step of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Seconds after the alert's base time: when it was raised, or for a deadline when the
    /// thing is due (negative: a reminder before it).
    pub after_secs: i64,
    /// `leader_on_duty`, `officers_on_duty`, `unit_leaders`, `superior_on_duty`,
    /// `responsible` (who reported it) or `user:<id>`.
    pub targets: Vec<String>,
    /// Sent again this often until acknowledged or until the next step is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_every_secs: Option<i64>,
    /// Ends the alert as missed once this step has run (a roll-call's window).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expire: bool,
}

impl Step {
    pub fn new(after_secs: i64, targets: &[&str]) -> Self {
        Self {
            after_secs,
            targets: targets.iter().map(|target| (*target).to_owned()).collect(),
            repeat_every_secs: None,
            expire: false,
        }
    }

    pub fn repeat(mut self, every_secs: i64) -> Self {
        self.repeat_every_secs = Some(every_secs);
        self
    }

    pub fn expire(mut self) -> Self {
        self.expire = true;
        self
    }
}

const TARGETS: [&str; 5] = [
    "leader_on_duty",
    "officers_on_duty",
    "unit_leaders",
    "superior_on_duty",
    "responsible",
];

/// Checks a policy a leader submits.
pub fn validate(steps: &[Step]) -> Result<(), String> {
    if steps.len() > 10 {
        return Err("at most 10 steps".into());
    }
    let mut previous = i64::MIN;
    for (index, step) in steps.iter().enumerate() {
        let n = index + 1;
        if step.after_secs < previous {
            return Err(format!("step {n} comes before step {index}"));
        }
        previous = step.after_secs;
        if !(0..=7 * 24 * 3600).contains(&step.after_secs) {
            return Err(format!("step {n}: after_secs must be 0 to 7 days"));
        }
        if step.expire {
            return Err(format!("step {n}: only roll-calls expire"));
        }
        if step.targets.is_empty() {
            return Err(format!("step {n} has no targets"));
        }
        for target in &step.targets {
            if !TARGETS.contains(&target.as_str()) && !target.starts_with("user:") {
                return Err(format!("step {n}: unknown target `{target}`"));
            }
        }
        if step.repeat_every_secs.is_some_and(|every| every < 60) {
            return Err(format!("step {n}: repeats at most once a minute"));
        }
    }
    Ok(())
}

/// The built-in policy: red goes to the leader on duty at once and repeats every 3 minutes;
/// after 10 minutes unacknowledged, also to the unit's leaders and the superior office's duty
/// post. Yellow goes to the officers on duty (the work group). Blue joins the routine queue:
/// no push (D10).
pub fn default_steps(grade: &str) -> Vec<Step> {
    match grade {
        "red" => vec![
            Step::new(0, &["leader_on_duty"]).repeat(180),
            Step::new(600, &["leader_on_duty", "unit_leaders", "superior_on_duty"]).repeat(300),
        ],
        "yellow" => vec![Step::new(0, &["officers_on_duty"])],
        _ => Vec::new(),
    }
}

/// The unit's own policy for `grade`, or the default.
pub async fn steps_for(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
    grade: &str,
) -> Result<Vec<Step>, sqlx::Error> {
    let row =
        sqlx::query("SELECT steps FROM escalation_policies WHERE unit_id = $1 AND grade = $2")
            .bind(unit_id)
            .bind(grade)
            .fetch_optional(connection)
            .await?;
    if let Some(row) = row {
        let text: String = row.try_get("steps")?;
        match serde_json::from_str(&text) {
            Ok(steps) => return Ok(steps),
            Err(error) => {
                tracing::error!(%unit_id, %grade, %error, "stored policy unreadable; using the default")
            }
        }
    }
    Ok(default_steps(grade))
}

/// An instruction addressed to someone (D14): to them until acknowledged.
pub fn instruction_steps(to_user: &str, grade: Option<&str>) -> Vec<Step> {
    let every = if grade == Some("red") { 180 } else { 600 };
    vec![Step::new(0, &[&format!("user:{to_user}")]).repeat(every)]
}

/// A reporting deadline (D11, D12): a reminder to whoever reported it 10 minutes before, then
/// at the deadline to them and the leader on duty, again every 10 minutes until it is met.
pub fn deadline_steps() -> Vec<Step> {
    vec![
        Step::new(-600, &["responsible"]),
        Step::new(0, &["responsible", "leader_on_duty"]).repeat(600),
    ]
}

/// A missing holiday daily report (D15): the officers on duty, then the leader after an hour.
pub fn daily_report_steps() -> Vec<Step> {
    vec![
        Step::new(0, &["officers_on_duty"]).repeat(1800),
        Step::new(3600, &["officers_on_duty", "leader_on_duty"]).repeat(1800),
    ]
}

/// A holiday roster not yet submitted (D3): the unit's leaders a day ahead, then the superior
/// office's duty post on the due date.
pub fn holiday_roster_steps() -> Vec<Step> {
    vec![
        Step::new(-24 * 3600, &["unit_leaders"]),
        Step::new(0, &["unit_leaders", "superior_on_duty"]),
    ]
}

/// A roll-call (D16): the unit's duty post at once; when the window closes unanswered, the
/// caller learns it was missed.
pub fn rollcall_steps(caller: &str, window_secs: i64) -> Vec<Step> {
    vec![
        Step::new(0, &["officers_on_duty", "leader_on_duty"]),
        Step::new(window_secs, &[&format!("user:{caller}")]).expire(),
    ]
}

/// Urgency and time to live of the push (RFC 8030 §5.2–5.3): red is urgent and useless after
/// its next repeat; routine reminders may wait.
pub fn urgency_and_ttl(grade: Option<&str>, kind: &str) -> (web_push::Urgency, u32) {
    match (grade, kind) {
        (_, "rollcall") => (web_push::Urgency::High, 600),
        (Some("red"), _) => (web_push::Urgency::High, 180),
        (Some("yellow"), _) => (web_push::Urgency::Normal, 3600),
        _ => (web_push::Urgency::Normal, 4 * 3600),
    }
}
