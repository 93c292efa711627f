//! Daily and zero reports (D15): one row per report, by unit and day; the alert worker looks
//! here for units whose holiday report is missing.

use zhiban_records::DailyReport;

use super::Common;

#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub report: Option<DailyReport>,
}

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    common: &Common,
    rows: &Rows,
) -> Result<(), sqlx::Error> {
    let id = common.document_id.to_string();
    if !common.fresh {
        clear(tx, &id).await?;
    }
    let Some(report) = &rows.report else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO daily_reports (document_id, unit_id, classified, day, zero, \
         holiday_summary, submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&common.unit_id)
    .bind(i64::from(common.classified))
    .bind(&report.date)
    .bind(i64::from(report.zero))
    .bind(i64::from(report.holiday_summary))
    .bind(report.submitted_at)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn clear(tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM daily_reports WHERE document_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}
