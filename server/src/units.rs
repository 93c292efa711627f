//! The unit tree and its people: units, users and their roles. A superior office sees the
//! units below it; siblings do not see each other (D18).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::AppState;
use crate::auth::Identity;
use crate::db::{Pool, now_ms};
use crate::error::AppError;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/api/units", axum::routing::get(visible))
}

/// The caller's unit and every unit below it: what a device subscribes to (their catalogs).
async fn visible(
    axum::extract::State(state): axum::extract::State<AppState>,
    identity: Identity,
) -> Result<axum::Json<Vec<UnitView>>, AppError> {
    let ids = visible_units(&state.pool, &identity.unit_id).await?;
    let units = list_units(&state.pool)
        .await?
        .into_iter()
        .filter(|unit| ids.contains(&unit.id))
        .collect();
    Ok(axum::Json(units))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Leader,
    Officer,
    Field,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Leader => "leader",
            Role::Officer => "officer",
            Role::Field => "field",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "leader" => Ok(Role::Leader),
            "officer" => Ok(Role::Officer),
            "field" => Ok(Role::Field),
            other => Err(format!("unknown role `{other}`")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("no unit with id {0}")]
    NoSuchUnit(String),
    #[error("the username `{0}` is taken")]
    UsernameTaken(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The unit itself and every unit below it: what a member of `unit_id` may read.
pub async fn visible_units(pool: &Pool, unit_id: &str) -> Result<HashSet<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE below(id) AS ( \
             SELECT id FROM units WHERE id = $1 \
             UNION SELECT u.id FROM units u JOIN below b ON u.parent_id = b.id) \
         SELECT id FROM below",
    )
    .bind(unit_id)
    .fetch_all(pool)
    .await
    .map(|ids| ids.into_iter().collect())
}

pub async fn create_unit(
    pool: &Pool,
    name: &str,
    parent: Option<&str>,
) -> Result<String, UnitError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(UnitError::Invalid("a unit name has 1 to 200 characters"));
    }
    if let Some(parent) = parent {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM units WHERE id = $1")
            .bind(parent)
            .fetch_optional(pool)
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
        .bind(now_ms())
        .execute(pool)
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

pub async fn create_user(pool: &Pool, user: NewUser<'_>) -> Result<String, UnitError> {
    let username = user.username.trim();
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
    if user.password.chars().count() < 8 {
        return Err(UnitError::Invalid("a password has at least 8 characters"));
    }
    let unit: Option<String> = sqlx::query_scalar("SELECT id FROM units WHERE id = $1")
        .bind(user.unit_id)
        .fetch_optional(pool)
        .await?;
    if unit.is_none() {
        return Err(UnitError::NoSuchUnit(user.unit_id.to_owned()));
    }
    let taken: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    if taken.is_some() {
        return Err(UnitError::UsernameTaken(username.to_owned()));
    }
    let password = user.password.to_owned();
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(anyhow::Error::from)??;
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, unit_id, role, cleared, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(username)
    .bind(user.display_name.unwrap_or(username))
    .bind(hash)
    .bind(user.unit_id)
    .bind(user.role.as_str())
    .bind(i64::from(user.cleared))
    .bind(now_ms())
    .execute(pool)
    .await?;
    Ok(id)
}

#[derive(Debug, Serialize)]
pub struct UnitView {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
}

pub async fn list_units(pool: &Pool) -> Result<Vec<UnitView>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, name, parent_id FROM units ORDER BY id")
        .fetch_all(pool)
        .await?;
    units_from_rows(&rows)
}

fn units_from_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<UnitView>, sqlx::Error> {
    rows.iter()
        .map(|row| {
            Ok(UnitView {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                parent_id: row.try_get("parent_id")?,
            })
        })
        .collect()
}
