//! Alerts and roll-calls on the `zhiban` command line (D16, D23): the district office calls
//! a roll-call on Town A, whose officer sees it among her alerts and answers it once; a red
//! report from the field reaches the town's leader, who acknowledges it. Each command is a
//! child process with its own data directory, against the real server.

use serde_json::Value;

use crate::cli::{login, run};
use crate::cli_day::{deliver, fails, human};
use crate::helpers::{org, spawn_app};

/// The alert `id` in a `zhiban alerts` answer, if listed.
fn listed<'a>(answer: &'a Value, id: &str) -> Option<&'a Value> {
    answer["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("no alerts list: {answer}"))
        .iter()
        .find(|alert| alert["id"] == id)
}

#[tokio::test]
async fn cli_alerts_a_rollcall_is_seen_answered_once_and_listed_with_its_delay() {
    let app = spawn_app().await;
    let org = org(&app).await;
    let server = format!("http://{}", app.address);
    let alice_id = app.login("alice", "desk").await.user_id;
    let district_id = app.login("district", "desk").await.user_id;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (district, alice, bob) = (dirs[0].path(), dirs[1].path(), dirs[2].path());
    login(district, &server, "district").await;
    login(alice, &server, "alice").await;
    login(bob, &server, "bob").await;

    let called = run(district, &["rollcall", "call", &org.unit_a]).await;
    let rollcall = called[0]["id"].as_str().unwrap().to_owned();
    let alert = called[0]["alert_id"].as_str().unwrap().to_owned();
    assert!(called[0]["due_at"].is_i64(), "{called:?}");

    // The town's duty post sees it among its open alerts, and answers it by acknowledging
    // the alert shown.
    let inbox = run(alice, &["alerts"]).await;
    let seen = listed(&inbox[0], &alert).unwrap_or_else(|| panic!("{inbox:?}"));
    assert_eq!(seen["kind"], "rollcall");
    assert_eq!(seen["rollcall_id"], rollcall.as_str());
    assert_eq!(seen["targeted"], true);
    assert!(seen["title"].as_str().unwrap().contains("Town A"), "{seen}");
    let text = human(alice, &["alerts"]).await;
    assert!(
        text.lines().any(
            |line| line.starts_with(&format!("{alert}  rollcall  -  Roll-call"))
                && line.ends_with("[open]")
        ),
        "{text}"
    );
    let answered = run(alice, &["ack", &alert]).await;
    assert_eq!(answered[0]["id"], rollcall.as_str(), "{answered:?}");
    assert_eq!(answered[0]["status"], "answered");
    let delay = answered[0]["delay_ms"].as_i64().unwrap();
    assert!(delay >= 0, "{answered:?}");

    // The caller's list shows it answered by her, with the delay.
    let list = run(district, &["rollcall", "list", "--unit", &org.unit_a]).await;
    assert_eq!(list[0]["unit_id"], org.unit_a.as_str());
    let row = &list[0]["rollcalls"][0];
    assert_eq!(row["id"], rollcall.as_str(), "{list:?}");
    assert_eq!(row["status"], "answered");
    assert_eq!(row["answered_by"], alice_id.as_str());
    assert_eq!(row["called_by"], district_id.as_str());
    assert_eq!(row["delay_ms"], delay);
    let own = run(alice, &["rollcall", "list"]).await;
    assert_eq!(
        own[0]["rollcalls"], list[0]["rollcalls"],
        "her own unit by default"
    );
    let text = human(district, &["rollcall", "list", "--unit", &org.unit_a]).await;
    assert!(text.starts_with(&format!("{rollcall}  called ")), "{text}");
    assert!(
        text.contains(" answered after ") && text.trim_end().ends_with(&alice_id),
        "{text}"
    );

    // Answered once only; another unit's post cannot answer it; no roll-call on one's own unit.
    let (code, message) = fails(alice, &["rollcall", "answer", &rollcall]).await;
    assert_eq!(code, 1);
    assert!(message.contains("already answered"), "{message}");
    let (code, message) = fails(bob, &["rollcall", "answer", &rollcall]).await;
    assert_eq!(code, 1);
    assert!(
        message.contains("404") && message.contains("no such roll-call"),
        "{message}"
    );
    let (code, message) = fails(alice, &["rollcall", "call", &org.unit_a]).await;
    assert_eq!(code, 1);
    assert!(
        message.contains("403") && message.contains("superior office"),
        "{message}"
    );
    let (code, message) = fails(
        district,
        &["rollcall", "call", &org.unit_b, "--window-secs", "5"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        message.contains("window_secs must be 30 to 3600"),
        "{message}"
    );

    // Answered, it is no longer open; acknowledging its alert would have answered it too.
    let open = run(alice, &["alerts"]).await;
    assert!(listed(&open[0], &alert).is_none(), "{open:?}");
    let all = run(alice, &["alerts", "--all"]).await;
    let ended = listed(&all[0], &alert).unwrap_or_else(|| panic!("{all:?}"));
    assert_eq!(ended["resolution"], "answered");
    let (code, message) = fails(alice, &["ack", &alert]).await;
    assert_eq!(code, 1);
    assert!(message.contains("already answered"), "{message}");
}

#[tokio::test]
async fn cli_alerts_a_red_report_reaches_the_leader_who_acknowledges_it() {
    let app = spawn_app().await;
    org(&app).await;
    let server = format!("http://{}", app.address);
    let leader_id = app.login("cleared", "desk").await.user_id;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (field, leader, bob) = (dirs[0].path(), dirs[1].path(), dirs[2].path());

    let (code, message) = fails(leader, &["alerts"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("zhiban login"), "{message}");
    login(field, &server, "anna").await;
    login(leader, &server, "cleared").await;
    login(bob, &server, "bob").await;
    assert_eq!(human(leader, &["alerts"]).await.trim(), "no open alerts");

    // Saved on the phone first, then delivered by a sync.
    let lines = run(
        field,
        &[
            "report",
            "--urgent",
            "--category",
            "fire",
            "--location",
            "化工厂",
            "--note",
            "浓烟",
            "--wait",
            "0",
        ],
    )
    .await;
    let incident = lines[0]["id"].as_str().unwrap().to_owned();
    deliver(field, &incident).await;

    // Nobody on a roster: the alert falls back to the unit's leader.
    let inbox = run(leader, &["alerts"]).await;
    let alerts = inbox[0]["alerts"].as_array().unwrap();
    let alert = alerts
        .iter()
        .find(|alert| alert["kind"] == "incident" && alert["document_id"] == incident.as_str())
        .unwrap_or_else(|| panic!("{inbox:?}"));
    let id = alert["id"].as_str().unwrap().to_owned();
    assert_eq!(alert["grade"], "red");
    assert_eq!(alert["targeted"], true);
    assert!(
        alert["title"].as_str().unwrap().contains("化工厂"),
        "{alert}"
    );
    let text = human(leader, &["alerts"]).await;
    let line = text
        .lines()
        .find(|line| line.starts_with(&id))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with(&format!("{id}  incident  red  ")),
        "{line}"
    );
    assert!(
        line.contains("化工厂") && line.ends_with("[open]"),
        "{line}"
    );

    // Another town's officer does not even see it.
    let (code, message) = fails(bob, &["ack", &id]).await;
    assert_eq!(code, 1);
    assert!(
        message.contains("404") && message.contains("no such alert"),
        "{message}"
    );

    let acknowledged = run(leader, &["ack", &id]).await;
    assert_eq!(acknowledged[0]["id"], id.as_str());
    assert_eq!(acknowledged[0]["already"], false);
    assert_eq!(acknowledged[0]["acknowledged_by"], leader_id.as_str());
    let again = human(leader, &["ack", &id]).await;
    assert!(
        again.starts_with(&format!("{id} was already acknowledged by {leader_id} at ")),
        "{again}"
    );

    let open = run(leader, &["alerts"]).await;
    assert!(listed(&open[0], &id).is_none(), "{open:?}");
    let all = run(leader, &["alerts", "--all"]).await;
    let done = listed(&all[0], &id).unwrap_or_else(|| panic!("{all:?}"));
    assert_eq!(done["acknowledged_by"], leader_id.as_str());
    assert!(done["acknowledged_at"].is_i64(), "{done}");
    let text = human(leader, &["alerts", "--all"]).await;
    assert!(
        text.lines().any(|line| line.starts_with(&id)
            && line.contains(&format!("[acknowledged by {leader_id} at "))),
        "{text}"
    );

    app.stop().await.unwrap();
    let (code, message) = fails(leader, &["alerts"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("cannot reach the server"), "{message}");
}
