//! What happened to each alert, in order, and so to the record it is about: raised, each step
//! and whom it reached, each push attempt, the device's receipt, the acknowledgement, the
//! resolution (D19, D23). Alerts and delivery append; the alert and incident views read. A
//! table keyed by alert and document, knowing nothing of either.

use serde_json::Value;
use sqlx::Row;
use zhiban_api::TimelineEntry;

use crate::db::Pool;

/// One event to append.
pub struct Event<'a> {
    pub alert_id: &'a str,
    pub document_id: Option<&'a str>,
    pub at: i64,
    pub event: &'a str,
    pub user_id: Option<&'a str>,
    pub detail: Value,
}

pub async fn append(
    connection: &mut sqlx::AnyConnection,
    event: Event<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO timeline (alert_id, document_id, at, event, user_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.alert_id)
    .bind(event.document_id)
    .bind(event.at)
    .bind(event.event)
    .bind(event.user_id)
    .bind(event.detail.to_string())
    .execute(connection)
    .await?;
    Ok(())
}

/// The events of one alert, oldest first.
pub async fn of_alert(pool: &Pool, alert_id: &str) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    read(pool, "alert_id", alert_id).await
}

/// The events of every alert about one document, oldest first.
pub async fn of_document(
    pool: &Pool,
    document_id: &str,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    read(pool, "document_id", document_id).await
}

async fn read(
    pool: &Pool,
    column: &'static str,
    id: &str,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT alert_id, at, event, user_id, detail FROM timeline WHERE {column} = $1 ORDER BY id"
    )))
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let detail: String = row.try_get("detail")?;
            Ok(TimelineEntry {
                alert_id: row.try_get::<String, _>("alert_id")?.into(),
                at: row.try_get("at")?,
                event: row.try_get("event")?,
                user_id: row.try_get::<Option<String>, _>("user_id")?.map(Into::into),
                detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
            })
        })
        .collect()
}
