//! The commands, one module each: its arguments (a `clap::Args` struct) and its effect
//! (`apply`, returning the process's exit code).

mod ack;
mod alerts;
mod close_pending;
mod decide;
mod edit;
mod follow_up;
mod handover;
mod instruct;
mod list;
mod log_call;
mod login;
mod logout;
mod on_duty;
mod report;
mod rollcall;
mod roster;
mod run;
mod search;
mod show;
mod sign;
mod status;
mod swap;

use clap::Subcommand;
use serde_json::Value;
use zhiban_client_core::{Device, DocumentId, Error};
use zhiban_records::{Person, Shift};

use crate::Context;

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Log this device in to a Zhiban server.
    Login(login::Login),
    /// End this user's session on a shared tablet (unsent changes wait for their next login).
    Logout(logout::Logout),
    /// Make a report; it is saved on this device at once, then sent if the server is reachable.
    Report(report::Report),
    /// Show one document.
    Show(show::Show),
    /// List the documents on this device.
    List(list::List),
    /// The session, and which documents the server has received.
    Status(status::Status),
    /// Change a document's fields or add notes to it.
    Edit(edit::Edit),
    /// Keep syncing with the server and print what happens, until stopped.
    Run(run::Run),
    /// Log a call or message in today's duty log.
    LogCall(log_call::LogCall),
    /// Add a follow-up report, or the final report, to an incident.
    FollowUp(follow_up::FollowUp),
    /// Record a leader's instruction on an incident.
    Instruct(instruct::Instruct),
    /// Open a handover for the end of this shift, with its pending items.
    Handover(handover::Handover),
    /// Sign a handover as the outgoing or the incoming officer.
    Sign(sign::Sign),
    /// Close a pending item of a handover.
    ClosePending(close_pending::ClosePending),
    /// Ask for a swap or leave on a roster's shift, naming the substitute.
    Swap(swap::Swap),
    /// Approve or reject a swap or leave request (leaders).
    Decide(decide::Decide),
    /// Show a roster: its shifts and its swap and leave requests.
    Roster(roster::Roster),
    /// Who is on duty now (or at --at), from the server.
    OnDuty(on_duty::OnDuty),
    /// Search the duty record on the server.
    Search(search::Search),
    /// The alerts that reached you, from the server: the open ones, or --all.
    Alerts(alerts::Alerts),
    /// Acknowledge an alert: its repeats and escalation stop.
    Ack(ack::Ack),
    /// Call, answer or list roll-calls (a superior office checking a duty post).
    Rollcall(rollcall::Rollcall),
}

impl Command {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        match self {
            Command::Login(command) => command.apply(context).await,
            Command::Logout(command) => command.apply(context).await,
            Command::Report(command) => command.apply(context).await,
            Command::Show(command) => command.apply(context).await,
            Command::List(command) => command.apply(context).await,
            Command::Status(command) => command.apply(context).await,
            Command::Edit(command) => command.apply(context).await,
            Command::Run(command) => command.apply(context).await,
            Command::LogCall(command) => command.apply(context).await,
            Command::FollowUp(command) => command.apply(context).await,
            Command::Instruct(command) => command.apply(context).await,
            Command::Handover(command) => command.apply(context).await,
            Command::Sign(command) => command.apply(context).await,
            Command::ClosePending(command) => command.apply(context).await,
            Command::Swap(command) => command.apply(context).await,
            Command::Decide(command) => command.apply(context).await,
            Command::Roster(command) => command.apply(context).await,
            Command::OnDuty(command) => command.apply(context).await,
            Command::Search(command) => command.apply(context).await,
            Command::Alerts(command) => command.apply(context).await,
            Command::Ack(command) => command.apply(context).await,
            Command::Rollcall(command) => command.apply(context).await,
        }
    }
}

/// Parses a duration in seconds (`3`, `0.5`); used by `report --wait` and `run --for`.
pub(crate) fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{text}` is not a usable number of seconds"))
}

/// Parses a position as people count (`1` is the first); used by `--item`, `--shift` and
/// `--request`. The library counts from 0: subtract one before calling it.
pub(crate) fn parse_position(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("positions start at 1".into()),
        Ok(number) => Ok(number),
        Err(_) => Err(format!("`{text}` is not a position (1, 2, 3…)")),
    }
}

/// A library error as the command line tells it: with the fix where there is one.
pub(crate) fn explain(error: Error) -> anyhow::Error {
    match error {
        Error::NotLoggedIn => anyhow::anyhow!("not logged in; run `zhiban login` first"),
        Error::NoSuchDocument(id) => anyhow::anyhow!(
            "no such document on this device: {id}; if it is new, `zhiban run` fetches it \
             from the server"
        ),
        error => error.into(),
    }
}

/// [`explain`] for the questions only the server can answer (`search`, `on-duty`, alerts
/// and roll-calls).
pub(crate) fn explain_online(error: Error, question: &str) -> anyhow::Error {
    match error {
        Error::Network(reason) => anyhow::anyhow!(
            "cannot reach the server, and {question} needs it (nothing on this device \
             changed): {reason}"
        ),
        error => explain(error),
    }
}

/// The document `id` on this device, which must be a record of type `kind`.
pub(crate) async fn record_of_kind(
    device: &Device,
    id: &DocumentId,
    kind: &str,
) -> anyhow::Result<Value> {
    let document = device.get(id).await.map_err(explain)?;
    match document.get("type").and_then(Value::as_str) {
        Some(found) if found == kind => Ok(document),
        Some(found) => anyhow::bail!("{id} is {}, not {}", a(found), a(kind)),
        None if document.as_object().is_some_and(|fields| fields.is_empty()) => anyhow::bail!(
            "{id} is known to this device but not fetched yet; `zhiban run` fetches it"
        ),
        None => anyhow::bail!("{id} is not {}", a(kind)),
    }
}

/// A record type as words with its article: `duty_log` → `a duty log`.
fn a(kind: &str) -> String {
    let words = kind.replace('_', " ");
    let article = if words.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {words}")
}

/// Milliseconds since the epoch as local time, e.g. `2026-11-22 20:00`.
pub(crate) fn local_time(millis: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(millis) {
        Some(time) => time
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        None => millis.to_string(),
    }
}

/// A person of a roster document (`{"user_id", "name", "phone"}`) as people read it. Read
/// as the server reads it, so one mistyped field does not hide the others.
pub(crate) fn person(value: &Value) -> String {
    let person = zhiban_records::read::lenient::<Person>(value.clone(), "", &mut Vec::new());
    name_of(person.as_ref())
}

/// A person as people read it: `NAME (PHONE)`, their user id if they have no name.
fn name_of(person: Option<&Person>) -> String {
    let Some(person) = person else {
        return "nobody".into();
    };
    let name = Some(person.name.as_str())
        .filter(|name| !name.is_empty())
        .or(person.user_id.as_deref())
        .unwrap_or("nobody");
    match person.phone.as_deref() {
        Some(phone) if !phone.is_empty() => format!("{name} ({phone})"),
        _ => name.to_owned(),
    }
}

/// A list of people, `A (P), B (Q)`, or `none`.
fn names_of(people: &[Person]) -> String {
    if people.is_empty() {
        return "none".into();
    }
    people
        .iter()
        .map(|person| name_of(Some(person)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A shift as text: its times and kind, then the leader, the officers and any backups. Takes
/// a roster's shift, which both a roster document and the server's on-duty answer fit.
pub(crate) fn describe_shift(human: &mut String, heading: &str, shift: &Shift, indent: &str) {
    use std::fmt::Write as _;
    let time = |at: Option<i64>| at.map_or_else(|| "?".into(), local_time);
    let _ = write!(
        human,
        "{heading} {} – {}",
        time(shift.start),
        time(shift.end)
    );
    if let Some(kind) = &shift.kind {
        let _ = write!(human, " ({kind})");
    }
    let _ = write!(
        human,
        "\n{indent}leader: {}",
        name_of(shift.leader.as_ref())
    );
    let _ = write!(human, "\n{indent}officers: {}", names_of(&shift.officers));
    if let Some(backup) = &shift.backup_leader {
        let _ = write!(human, "\n{indent}backup leader: {}", name_of(Some(backup)));
    }
    if !shift.backup_officers.is_empty() {
        let _ = write!(
            human,
            "\n{indent}backup officers: {}",
            names_of(&shift.backup_officers)
        );
    }
}

/// A required text that must say something (a report, an instruction, a reason).
pub(crate) fn non_empty(text: &str, what: &str) -> anyhow::Result<()> {
    if text.trim().is_empty() {
        return Err(Error::Invalid(format!("{what} cannot be empty")).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn positions_count_from_one() {
        assert_eq!(parse_position("1"), Ok(1));
        assert!(parse_position("0").is_err());
        assert!(parse_position("-1").is_err());
        assert!(parse_position("two").is_err());
    }

    #[test]
    fn people_read_as_name_and_phone() {
        assert_eq!(
            person(&json!({"name": "李局长", "phone": "13800000001"})),
            "李局长 (13800000001)"
        );
        assert_eq!(person(&json!({"user_id": "u1", "name": ""})), "u1");
        assert_eq!(person(&json!({"user_id": "u1", "name": 7})), "u1");
        assert_eq!(person(&Value::Null), "nobody");
        let people = [
            Person {
                user_id: None,
                name: "安娜".into(),
                phone: None,
            },
            Person {
                user_id: None,
                name: "赵".into(),
                phone: Some("110".into()),
            },
        ];
        assert_eq!(names_of(&people), "安娜, 赵 (110)");
        assert_eq!(names_of(&[]), "none");
    }
}
