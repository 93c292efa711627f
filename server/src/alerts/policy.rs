//! Escalation policies (D10, D23): per unit and grade, steps of targets with delays and
//! repeats. A unit's own policy (table `escalation_policies`) overrides the default here;
//! deadlines, instructions, holiday rosters, roll-calls and problems have fixed steps.

use sqlx::Row;
use zhiban_api::{AlertKind, Grade, Step, Target};

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
        if step.targets.len() > 20 {
            return Err(format!("step {n} has more than 20 targets"));
        }
        if step
            .repeat_every_secs
            .is_some_and(|every| !(60..=24 * 3600).contains(&every))
        {
            return Err(format!(
                "step {n}: repeats at most once a minute and at least once a day"
            ));
        }
    }
    Ok(())
}

/// The built-in policy: red goes to the leader on duty at once and repeats every 3 minutes;
/// after 10 minutes unacknowledged, also to the unit's leaders and the superior office's duty
/// post. Yellow goes to the officers on duty (the work group). Blue joins the routine queue:
/// no push (D10).
pub fn default_steps(grade: Grade) -> Vec<Step> {
    match grade {
        Grade::Red => vec![
            Step::new(0, [Target::LeaderOnDuty]).repeat(180),
            Step::new(
                600,
                [
                    Target::LeaderOnDuty,
                    Target::UnitLeaders,
                    Target::SuperiorOnDuty,
                ],
            )
            .repeat(300),
        ],
        Grade::Yellow => vec![Step::new(0, [Target::OfficersOnDuty])],
        Grade::Blue => Vec::new(),
    }
}

/// The unit's own policy for `grade`, or the default.
pub async fn steps_for(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
    grade: Grade,
) -> Result<Vec<Step>, sqlx::Error> {
    let row =
        sqlx::query("SELECT steps FROM escalation_policies WHERE unit_id = $1 AND grade = $2")
            .bind(unit_id)
            .bind(grade.as_str())
            .fetch_optional(connection)
            .await?;
    if let Some(row) = row {
        let text: String = row.try_get("steps")?;
        match serde_json::from_str(&text) {
            Ok(steps) => return Ok(steps),
            Err(error) => {
                tracing::error!(%unit_id, grade = grade.as_str(), %error, "stored policy unreadable; using the default")
            }
        }
    }
    Ok(default_steps(grade))
}

/// An instruction addressed to someone (D14): to them until acknowledged.
pub fn instruction_steps(to_user: &str, grade: Option<Grade>) -> Vec<Step> {
    let every = if grade == Some(Grade::Red) { 180 } else { 600 };
    vec![Step::new(0, [Target::User(to_user.into())]).repeat(every)]
}

/// A reporting deadline (D11, D12): a reminder to whoever reported it 10 minutes before, then
/// at the deadline to them and the leader on duty, again every 10 minutes until it is met.
pub fn deadline_steps() -> Vec<Step> {
    vec![
        Step::new(-600, [Target::Responsible]),
        Step::new(0, [Target::Responsible, Target::LeaderOnDuty]).repeat(600),
    ]
}

/// A missing holiday daily report (D15): the officers on duty, then the leader after an hour.
pub fn daily_report_steps() -> Vec<Step> {
    vec![
        Step::new(0, [Target::OfficersOnDuty]).repeat(1800),
        Step::new(3600, [Target::OfficersOnDuty, Target::LeaderOnDuty]).repeat(1800),
    ]
}

/// A holiday roster not yet submitted (D3): the unit's leaders a day ahead, then the superior
/// office's duty post on the due date.
pub fn holiday_roster_steps() -> Vec<Step> {
    vec![
        Step::new(-24 * 3600, [Target::UnitLeaders]),
        Step::new(0, [Target::UnitLeaders, Target::SuperiorOnDuty]),
    ]
}

/// A roll-call (D16): the unit's duty post at once; when the window closes unanswered, the
/// caller learns it was missed.
pub fn rollcall_steps(caller: &str, window_secs: i64) -> Vec<Step> {
    vec![
        Step::new(0, [Target::OfficersOnDuty, Target::LeaderOnDuty]),
        Step::new(window_secs, [Target::User(caller.into())]).expire(),
    ]
}

/// Something the server could not process: the unit's admins, once.
pub fn problem_steps() -> Vec<Step> {
    vec![Step::new(0, [Target::UnitAdmins])]
}

/// Urgency and time to live of the push (RFC 8030 §5.2–5.3): red is urgent and useless after
/// its next repeat; routine reminders may wait.
pub fn urgency_and_ttl(grade: Option<Grade>, kind: AlertKind) -> (web_push::Urgency, u32) {
    match (grade, kind) {
        (_, AlertKind::Rollcall) => (web_push::Urgency::High, 600),
        (Some(Grade::Red), _) => (web_push::Urgency::High, 180),
        (Some(Grade::Yellow), _) => (web_push::Urgency::Normal, 3600),
        _ => (web_push::Urgency::Normal, 4 * 3600),
    }
}
