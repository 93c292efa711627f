//! Key figures per unit (D17): `GET /api/kpis?unit=&from=&to=` reads the roll-calls and
//! alerts the alert engine keeps and the incidents and shifts the projection keeps, and
//! answers, for one unit the caller may see and a window of time, the roll-call answer rate,
//! reporting timeliness, follow-up cadence, time to acknowledge and on-duty coverage — as JSON,
//! or as CSV for a spreadsheet (`?format=csv` or `Accept: text/csv`).
//!
//! Classified incidents, alerts and shifts count only for cleared callers, exactly as they are
//! listed (D18): a figure must not reveal that something hidden exists.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use zhiban_records::{Intervals, Timeliness};

use crate::AppState;
use crate::access::{Identity, Visibility};
use crate::db::{Pool, Sql};
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/kpis", get(kpis))
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Without `from`, the figures cover the 30 days up to `to`.
const DEFAULT_SPAN_MS: i64 = 30 * DAY_MS;
/// A year and a bit: enough for an annual self-assessment (D17), and a bound on the rows read.
const MAX_SPAN_MS: i64 = 400 * DAY_MS;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Params {
    /// The caller's own unit if absent.
    unit: Option<String>,
    /// Start of the window (inclusive), milliseconds since the epoch.
    from: Option<i64>,
    /// End of the window (exclusive), milliseconds since the epoch; now if absent.
    to: Option<i64>,
    /// `json` or `csv`; otherwise the `Accept` header decides, JSON by default.
    format: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Kpis {
    unit_id: String,
    from: i64,
    to: i64,
    /// The instant the figures were computed: open items are judged against it.
    as_of: i64,
    rollcalls: RollCalls,
    reporting: Reporting,
    follow_ups: FollowUps,
    acknowledgement: Acknowledgement,
    coverage: Coverage,
}

/// Roll-calls of the unit called in the window (D16). Still-open roll-calls whose answer
/// window has not ended are not counted yet; open ones past their window count as missed.
#[derive(Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct RollCalls {
    total: i64,
    answered_in_time: i64,
    /// Answered, but after the window.
    answered_late: i64,
    missed: i64,
    /// `answered_in_time / total`; null when there were none.
    answer_rate: Option<f64>,
}

/// First reports of the unit's incidents that became known in the window (D11, D13), by the
/// times the server counts (`records::times`). An incident with no first report counts as
/// late once its deadline has passed, and not at all before.
#[derive(Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct Reporting {
    incidents: i64,
    first_report_on_time: i64,
    timeliness_rate: Option<f64>,
    /// Every incident that became known in the window, counted or not yet.
    known: i64,
    /// Of those, the ones with a time the device wrote that could not be true: backdated, or
    /// after the server received it.
    backdated: i64,
}

/// Of those incidents, the ones that have needed follow-up reports (D12): the cadence is kept
/// when at least as many follow-ups were made as were due (by now, or by the final report).
#[derive(Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct FollowUps {
    incidents: i64,
    cadence_kept: i64,
    rate: Option<f64>,
}

/// Incident and instruction alerts raised for the unit in the window (D10, D14, D23): how long
/// until someone acknowledged them, in whole seconds (nearest-rank percentiles).
#[derive(Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct Acknowledgement {
    alerts: i64,
    acknowledged: i64,
    median_secs: Option<i64>,
    p90_secs: Option<i64>,
}

/// Shifts of the unit overlapping the window (D2): covered when the roster names a leader on
/// duty and at least one officer.
#[derive(Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct Coverage {
    shifts: i64,
    covered: i64,
    rate: Option<f64>,
}

/// Who may see what, and the unit and window asked about.
struct Scope<'a> {
    pool: &'a Pool,
    unit_id: &'a str,
    visibility: &'a Visibility,
    from: i64,
    to: i64,
    now: i64,
    /// The unit's reporting intervals (D11, D12), which the deadlines counted here follow.
    intervals: Intervals,
}

/// Key figures of one unit over a window (D17), as JSON or CSV.
#[utoipa::path(get, path = "/api/kpis", tag = "kpis", params(Params),
    responses((status = 200, body = Kpis, description = "JSON, or CSV with ?format=csv or Accept: text/csv"),
        (status = 400, body = zhiban_api::ErrorBody), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
pub(crate) async fn kpis(
    State(state): State<AppState>,
    identity: Identity,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let csv = wants_csv(params.format.as_deref(), &headers)?;
    let now = state.clock.now_ms();
    let (from, to) = window(params.from, params.to, now)?;
    let unit_id = params.unit.unwrap_or_else(|| identity.unit_id.clone());
    let visibility = Visibility::of(&state.pool, &identity).await?;
    if !visibility.sees_unit(&unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let scope = Scope {
        pool: &state.pool,
        unit_id: &unit_id,
        visibility: &visibility,
        from,
        to,
        now,
        intervals: crate::units::intervals(&state.pool, &unit_id, state.settings.intervals())
            .await?,
    };
    let (rollcalls, (reporting, follow_ups), acknowledgement, coverage) = tokio::try_join!(
        rollcalls(&scope),
        incidents(&scope),
        acknowledgement(&scope),
        coverage(&scope),
    )?;
    let kpis = Kpis {
        unit_id: unit_id.clone(),
        from,
        to,
        as_of: now,
        rollcalls,
        reporting,
        follow_ups,
        acknowledgement,
        coverage,
    };
    let vary = [(header::VARY, HeaderValue::from_static("accept"))];
    if csv {
        let content_type = HeaderValue::from_static("text/csv; charset=utf-8");
        Ok((vary, [(header::CONTENT_TYPE, content_type)], to_csv(&kpis)).into_response())
    } else {
        Ok((vary, Json(kpis)).into_response())
    }
}

/// CSV when asked by `format`, or by `Accept` when `format` is absent.
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, AppError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => Err(AppError::BadRequest("format is json or csv".into())),
        None => Ok(headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|range| {
                range
                    .split(';')
                    .next()
                    .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/csv"))
            })),
    }
}

/// `[from, to)` with the defaults applied, refused when empty, reversed or too long.
fn window(from: Option<i64>, to: Option<i64>, now: i64) -> Result<(i64, i64), AppError> {
    let to = to.unwrap_or(now);
    let from = from.unwrap_or_else(|| to.saturating_sub(DEFAULT_SPAN_MS));
    if from >= to {
        return Err(AppError::BadRequest("from must be before to".into()));
    }
    if to.saturating_sub(from) > MAX_SPAN_MS {
        return Err(AppError::BadRequest(
            "the range may cover at most 400 days".into(),
        ));
    }
    Ok((from, to))
}

async fn rollcalls(scope: &Scope<'_>) -> Result<RollCalls, sqlx::Error> {
    // Roll-calls carry no classification: a unit's duty post is called in the open.
    let rows = sqlx::query(
        "SELECT called_at, window_ms, status, answered_at FROM rollcalls \
         WHERE unit_id = $1 AND called_at >= $2 AND called_at < $3",
    )
    .bind(scope.unit_id)
    .bind(scope.from)
    .bind(scope.to)
    .fetch_all(scope.pool)
    .await?;
    let mut counts = RollCalls::default();
    for row in &rows {
        let outcome = RollCallOutcome::of(
            row.try_get("called_at")?,
            row.try_get("window_ms")?,
            &row.try_get::<String, _>("status")?,
            row.try_get("answered_at")?,
            scope.now,
        );
        match outcome {
            Some(RollCallOutcome::InTime) => counts.answered_in_time += 1,
            Some(RollCallOutcome::Late) => counts.answered_late += 1,
            Some(RollCallOutcome::Missed) => counts.missed += 1,
            None => continue,
        }
        counts.total += 1;
    }
    counts.answer_rate = ratio(counts.answered_in_time, counts.total);
    Ok(counts)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RollCallOutcome {
    InTime,
    Late,
    Missed,
}

impl RollCallOutcome {
    /// None while the roll-call is open and can still be answered in time.
    fn of(
        called_at: i64,
        window_ms: i64,
        status: &str,
        answered_at: Option<i64>,
        now: i64,
    ) -> Option<RollCallOutcome> {
        match (status, answered_at) {
            ("answered", Some(at)) if at.saturating_sub(called_at) <= window_ms => {
                Some(Self::InTime)
            }
            ("answered", _) => Some(Self::Late),
            ("open", _) if now <= called_at.saturating_add(window_ms) => None,
            _ => Some(Self::Missed),
        }
    }
}

async fn incidents(scope: &Scope<'_>) -> Result<(Reporting, FollowUps), sqlx::Error> {
    let mut select = Sql::new(
        "SELECT record_known_at AS known_at, first_report_at, follow_ups, final_report_at, \
         backdated FROM incidents WHERE unit_id = ",
    );
    select
        .bind(scope.unit_id)
        .push(" AND record_known_at >= ")
        .bind(scope.from)
        .push(" AND record_known_at < ")
        .bind(scope.to);
    scope
        .visibility
        .restrict(&mut select, "unit_id", "classified <> 0");
    let rows = select.query().fetch_all(scope.pool).await?;
    let mut reporting = Reporting {
        known: i64::try_from(rows.len()).unwrap_or(i64::MAX),
        ..Reporting::default()
    };
    let mut follow_ups = FollowUps::default();
    for row in &rows {
        let known_at: i64 = row.try_get("known_at")?;
        if row.try_get::<i64, _>("backdated")? > 0 {
            reporting.backdated += 1;
        }
        let first_report_at: Option<i64> = row.try_get("first_report_at")?;
        match first_report_at {
            Some(first) => {
                reporting.incidents += 1;
                if first.saturating_sub(known_at) <= scope.intervals.first_report_ms {
                    reporting.first_report_on_time += 1;
                }
            }
            // No first report yet: late once the deadline has passed, undecided before.
            None if scope.now > known_at.saturating_add(scope.intervals.first_report_ms) => {
                reporting.incidents += 1
            }
            None => {}
        }
        let made: Vec<i64> =
            serde_json::from_str(&row.try_get::<String, _>("follow_ups")?).unwrap_or_default();
        let timeliness = Timeliness::of(
            Some(known_at),
            first_report_at,
            &made,
            row.try_get("final_report_at")?,
            scope.now,
            scope.intervals,
        );
        if timeliness.follow_ups_due > 0 {
            follow_ups.incidents += 1;
            if timeliness.follow_ups_made >= timeliness.follow_ups_due {
                follow_ups.cadence_kept += 1;
            }
        }
    }
    reporting.timeliness_rate = ratio(reporting.first_report_on_time, reporting.incidents);
    follow_ups.rate = ratio(follow_ups.cadence_kept, follow_ups.incidents);
    Ok((reporting, follow_ups))
}

async fn acknowledgement(scope: &Scope<'_>) -> Result<Acknowledgement, sqlx::Error> {
    // Deadline and roll-call alerts measure other things; these two are "someone must act".
    let mut select = Sql::new(
        "SELECT created_at, acknowledged_at FROM alerts \
         WHERE kind IN ('incident', 'instruction') AND unit_id = ",
    );
    select
        .bind(scope.unit_id)
        .push(" AND created_at >= ")
        .bind(scope.from)
        .push(" AND created_at < ")
        .bind(scope.to);
    scope
        .visibility
        .restrict(&mut select, "unit_id", "classified <> 0");
    let rows = select.query().fetch_all(scope.pool).await?;
    let mut waits = Vec::with_capacity(rows.len());
    for row in &rows {
        let created_at: i64 = row.try_get("created_at")?;
        if let Some(acknowledged_at) = row.try_get::<Option<i64>, _>("acknowledged_at")? {
            waits.push(acknowledged_at.saturating_sub(created_at).max(0));
        }
    }
    waits.sort_unstable();
    Ok(Acknowledgement {
        alerts: i64::try_from(rows.len()).unwrap_or(i64::MAX),
        acknowledged: i64::try_from(waits.len()).unwrap_or(i64::MAX),
        median_secs: nearest_rank(&waits, 50).map(whole_seconds),
        p90_secs: nearest_rank(&waits, 90).map(whole_seconds),
    })
}

async fn coverage(scope: &Scope<'_>) -> Result<Coverage, sqlx::Error> {
    let mut select = Sql::new("SELECT leader, officers FROM shifts WHERE unit_id = ");
    select
        .bind(scope.unit_id)
        .push(" AND start_at < ")
        .bind(scope.to)
        .push(" AND end_at > ")
        .bind(scope.from);
    scope
        .visibility
        .restrict(&mut select, "unit_id", "classified <> 0");
    let rows = select.query().fetch_all(scope.pool).await?;
    let mut coverage = Coverage::default();
    for row in &rows {
        coverage.shifts += 1;
        let leader: Option<String> = row.try_get("leader")?;
        let officers: String = row.try_get("officers")?;
        if is_covered(leader.as_deref(), &officers) {
            coverage.covered += 1;
        }
    }
    coverage.rate = ratio(coverage.covered, coverage.shifts);
    Ok(coverage)
}

/// A leader on duty (a person, or a non-empty list of people) and at least one officer.
fn is_covered(leader: Option<&str>, officers: &str) -> bool {
    let named = |json: &str| match serde_json::from_str::<Value>(json) {
        Ok(Value::Null) | Err(_) => false,
        Ok(Value::Array(people)) => !people.is_empty(),
        Ok(_) => true,
    };
    leader.is_some_and(named)
        && matches!(serde_json::from_str::<Value>(officers), Ok(Value::Array(people)) if !people.is_empty())
}

fn ratio(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `percent`
/// per cent of the values at or below it.
fn nearest_rank(sorted: &[i64], percent: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn whole_seconds(ms: i64) -> i64 {
    (ms + 500) / 1000
}

/// One row per figure; numerator and denominator are the counts behind it (for the two
/// acknowledgement times: acknowledged of all alerts). Every field is a number or a uuid, so
/// nothing needs quoting.
fn to_csv(kpis: &Kpis) -> String {
    let (rollcalls, reporting, follow_ups, acknowledgement, coverage) = (
        &kpis.rollcalls,
        &kpis.reporting,
        &kpis.follow_ups,
        &kpis.acknowledgement,
        &kpis.coverage,
    );
    let rows: [(&str, i64, i64, Option<String>); 7] = [
        (
            "rollcall_answer_rate",
            rollcalls.answered_in_time,
            rollcalls.total,
            rollcalls.answer_rate.map(|rate| rate.to_string()),
        ),
        (
            "reporting_timeliness_rate",
            reporting.first_report_on_time,
            reporting.incidents,
            reporting.timeliness_rate.map(|rate| rate.to_string()),
        ),
        (
            "reporting_backdated",
            reporting.backdated,
            reporting.known,
            Some(reporting.backdated.to_string()),
        ),
        (
            "follow_up_cadence_rate",
            follow_ups.cadence_kept,
            follow_ups.incidents,
            follow_ups.rate.map(|rate| rate.to_string()),
        ),
        (
            "ack_median_secs",
            acknowledgement.acknowledged,
            acknowledgement.alerts,
            acknowledgement.median_secs.map(|secs| secs.to_string()),
        ),
        (
            "ack_p90_secs",
            acknowledgement.acknowledged,
            acknowledgement.alerts,
            acknowledgement.p90_secs.map(|secs| secs.to_string()),
        ),
        (
            "on_duty_coverage_rate",
            coverage.covered,
            coverage.shifts,
            coverage.rate.map(|rate| rate.to_string()),
        ),
    ];
    let mut csv = String::from("unit_id,from,to,metric,numerator,denominator,value\r\n");
    for (metric, numerator, denominator, value) in rows {
        csv.push_str(&format!(
            "{},{},{},{metric},{numerator},{denominator},{}\r\n",
            kpis.unit_id,
            kpis.from,
            kpis.to,
            value.unwrap_or_default()
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[60, 120, 600], 50), Some(120));
        assert_eq!(nearest_rank(&[60, 120, 600], 90), Some(600));
        assert_eq!(nearest_rank(&[30, 60, 120, 600], 50), Some(60));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 90), Some(90));
        assert_eq!(nearest_rank(&hundred, 50), Some(50));
    }

    #[test]
    fn rollcall_outcomes() {
        let window = 600_000;
        let of =
            |status, answered_at, now| RollCallOutcome::of(0, window, status, answered_at, now);
        assert_eq!(
            of("answered", Some(window), 1),
            Some(RollCallOutcome::InTime)
        );
        assert_eq!(
            of("answered", Some(window + 1), 1),
            Some(RollCallOutcome::Late)
        );
        assert_eq!(
            of("missed", None, window * 2),
            Some(RollCallOutcome::Missed)
        );
        assert_eq!(of("open", None, window), None, "still answerable");
        assert_eq!(of("open", None, window + 1), Some(RollCallOutcome::Missed));
    }

    #[test]
    fn a_shift_is_covered_with_a_leader_and_an_officer() {
        let person = r#"{"user_id":null,"name":"li","phone":null}"#;
        let officers = format!("[{person}]");
        assert!(is_covered(Some(person), &officers));
        assert!(is_covered(Some(&officers), &officers), "a list of leaders");
        assert!(!is_covered(None, &officers));
        assert!(!is_covered(Some("null"), &officers));
        assert!(!is_covered(Some("[]"), &officers));
        assert!(!is_covered(Some(person), "[]"));
    }

    #[test]
    fn the_window_defaults_to_thirty_days_and_refuses_bad_ranges() {
        let now = 1_000 * DAY_MS;
        assert_eq!(window(None, None, now).unwrap(), (now - 30 * DAY_MS, now));
        assert_eq!(window(Some(5), Some(6), now).unwrap(), (5, 6));
        assert!(window(Some(6), Some(6), now).is_err());
        assert!(window(Some(7), Some(6), now).is_err());
        assert!(window(Some(0), Some(MAX_SPAN_MS), now).is_ok());
        assert!(window(Some(0), Some(MAX_SPAN_MS + 1), now).is_err());
        assert!(window(Some(i64::MIN), Some(i64::MAX), now).is_err());
    }

    #[test]
    fn accept_text_csv_asks_for_csv() {
        let mut headers = HeaderMap::new();
        assert!(!wants_csv(None, &headers).unwrap());
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;q=0.5, Text/CSV; charset=utf-8"),
        );
        assert!(wants_csv(None, &headers).unwrap());
        assert!(!wants_csv(Some("json"), &headers).unwrap());
        assert!(wants_csv(Some("csv"), &HeaderMap::new()).unwrap());
        assert!(wants_csv(Some("xml"), &HeaderMap::new()).is_err());
    }
}
