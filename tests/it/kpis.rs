//! KPIs per unit (D17): exact figures for a small scenario built the real way where it exists
//! (incidents and rosters from a device, through sync and the projection), the CSV export,
//! who may ask about which unit, and that classified items count only for cleared callers.

use std::time::Duration;

use serde_json::{Value, json};
use zhiban_server::access::Role;

use zhiban_server::Settings;
use zhiban_server::clock::Clock;

use crate::helpers::{Tablet, TestApp, get, org, spawn_app_on, spawn_app_with};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// An alert row as the alert engine will write it.
// TODO: raise alerts through the alert engine once it lands; rows are written by hand for now.
async fn insert_alert(
    app: &TestApp,
    kind: &str,
    unit_id: &str,
    classified: bool,
    created_at: i64,
    acknowledged_after: Option<i64>,
) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO alerts (id, kind, dedupe_key, unit_id, classified, title, steps, \
         created_at, step, repeats, acknowledged_at) \
         VALUES ($1, $2, $3, $4, $5, 'test alert', '[]', $6, 0, 0, $7)",
    )
    .bind(&id)
    .bind(kind)
    .bind(format!("test:{id}"))
    .bind(unit_id)
    .bind(i64::from(classified))
    .bind(created_at)
    .bind(acknowledged_after.map(|after| created_at + after))
    .execute(&app.pool)
    .await
    .unwrap();
    id
}

/// A roll-call row as the roll-call engine will write it, with its alert.
// TODO: call roll-calls through the engine's API once it lands; rows are written by hand now.
async fn insert_rollcall(
    app: &TestApp,
    unit_id: &str,
    called_by: &str,
    called_at: i64,
    status: &str,
    answered_after: Option<i64>,
) {
    let alert = insert_alert(app, "rollcall", unit_id, false, called_at, None).await;
    sqlx::query(
        "INSERT INTO rollcalls (id, unit_id, called_by, called_at, window_ms, status, \
         answered_at, alert_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(unit_id)
    .bind(called_by)
    .bind(called_at)
    .bind(10 * MINUTE)
    .bind(status)
    .bind(answered_after.map(|after| called_at + after))
    .bind(alert)
    .execute(&app.pool)
    .await
    .unwrap();
}

async fn status(app: &TestApp, token: &str, path: &str) -> u16 {
    app.http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn incident(title: &str, known_at: i64, reports: &[(&str, i64)]) -> Value {
    let reports: Vec<Value> = reports
        .iter()
        .map(|(kind, at)| json!({"kind": kind, "at": at, "by": "alice", "text": "报告"}))
        .collect();
    // Blue: the alert engine raises no incident alert for it (only its reporting deadlines,
    // which the acknowledgement figures leave out), so the incident alerts counted below are
    // exactly the ones this test writes.
    json!({"type": "incident", "title": title, "grade": "blue", "known_at": known_at, "reports": reports})
}

fn shift(start: i64, end: i64, leader: bool, officers: usize) -> Value {
    let person = |name: &str| json!({"user_id": null, "name": name, "phone": "13800000000"});
    json!({
        "start": start, "end": end, "kind": "workday",
        "leader": if leader { person("李局长") } else { Value::Null },
        "officers": (0..officers).map(|n| person(&format!("值班员{n}"))).collect::<Vec<_>>(),
    })
}

/// Everything of the response but `as_of`, which moves with the clock.
fn figures(mut kpis: Value) -> Value {
    kpis.as_object_mut().unwrap().remove("as_of");
    kpis
}

async fn scenario(app: &TestApp) {
    let org = org(app).await;
    // The tablets log in 41 days back by the server's clock and are offline until now: the
    // times they write below all lie between their last contact and the server's receipt,
    // so each counts as written (`records::times`).
    let (alice_tablet, cleared_tablet, bob_tablet) = (
        Tablet::login(app, "alice").await,
        Tablet::login(app, "cleared").await,
        Tablet::login(app, "bob").await,
    );
    app.settings
        .clock
        .advance(Duration::from_millis(41 * DAY as u64));
    let district: String = sqlx::query_scalar("SELECT parent_id FROM units WHERE id = $1")
        .bind(&org.unit_a)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // A superior who is not cleared for classified items.
    app.create_user("watcher", &district, Role::Officer, false)
        .await;
    let caller = app.login("district", "desk").await;
    let now = app.settings.clock.now_ms();
    let (from, to) = (now - DAY, now + HOUR);
    // Well outside the window, and outside the default 30 days too.
    let long_ago = now - 40 * DAY;

    // Incidents, written from devices; the projection derives the report chain.
    let (i1, i2, i3) = (now - 10 * HOUR, now - 8 * HOUR, now - 5 * HOUR);
    alice_tablet
        .create(&[
            // On time; two follow-ups due by the final report 5 h after the first, two made.
            incident(
                "化工厂泄漏",
                i1,
                &[
                    ("first", i1 + 30 * MINUTE),
                    ("follow_up", i1 + 150 * MINUTE),
                    ("follow_up", i1 + 270 * MINUTE),
                    ("final", i1 + 330 * MINUTE),
                ],
            ),
            // On time; three follow-ups due by now, none made.
            incident("道路塌陷", i2, &[("first", i2 + 20 * MINUTE)]),
            // 30 min late; one follow-up due, one made.
            incident(
                "山体滑坡",
                i3,
                &[
                    ("first", i3 + 90 * MINUTE),
                    ("follow_up", i3 + 210 * MINUTE),
                ],
            ),
            // No first report 3 h after it became known: late.
            incident("河道漫堤", now - 3 * HOUR, &[]),
            // No first report yet, but its hour is not up: not counted.
            incident("居民楼火情", now - 10 * MINUTE, &[]),
            incident("旧事", long_ago, &[("first", long_ago + MINUTE)]),
        ])
        .await;
    // Classified: on time, one follow-up due and none made.
    let secret = now - 3 * HOUR;
    let mut classified = incident("涉密线索", secret, &[("first", secret + 10 * MINUTE)]);
    classified["classification"] = json!("classified");
    cleared_tablet.create(&[classified]).await;
    bob_tablet
        .create(&[incident(
            "邻镇事件",
            now - 2 * HOUR,
            &[("first", now - HOUR)],
        )])
        .await;

    // Rosters (a leader's to write, W7): two of the three shifts overlapping the window have a
    // leader and an officer.
    cleared_tablet
        .create(&[json!({
            "type": "roster", "title": "值班表", "holiday": false,
            "shifts": [
                shift(now - 30 * HOUR, now - 12 * HOUR, true, 1),
                shift(now - 12 * HOUR, now - 4 * HOUR, true, 0),
                shift(now - 4 * HOUR, now + 4 * HOUR, true, 2),
                shift(long_ago, long_ago + 8 * HOUR, false, 0),
            ],
        })])
        .await;
    let mut classified_roster = json!({
        "type": "roster", "title": "涉密值班表", "holiday": false,
        "shifts": [shift(now - 2 * HOUR, now + 2 * HOUR, false, 1)],
    });
    classified_roster["classification"] = json!("classified");
    cleared_tablet.create(&[classified_roster]).await;

    // Roll-calls with a 10-minute window: in time, late, missed, open past its window (so
    // missed), open and still answerable (not counted), another unit's, and one long ago.
    let caller_id = caller.user_id.as_str();
    let unit_a = org.unit_a.as_str();
    insert_rollcall(
        app,
        unit_a,
        caller_id,
        now - 5 * HOUR,
        "answered",
        Some(5 * MINUTE),
    )
    .await;
    insert_rollcall(
        app,
        unit_a,
        caller_id,
        now - 4 * HOUR,
        "answered",
        Some(15 * MINUTE),
    )
    .await;
    insert_rollcall(app, unit_a, caller_id, now - 3 * HOUR, "missed", None).await;
    insert_rollcall(app, unit_a, caller_id, now - HOUR, "open", None).await;
    insert_rollcall(app, unit_a, caller_id, now - 2 * MINUTE, "open", None).await;
    insert_rollcall(
        app,
        &org.unit_b,
        caller_id,
        now - HOUR,
        "answered",
        Some(MINUTE),
    )
    .await;
    insert_rollcall(app, unit_a, caller_id, long_ago, "answered", Some(MINUTE)).await;

    // Alerts acknowledged after 60 s, 120 s and 600 s, one not acknowledged, one classified
    // (30 s); a deadline alert, another unit's and an old one do not count.
    let secs = |n: i64| Some(n * 1000);
    insert_alert(app, "incident", unit_a, false, now - 5 * HOUR, secs(60)).await;
    insert_alert(app, "instruction", unit_a, false, now - 4 * HOUR, secs(120)).await;
    insert_alert(app, "incident", unit_a, false, now - 3 * HOUR, secs(600)).await;
    insert_alert(app, "incident", unit_a, false, now - 2 * HOUR, None).await;
    insert_alert(app, "incident", unit_a, true, now - HOUR, secs(30)).await;
    insert_alert(app, "first_report", unit_a, false, now - HOUR, secs(1)).await;
    insert_alert(app, "incident", &org.unit_b, false, now - HOUR, secs(1)).await;
    insert_alert(app, "incident", unit_a, false, long_ago, secs(1)).await;

    let query = format!("/api/kpis?unit={unit_a}&from={from}&to={to}");
    let uncleared = json!({
        "unit_id": unit_a, "from": from, "to": to,
        "rollcalls": {"total": 4, "answered_in_time": 1, "answered_late": 1, "missed": 2,
                      "answer_rate": 0.25},
        "reporting": {"incidents": 4, "first_report_on_time": 2, "timeliness_rate": 0.5,
                      "known": 5, "backdated": 0},
        "follow_ups": {"incidents": 3, "cadence_kept": 2, "rate": 2.0 / 3.0},
        "acknowledgement": {"alerts": 4, "acknowledged": 3, "median_secs": 120, "p90_secs": 600},
        "coverage": {"shifts": 3, "covered": 2, "rate": 2.0 / 3.0},
    });
    let watcher = app.login("watcher", "desk").await.access_token;
    let answer = get(app, &watcher, &query).await;
    assert!(answer["as_of"].as_i64().unwrap() >= now, "{answer}");
    assert_eq!(
        figures(answer),
        uncleared,
        "an uncleared superior: no classified item counts"
    );
    let alice = app.login("alice", "desk").await.access_token;
    assert_eq!(
        figures(get(app, &alice, &format!("/api/kpis?from={from}&to={to}")).await),
        uncleared,
        "the caller's own unit by default"
    );
    let cleared = json!({
        "unit_id": unit_a, "from": from, "to": to,
        "rollcalls": uncleared["rollcalls"],
        "reporting": {"incidents": 5, "first_report_on_time": 3, "timeliness_rate": 0.6,
                      "known": 6, "backdated": 0},
        "follow_ups": {"incidents": 4, "cadence_kept": 2, "rate": 0.5},
        "acknowledgement": {"alerts": 5, "acknowledged": 4, "median_secs": 60, "p90_secs": 600},
        "coverage": {"shifts": 4, "covered": 2, "rate": 0.5},
    });
    assert_eq!(
        figures(get(app, &caller.access_token, &query).await),
        cleared,
        "a cleared superior counts the classified items"
    );

    // By default the 30 days up to now, which here hold the same items.
    let default = get(app, &alice, "/api/kpis").await;
    let default_to = default["to"].as_i64().unwrap();
    assert!(
        default_to >= now && default_to == default["as_of"],
        "{default}"
    );
    assert_eq!(default["from"].as_i64().unwrap(), default_to - 30 * DAY);
    for section in [
        "rollcalls",
        "reporting",
        "follow_ups",
        "acknowledgement",
        "coverage",
    ] {
        assert_eq!(default[section], uncleared[section], "{section}");
    }

    // CSV, by parameter or by Accept header: one row per figure, empty cells for nulls.
    let response = app
        .http
        .get(app.url(&format!("{query}&format=csv")))
        .bearer_auth(&watcher)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let body = response.text().await.unwrap();
    let prefix = format!("{unit_a},{from},{to}");
    let expected = [
        "unit_id,from,to,metric,numerator,denominator,value".to_owned(),
        format!("{prefix},rollcall_answer_rate,1,4,0.25"),
        format!("{prefix},reporting_timeliness_rate,2,4,0.5"),
        format!("{prefix},reporting_backdated,0,5,0"),
        format!("{prefix},follow_up_cadence_rate,2,3,{}", 2.0f64 / 3.0),
        format!("{prefix},ack_median_secs,3,4,120"),
        format!("{prefix},ack_p90_secs,3,4,600"),
        format!("{prefix},on_duty_coverage_rate,2,3,{}", 2.0f64 / 3.0),
    ];
    assert_eq!(body.lines().collect::<Vec<_>>(), expected, "{body}");
    let by_accept = app
        .http
        .get(app.url(&query))
        .bearer_auth(&watcher)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_accept.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(by_accept.text().await.unwrap(), body);

    // A unit with nothing in the window: zero counts, and no rate rather than a made-up one.
    let empty = get(
        app,
        &caller.access_token,
        &format!("/api/kpis?from={from}&to={to}"),
    )
    .await;
    assert_eq!(empty["unit_id"], district.as_str());
    assert_eq!(
        empty["rollcalls"],
        json!({"total": 0, "answered_in_time": 0, "answered_late": 0, "missed": 0, "answer_rate": null})
    );
    assert_eq!(empty["acknowledgement"]["median_secs"], Value::Null);
    assert_eq!(empty["coverage"]["rate"], Value::Null);
    let csv = app
        .http
        .get(app.url(&format!("/api/kpis?from={from}&to={to}&format=csv")))
        .bearer_auth(&caller.access_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.lines().nth(1).unwrap(),
        format!("{district},{from},{to},rollcall_answer_rate,0,0,")
    );

    // A sibling unit is not there for bob; a bad range or format is refused.
    let bob = app.login("bob", "desk").await.access_token;
    assert_eq!(
        status(app, &bob, &format!("/api/kpis?unit={unit_a}")).await,
        404
    );
    assert_eq!(status(app, &bob, "/api/kpis?unit=no-such-unit").await, 404);
    for bad in [
        format!("from={now}&to={now}"),
        format!("from={}&to={now}", now + 1),
        format!("from={}&to={now}", now - 401 * DAY),
        "format=xml".to_owned(),
    ] {
        assert_eq!(
            status(app, &alice, &format!("/api/kpis?{bad}")).await,
            400,
            "{bad}"
        );
    }
}

/// The server's clock, 41 days back: see `scenario`.
fn clock() -> Clock {
    Clock::manual(chrono::Utc::now().timestamp_millis() - 41 * DAY)
}

#[tokio::test]
async fn kpis_count_exactly_what_the_caller_may_see() {
    let app = spawn_app_on(clock()).await;
    scenario(&app).await;
}

#[tokio::test]
async fn kpis_count_the_same_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = crate::helpers::postgres_settings(dir.path()).await;
    let app = spawn_app_with(Settings {
        clock: clock(),
        ..settings
    })
    .await;
    scenario(&app).await;
}
