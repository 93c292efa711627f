//! The unit tree and its people: units, users, their roles and their passwords (argon2).
//! A superior office sees the units below it; siblings do not see each other (D18).

use argon2::{Argon2, PasswordHasher};
use axum::Json;
use axum::extract::{Path, State};
use sqlx::Row;
use zhiban_api::{IntervalsBody, UnitView};

use crate::AppState;
use crate::access::{Identity, Role, visible_units};
use crate::audit::{self, Entry};
use crate::error::{ApiJson, AppError};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route(
        "/api/units/{id}/intervals",
        axum::routing::put(set_intervals),
    )
}

/// Sets a unit's own reporting intervals (D11, D12: "or as the superior office requires"):
/// its leaders, or an admin of it or of an office above. Deadlines raised from then on, the
/// incident views and the figures follow them.
#[utoipa::path(put, path = "/api/units/{id}/intervals", tag = "units", request_body = IntervalsBody,
    params(("id" = String, Path)),
    responses((status = 200, body = zhiban_api::Intervals), (status = 400, body = zhiban_api::ErrorBody),
        (status = 403, body = zhiban_api::ErrorBody), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn set_intervals(
    State(state): State<AppState>,
    identity: Identity,
    Path(unit_id): Path<String>,
    ApiJson(body): ApiJson<IntervalsBody>,
) -> Result<Json<zhiban_api::Intervals>, AppError> {
    if !visible_units(&state.pool, &identity.unit_id)
        .await?
        .contains(&unit_id)
    {
        return Err(AppError::NotFound("no such unit"));
    }
    let allowed = identity.role == Role::Admin
        || (identity.role == Role::Leader && identity.unit_id == unit_id);
    if !allowed {
        return Err(AppError::Forbidden(
            "only the unit's leaders or an admin set its reporting intervals",
        ));
    }
    for (name, minutes) in [
        ("first_report_minutes", body.first_report_minutes),
        ("follow_up_minutes", body.follow_up_minutes),
    ] {
        if minutes.is_some_and(|minutes| !(5..=24 * 60).contains(&minutes)) {
            return Err(AppError::BadRequest(format!(
                "{name} must be 5 to 1440 minutes (or null for the deployment's)"
            )));
        }
    }
    let now = state.clock.now_ms();
    let mut tx = crate::db::begin_write(&state.pool).await?;
    sqlx::query("UPDATE units SET first_report_minutes = $1, follow_up_minutes = $2 WHERE id = $3")
        .bind(body.first_report_minutes.map(i64::from))
        .bind(body.follow_up_minutes.map(i64::from))
        .bind(&unit_id)
        .execute(&mut *tx)
        .await?;
    let entry = Entry::new("unit.intervals")
        .by(&identity.user_id, Some(&identity.device_id))
        .detail(serde_json::json!({"unit_id": unit_id, "first_report_minutes": body.first_report_minutes,
            "follow_up_minutes": body.follow_up_minutes}));
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    let effective = intervals(&state.pool, &unit_id, state.settings.intervals()).await?;
    Ok(Json(zhiban_api::Intervals {
        unit_id: unit_id.into(),
        first_report_minutes: effective.first_report_ms / 60_000,
        follow_up_minutes: effective.follow_up_ms / 60_000,
    }))
}

/// The caller's unit and every unit below it, with their catalogs' ids (the classified one
/// for cleared callers only): what a device follows to learn of new records.
#[utoipa::path(get, path = "/api/units", tag = "units",
    responses((status = 200, body = Vec<UnitView>)), security(("bearer" = [])))]
pub(crate) async fn visible(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Json<Vec<UnitView>>, AppError> {
    let ids = visible_units(&state.pool, &identity.unit_id).await?;
    let units = list_units(&state.pool)
        .await?
        .into_iter()
        .filter(|unit| ids.contains(&unit.id))
        .map(|unit| UnitView {
            catalog: state.catalog_key.id(&unit.id, false),
            classified_catalog: identity
                .cleared
                .then(|| state.catalog_key.id(&unit.id, true)),
            id: unit.id.into(),
            name: unit.name,
            parent_id: unit.parent_id.map(Into::into),
        })
        .collect();
    Ok(Json(units))
}

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("no unit with id {0}")]
    NoSuchUnit(String),
    #[error("the username `{0}` is taken")]
    UsernameTaken(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0}")]
    WeakPassword(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

pub fn hash_password(password: &str) -> Result<String, UnitError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| UnitError::Hash(error.to_string()))
}

/// Most Argon2 memory a stored hash may ask for (64 MiB); ours ask for 19 MiB.
const MAX_HASH_BLOCKS: usize = 64 * 1024;

/// Checks `password` against a stored hash, working in `memory` (grown as the hash's
/// parameters need). Reusing one buffer per permitted check (auth::throttle) is what bounds
/// memory: a fresh 19 MiB buffer for each login was kept by the allocator, and a storm of
/// failed logins took the server past a gigabyte.
pub fn verify_password(password: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::phc::{Output, PasswordHash};
    let Ok(hash) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        argon2::Algorithm::try_from(hash.algorithm.as_str()),
        hash.version
            .map_or(Ok(argon2::Version::default()), argon2::Version::try_from),
        argon2::Params::try_from(&hash),
    ) else {
        return false;
    };
    if params.block_count() > MAX_HASH_BLOCKS {
        return false;
    }
    memory.resize(params.block_count(), argon2::Block::default());
    let mut out = vec![0; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory.as_mut_slice())
        .is_ok()
        // Output's equality takes constant time.
        && Output::new(&out).is_ok_and(|computed| computed == *expected)
}

pub(crate) fn check_unit_name(name: &str) -> Result<(), UnitError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(UnitError::Invalid("a unit name has 1 to 200 characters"));
    }
    Ok(())
}

/// Inserts a unit (the caller creates its catalogs and audits it in the same transaction).
pub(crate) async fn insert_unit(
    connection: &mut sqlx::AnyConnection,
    name: &str,
    parent: Option<&str>,
    now: i64,
) -> Result<String, UnitError> {
    check_unit_name(name)?;
    let name = name.trim();
    if let Some(parent) = parent {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM units WHERE id = $1")
            .bind(parent)
            .fetch_optional(&mut *connection)
            .await?;
        if exists.is_none() {
            return Err(UnitError::NoSuchUnit(parent.to_owned()));
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO units (id, name, parent_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(name)
        .bind(parent)
        .bind(now)
        .execute(&mut *connection)
        .await?;
    Ok(id)
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: Option<&'a str>,
    pub password: &'a str,
    pub unit_id: &'a str,
    pub role: Role,
    pub cleared: bool,
}

impl NewUser<'_> {
    /// Checks what can be checked without the database.
    pub fn validate(&self) -> Result<(), UnitError> {
        let username = self.username.trim();
        if username.is_empty()
            || username.len() > 64
            || !username
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        {
            return Err(UnitError::Invalid(
                "a username has 1 to 64 letters, digits, '.', '_', '-' or '@'",
            ));
        }
        check_password(self.password, &[username])
    }
}

/// A password worth having: at least 12 characters, and not guessable from lists of common
/// passwords, words, keyboard walks and the user's own name (zxcvbn score 3 of 4).
pub fn check_password(password: &str, user_inputs: &[&str]) -> Result<(), UnitError> {
    if password.chars().count() < 12 {
        return Err(UnitError::WeakPassword(
            "a password has at least 12 characters".into(),
        ));
    }
    let estimate = zxcvbn::zxcvbn(password, user_inputs);
    if estimate.score() < zxcvbn::Score::Three {
        let hint = estimate
            .feedback()
            .and_then(|feedback| feedback.warning())
            .map(|warning| format!(": {warning}"))
            .unwrap_or_default();
        return Err(UnitError::WeakPassword(format!(
            "the password is too easy to guess{hint}; a few unrelated words make a good one"
        )));
    }
    Ok(())
}

/// The argon2 hash of a new user's password, after checking the user; off the async
/// threads, since hashing takes a while.
pub(crate) async fn checked_hash(user: &NewUser<'_>) -> Result<String, UnitError> {
    user.validate()?;
    hash_off_thread(user.password).await
}

pub(crate) async fn hash_off_thread(password: &str) -> Result<String, UnitError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|error| UnitError::Hash(error.to_string()))?
}

/// Inserts a user; `temporary`: the next login must change the password.
pub(crate) async fn insert_user(
    connection: &mut sqlx::AnyConnection,
    user: &NewUser<'_>,
    password_hash: &str,
    temporary: bool,
    now: i64,
) -> Result<String, UnitError> {
    let username = user.username.trim();
    let unit: Option<String> = sqlx::query_scalar("SELECT id FROM units WHERE id = $1")
        .bind(user.unit_id)
        .fetch_optional(&mut *connection)
        .await?;
    if unit.is_none() {
        return Err(UnitError::NoSuchUnit(user.unit_id.to_owned()));
    }
    let taken: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&mut *connection)
        .await?;
    if taken.is_some() {
        return Err(UnitError::UsernameTaken(username.to_owned()));
    }
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, unit_id, role, cleared, \
         created_at, must_change_password) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(username)
    .bind(user.display_name.unwrap_or(username))
    .bind(password_hash)
    .bind(user.unit_id)
    .bind(user.role.as_str())
    .bind(i64::from(user.cleared))
    .bind(now)
    .bind(i64::from(temporary))
    .execute(&mut *connection)
    .await?;
    Ok(id)
}

/// A unit as stored.
#[derive(Debug, serde::Serialize)]
pub struct Unit {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
}

pub async fn list_units(pool: &crate::db::Pool) -> Result<Vec<Unit>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, name, parent_id FROM units ORDER BY id")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Unit {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                parent_id: row.try_get("parent_id")?,
            })
        })
        .collect()
}

/// Users of `unit_id` with one of `roles`, by id.
pub async fn users_with_roles(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
    roles: &[Role],
) -> Result<Vec<String>, sqlx::Error> {
    let mut select = crate::db::Sql::new("SELECT id FROM users WHERE unit_id = ");
    select
        .bind(unit_id.to_owned())
        .push(" AND role IN ")
        .bind_list(roles.iter().map(|role| crate::db::Arg::from(role.as_str())))
        .push(" ORDER BY id");
    select
        .query()
        .fetch_all(connection)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect()
}

/// A unit's reporting intervals (D11, D12): its own where it set them, else `deployment`.
pub async fn intervals<'c, E>(
    executor: E,
    unit_id: &str,
    deployment: zhiban_records::Intervals,
) -> Result<zhiban_records::Intervals, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let own: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT first_report_minutes, follow_up_minutes FROM units WHERE id = $1")
            .bind(unit_id)
            .fetch_optional(executor)
            .await?;
    Ok(own.map_or(deployment, |(first, follow_up)| {
        deployment.with(first, follow_up)
    }))
}
