//! The account lifecycle (D24): admins create, list, disable and enable users, reset their
//! passwords, change their role, unit and clearance, and create and move units, each only
//! within their own unit and the units below it. The same operations back the REST API (an
//! admin on a device) and `zhiban-server admin` (the operator on the server's machine, for
//! every unit). Every change commits with its audit row; what a change takes away (sessions,
//! sockets, push subscriptions) goes at once.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use sqlx::Row;
use zhiban_api::{
    NewUserRequest, PasswordReset, PasswordResetDone, UnitRequest, UnitView, UserPatch, UserView,
};

use crate::AppState;
use crate::access::{Identity, Role, units_above, visible_units};
use crate::audit::{self, AuditKey, Entry};
use crate::catalog::CatalogKey;
use crate::db::{Pool, begin_write};
use crate::error::{ApiJson, AppError};
use crate::units::{self, NewUser, UnitError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route("/api/users/{id}", axum::routing::patch(update))
        .route("/api/users/{id}/disable", post(disable))
        .route("/api/users/{id}/enable", post(enable))
        .route("/api/users/{id}/reset-password", post(reset))
        .route("/api/units", get(units::visible).post(save_unit_route))
}

/// Who acts: an admin through the API, or whoever runs the admin command on the server's
/// machine (named by the operating system, since they have no account).
#[derive(Debug, Clone)]
pub enum Actor {
    Admin(Identity),
    Operator(OsUser),
}

/// The operating-system user that ran an admin command; `sudo_user` when it ran through sudo.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OsUser {
    pub uid: u32,
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
}

impl OsUser {
    /// The real uid from the kernel; names from the environment only as a reading aid.
    pub fn current() -> OsUser {
        OsUser {
            uid: rustix::process::getuid().as_raw(),
            name: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok(),
            sudo_user: std::env::var("SUDO_USER").ok(),
        }
    }
}

impl Actor {
    /// The audit row of an action by this actor; the operator's OS user goes into its detail.
    pub fn entry(&self, action: &'static str, mut detail: serde_json::Value) -> Entry {
        match self {
            Actor::Admin(identity) => Entry::new(action)
                .by(&identity.user_id, Some(&identity.device_id))
                .detail(detail),
            Actor::Operator(os_user) => {
                if let Some(object) = detail.as_object_mut() {
                    object.insert("os_user".into(), serde_json::json!(os_user));
                }
                Entry::new(action).detail(detail)
            }
        }
    }

    /// The units this actor may manage: an admin's own and those below it; every unit for
    /// the operator.
    async fn scope(&self, pool: &Pool) -> Result<Option<HashSet<String>>, sqlx::Error> {
        match self {
            Actor::Admin(identity) => Ok(Some(visible_units(pool, &identity.unit_id).await?)),
            Actor::Operator(_) => Ok(None),
        }
    }

    /// Refuses to hand out what the actor does not hold: an uncleared admin may neither
    /// clear an account (new or existing) nor reset a cleared one's password (a password they
    /// set is one they know), else they could read classified items through it (D18).
    fn may_touch_clearance(&self) -> Result<(), AccountError> {
        match self {
            Actor::Admin(identity) if !identity.cleared => Err(AccountError::Refused(
                "only a cleared admin may grant clearance or manage a cleared account",
            )),
            _ => Ok(()),
        }
    }

    fn user_id(&self) -> Option<&str> {
        match self {
            Actor::Admin(identity) => Some(&identity.user_id),
            Actor::Operator(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Outside the actor's units, or not there at all: the same answer, so that an admin
    /// learns nothing of other units.
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Refused(&'static str),
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<AccountError> for AppError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::NotFound(what) => AppError::NotFound(match what {
                "unit" => "no such unit",
                _ => "no such user",
            }),
            AccountError::Refused(why) => AppError::Forbidden(why),
            AccountError::Unit(UnitError::Database(error)) | AccountError::Database(error) => {
                error.into()
            }
            AccountError::Unit(UnitError::UsernameTaken(name)) => {
                AppError::Conflict(format!("the username `{name}` is taken"))
            }
            AccountError::Unit(UnitError::Hash(error)) => {
                AppError::Internal(anyhow::anyhow!(error))
            }
            AccountError::Unit(error) => AppError::BadRequest(error.to_string()),
        }
    }
}

/// Whose sockets a change must close once it has committed.
#[derive(Debug)]
#[must_use]
pub enum Affected {
    Nobody,
    User(String),
    Units(HashSet<String>),
}

impl Affected {
    /// Closes the affected sockets on this node; returns how many.
    pub fn disconnect(&self, state: &AppState) -> usize {
        match self {
            Affected::Nobody => 0,
            Affected::User(user_id) => state.connections.disconnect_user(user_id),
            Affected::Units(units) => state.connections.disconnect_units(units),
        }
    }
}

fn allowed(scope: &Option<HashSet<String>>, unit_id: &str) -> bool {
    scope.as_ref().is_none_or(|units| units.contains(unit_id))
}

fn admin(identity: Identity) -> Result<Actor, AppError> {
    if identity.role != Role::Admin {
        return Err(AppError::Forbidden("only admins manage accounts and units"));
    }
    Ok(Actor::Admin(identity))
}

const USER_COLUMNS: &str = "id, username, display_name, unit_id, role, cleared, disabled_at, must_change_password, \
     created_at";

fn user_view(row: &sqlx::any::AnyRow) -> Result<UserView, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(UserView {
        id: row.try_get::<String, _>("id")?.into(),
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        unit_id: row.try_get::<String, _>("unit_id")?.into(),
        role: role
            .parse()
            .map_err(|error: String| sqlx::Error::Decode(error.into()))?,
        cleared: row.try_get::<i64, _>("cleared")? != 0,
        disabled_at: row.try_get("disabled_at")?,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

/// Users of the actor's units, by username.
pub async fn list_users(pool: &Pool, actor: &Actor) -> Result<Vec<UserView>, AccountError> {
    let scope = actor.scope(pool).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY username"
    )))
    .fetch_all(pool)
    .await?;
    let mut users = Vec::new();
    for row in &rows {
        let user = user_view(row)?;
        if allowed(&scope, user.unit_id.as_str()) {
            users.push(user);
        }
    }
    Ok(users)
}

/// A user of the actor's units, read inside `tx`.
async fn user_in_scope(
    tx: &mut sqlx::AnyConnection,
    scope: &Option<HashSet<String>>,
    user_id: &str,
) -> Result<UserView, AccountError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AccountError::NotFound("user"))?;
    let user = user_view(&row)?;
    if !allowed(scope, user.unit_id.as_str()) {
        return Err(AccountError::NotFound("user"));
    }
    Ok(user)
}

/// Creates a user in one of the actor's units. `temporary`: the password was chosen for
/// them, so the first login must replace it.
pub async fn create_user_as(
    pool: &Pool,
    key: &AuditKey,
    actor: &Actor,
    user: NewUser<'_>,
    temporary: bool,
    now: i64,
) -> Result<UserView, AccountError> {
    let scope = actor.scope(pool).await?;
    if !allowed(&scope, user.unit_id) {
        return Err(AccountError::NotFound("unit"));
    }
    if user.cleared {
        actor.may_touch_clearance()?;
    }
    let hash = units::checked_hash(&user).await?;
    let mut tx = begin_write(pool).await?;
    let id = units::insert_user(&mut tx, &user, &hash, temporary, now).await?;
    let entry = actor.entry(
        "admin.create_user",
        serde_json::json!({
            "user_id": id, "username": user.username.trim(), "unit_id": user.unit_id,
            "role": user.role, "cleared": user.cleared, "temporary_password": temporary,
        }),
    );
    audit::append(&mut tx, key, &[entry], now).await?;
    let view = user_in_scope(&mut tx, &None, &id).await?;
    tx.commit().await?;
    Ok(view)
}

/// Changes a user's name, role, unit or clearance. An admin's own role, unit and clearance
/// are another admin's to change (no one widens or loses their own powers by mistake).
pub async fn update_user(
    pool: &Pool,
    key: &AuditKey,
    actor: &Actor,
    user_id: &str,
    patch: &UserPatch,
    now: i64,
) -> Result<(UserView, Affected), AccountError> {
    let scope = actor.scope(pool).await?;
    if let Some(name) = &patch.display_name
        && (name.trim().is_empty() || name.chars().count() > 200)
    {
        return Err(UnitError::Invalid("a display name has 1 to 200 characters").into());
    }
    if let Some(unit_id) = &patch.unit_id
        && !allowed(&scope, unit_id.as_str())
    {
        return Err(AccountError::NotFound("unit"));
    }
    let mut tx = begin_write(pool).await?;
    let before = user_in_scope(&mut tx, &scope, user_id).await?;
    let powers_changed = patch.role.is_some_and(|role| role != before.role)
        || patch
            .unit_id
            .as_ref()
            .is_some_and(|unit| *unit != before.unit_id)
        || patch
            .cleared
            .is_some_and(|cleared| cleared != before.cleared);
    if powers_changed && actor.user_id() == Some(user_id) {
        return Err(AccountError::Refused(
            "another admin must change your own role, unit or clearance",
        ));
    }
    if patch.cleared == Some(true) && !before.cleared {
        actor.may_touch_clearance()?;
    }
    if let Some(unit_id) = &patch.unit_id {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM units WHERE id = $1")
            .bind(unit_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(AccountError::NotFound("unit"));
        }
    }
    let display_name = patch
        .display_name
        .as_deref()
        .map_or(before.display_name.clone(), |name| name.trim().to_owned());
    let role = patch.role.unwrap_or(before.role);
    let unit_id = patch.unit_id.clone().unwrap_or(before.unit_id.clone());
    let cleared = patch.cleared.unwrap_or(before.cleared);
    sqlx::query(
        "UPDATE users SET display_name = $1, role = $2, unit_id = $3, cleared = $4 WHERE id = $5",
    )
    .bind(&display_name)
    .bind(role.as_str())
    .bind(unit_id.as_str())
    .bind(i64::from(cleared))
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    let entry = actor.entry(
        "user.update",
        serde_json::json!({
            "user_id": user_id,
            "before": {"display_name": before.display_name, "role": before.role,
                "unit_id": before.unit_id, "cleared": before.cleared},
            "after": {"display_name": display_name, "role": role, "unit_id": unit_id,
                "cleared": cleared},
        }),
    );
    audit::append(&mut tx, key, &[entry], now).await?;
    let after = user_in_scope(&mut tx, &None, user_id).await?;
    tx.commit().await?;
    // Sockets hold what their user could see when they opened: reopened, they see anew.
    let affected = if powers_changed {
        Affected::User(user_id.to_owned())
    } else {
        Affected::Nobody
    };
    Ok((after, affected))
}

/// Disables (`disabled`) or enables a user. Disabling ends every session of theirs: no
/// refresh token, access token, socket or push subscription survives it; their devices stay
/// registered, so that enabling them again needs only a login.
pub async fn set_disabled(
    pool: &Pool,
    key: &AuditKey,
    actor: &Actor,
    user_id: &str,
    disabled: bool,
    now: i64,
) -> Result<(UserView, Affected), AccountError> {
    if disabled && actor.user_id() == Some(user_id) {
        return Err(AccountError::Refused(
            "an admin cannot disable their own account",
        ));
    }
    let scope = actor.scope(pool).await?;
    let mut tx = begin_write(pool).await?;
    user_in_scope(&mut tx, &scope, user_id).await?;
    sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
        .bind(disabled.then_some(now))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if disabled {
        end_sessions(&mut tx, user_id, true).await?;
    }
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    let entry = actor.entry(action, serde_json::json!({ "user_id": user_id }));
    audit::append(&mut tx, key, &[entry], now).await?;
    let view = user_in_scope(&mut tx, &None, user_id).await?;
    tx.commit().await?;
    let affected = if disabled {
        Affected::User(user_id.to_owned())
    } else {
        Affected::Nobody
    };
    Ok((view, affected))
}

/// Sets a temporary password (the given one, or one made up here), which the next login
/// must replace; the user's sessions end, since whoever had the old password may hold one.
pub async fn reset_password(
    pool: &Pool,
    key: &AuditKey,
    actor: &Actor,
    user_id: &str,
    temporary: Option<String>,
    now: i64,
) -> Result<(String, Affected), AccountError> {
    let scope = actor.scope(pool).await?;
    // Out of scope is "no such user" before a word is said about the password.
    let user = user_in_scope(&mut *pool.acquire().await?, &scope, user_id).await?;
    if user.cleared {
        actor.may_touch_clearance()?;
    }
    let password = match temporary {
        Some(password) => {
            units::check_password(&password, &[&user.username])?;
            password
        }
        None => made_up_password(),
    };
    let hash = units::hash_off_thread(&password).await?;
    let mut tx = begin_write(pool).await?;
    user_in_scope(&mut tx, &scope, user_id).await?;
    sqlx::query("UPDATE users SET password_hash = $1, must_change_password = 1 WHERE id = $2")
        .bind(&hash)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    end_sessions(&mut tx, user_id, false).await?;
    let entry = actor.entry(
        "user.reset_password",
        serde_json::json!({ "user_id": user_id }),
    );
    audit::append(&mut tx, key, &[entry], now).await?;
    tx.commit().await?;
    Ok((password, Affected::User(user_id.to_owned())))
}

/// 20 characters from an alphabet without look-alikes (about 100 bits): read out over a
/// phone without mistakes, and used once.
fn made_up_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let chars: String = (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    // Groups of five, as on a licence key.
    chars
        .as_bytes()
        .chunks(5)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// Ends every session of the user's devices (their refresh tokens), and with `alerts_too`
/// their push subscriptions: a disabled user is paged no more.
async fn end_sessions(
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
    alerts_too: bool,
) -> Result<(), sqlx::Error> {
    let devices: Vec<String> = sqlx::query_scalar("SELECT id FROM devices WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
    for device_id in devices {
        sqlx::query("DELETE FROM refresh_tokens WHERE device_id = $1")
            .bind(&device_id)
            .execute(&mut *tx)
            .await?;
        if alerts_too {
            crate::push::subscriptions::remove_device(tx, &device_id).await?;
        }
    }
    Ok(())
}

/// Creates a unit with its two catalogs; they commit with the audit row. Returns its id.
pub async fn create_unit_as(
    pool: &Pool,
    (catalog, key): (&CatalogKey, &AuditKey),
    actor: &Actor,
    name: &str,
    parent: Option<&str>,
    now: i64,
) -> Result<String, AccountError> {
    let mut tx = begin_write(pool).await?;
    let id = units::insert_unit(&mut tx, name, parent, now).await?;
    crate::catalog::create(&mut tx, catalog, &id, now).await?;
    let entry = actor.entry(
        "admin.create_unit",
        serde_json::json!({"unit_id": id, "name": name.trim(), "parent": parent}),
    );
    audit::append(&mut tx, key, &[entry], now).await?;
    tx.commit().await?;
    Ok(id)
}

/// [`create_unit_as`] by the operator running this process (the admin command, tests).
pub async fn create_unit(
    pool: &Pool,
    keys: &crate::keys::Keys,
    name: &str,
    parent: Option<&str>,
    now: i64,
) -> Result<String, AccountError> {
    let actor = Actor::Operator(OsUser::current());
    create_unit_as(
        pool,
        (&keys.catalog, &keys.audit),
        &actor,
        name,
        parent,
        now,
    )
    .await
}

/// [`create_user_as`] by the operator running this process, with a password that is the
/// user's own.
pub async fn create_user(
    pool: &Pool,
    keys: &crate::keys::Keys,
    user: NewUser<'_>,
    now: i64,
) -> Result<String, AccountError> {
    let actor = Actor::Operator(OsUser::current());
    let view = create_user_as(pool, &keys.audit, &actor, user, false, now).await?;
    Ok(view.id.0)
}

/// Creates a unit below `parent` (the operator alone may create a top unit), or moves the
/// unit `id` below `parent`. An admin moves neither their own unit (that would change what
/// they manage) nor a unit below itself. Moving changes what the offices above see: their
/// people's sockets close, to reopen with the new tree.
pub async fn save_unit(
    pool: &Pool,
    keys: (&CatalogKey, &AuditKey),
    actor: &Actor,
    request: &UnitRequest,
    now: i64,
) -> Result<(String, Affected), AccountError> {
    let scope = actor.scope(pool).await?;
    let parent = request.parent_id.as_str();
    if !allowed(&scope, parent) {
        return Err(AccountError::NotFound("unit"));
    }
    let Some(id) = &request.id else {
        let name = request
            .name
            .as_deref()
            .ok_or(UnitError::Invalid("a new unit needs a name"))?;
        let id = create_unit_as(pool, keys, actor, name, Some(parent), now).await?;
        return Ok((id, Affected::Nobody));
    };
    let id = id.as_str();
    if !allowed(&scope, id) {
        return Err(AccountError::NotFound("unit"));
    }
    if let Actor::Admin(identity) = actor
        && identity.unit_id == id
    {
        return Err(AccountError::Refused("an admin cannot move their own unit"));
    }
    let mut tx = begin_write(pool).await?;
    let old_parent: Option<Option<String>> =
        sqlx::query_scalar("SELECT parent_id FROM units WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let old_parent = old_parent.ok_or(AccountError::NotFound("unit"))?;
    let subtree = visible_units(&mut *tx, id).await?;
    if subtree.contains(parent) {
        return Err(UnitError::Invalid("a unit cannot move below itself").into());
    }
    if let Some(name) = &request.name {
        units::check_unit_name(name)?;
    }
    sqlx::query("UPDATE units SET parent_id = $1, name = COALESCE($2, name) WHERE id = $3")
        .bind(parent)
        .bind(request.name.as_deref().map(str::trim))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let mut affected: HashSet<String> = units_above(&mut *tx, parent).await?.into_iter().collect();
    if let Some(old_parent) = &old_parent {
        affected.extend(units_above(&mut *tx, old_parent).await?);
    }
    let entry = actor.entry(
        "unit.move",
        serde_json::json!({"unit_id": id, "from": old_parent, "to": parent, "name": request.name}),
    );
    audit::append(&mut tx, keys.1, &[entry], now).await?;
    tx.commit().await?;
    Ok((id.to_owned(), Affected::Units(affected)))
}

// ---- routes ----------------------------------------------------------------------------

/// Users of the admin's unit and the units below it.
#[utoipa::path(get, path = "/api/users", tag = "accounts",
    responses((status = 200, body = Vec<UserView>), (status = 403, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Json<Vec<UserView>>, AppError> {
    let actor = admin(identity)?;
    Ok(Json(list_users(&state.pool, &actor).await?))
}

/// Creates a user with a temporary password, replaced at their first login.
#[utoipa::path(post, path = "/api/users", tag = "accounts", request_body = NewUserRequest,
    responses((status = 201, body = UserView), (status = 400, body = zhiban_api::ErrorBody),
        (status = 403, body = zhiban_api::ErrorBody), (status = 409, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(by = %identity.user_id))]
pub(crate) async fn create(
    State(state): State<AppState>,
    identity: Identity,
    ApiJson(request): ApiJson<NewUserRequest>,
) -> Result<(StatusCode, Json<UserView>), AppError> {
    let actor = admin(identity)?;
    let user = NewUser {
        username: &request.username,
        display_name: request.display_name.as_deref(),
        password: &request.password,
        unit_id: request.unit_id.as_str(),
        role: request.role,
        cleared: request.cleared,
    };
    let now = state.clock.now_ms();
    let view = create_user_as(&state.pool, &state.audit_key, &actor, user, true, now).await?;
    tracing::info!(user_id = %view.id, "user created");
    Ok((StatusCode::CREATED, Json(view)))
}

/// Changes a user's display name, role, unit or clearance.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "accounts", request_body = UserPatch,
    params(("id" = String, Path)),
    responses((status = 200, body = UserView), (status = 400, body = zhiban_api::ErrorBody),
        (status = 403, body = zhiban_api::ErrorBody), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %user_id, by = %identity.user_id))]
pub(crate) async fn update(
    State(state): State<AppState>,
    identity: Identity,
    Path(user_id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<UserView>, AppError> {
    let actor = admin(identity)?;
    let now = state.clock.now_ms();
    let (view, affected) =
        update_user(&state.pool, &state.audit_key, &actor, &user_id, &patch, now).await?;
    let closed = affected.disconnect(&state);
    tracing::info!(closed_sockets = closed, "user updated");
    Ok(Json(view))
}

#[utoipa::path(post, path = "/api/users/{id}/disable", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 200, body = UserView), (status = 403, body = zhiban_api::ErrorBody),
        (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn disable(
    state: State<AppState>,
    identity: Identity,
    user_id: Path<String>,
) -> Result<Json<UserView>, AppError> {
    switch(state, identity, user_id, true).await
}

#[utoipa::path(post, path = "/api/users/{id}/enable", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 200, body = UserView), (status = 403, body = zhiban_api::ErrorBody),
        (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn enable(
    state: State<AppState>,
    identity: Identity,
    user_id: Path<String>,
) -> Result<Json<UserView>, AppError> {
    switch(state, identity, user_id, false).await
}

#[tracing::instrument(skip_all, fields(user_id = %user_id, by = %identity.user_id, disabled))]
async fn switch(
    State(state): State<AppState>,
    identity: Identity,
    Path(user_id): Path<String>,
    disabled: bool,
) -> Result<Json<UserView>, AppError> {
    let actor = admin(identity)?;
    let now = state.clock.now_ms();
    let (view, affected) = set_disabled(
        &state.pool,
        &state.audit_key,
        &actor,
        &user_id,
        disabled,
        now,
    )
    .await?;
    let closed = affected.disconnect(&state);
    tracing::warn!(closed_sockets = closed, "user disabled or enabled");
    Ok(Json(view))
}

/// Sets a temporary password; the user's sessions end and their next login sets their own.
#[utoipa::path(post, path = "/api/users/{id}/reset-password", tag = "accounts",
    request_body = PasswordReset, params(("id" = String, Path)),
    responses((status = 200, body = PasswordResetDone), (status = 400, body = zhiban_api::ErrorBody),
        (status = 403, body = zhiban_api::ErrorBody), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %user_id, by = %identity.user_id))]
pub(crate) async fn reset(
    State(state): State<AppState>,
    identity: Identity,
    Path(user_id): Path<String>,
    ApiJson(request): ApiJson<PasswordReset>,
) -> Result<Json<PasswordResetDone>, AppError> {
    let actor = admin(identity)?;
    let now = state.clock.now_ms();
    let (temporary_password, affected) = reset_password(
        &state.pool,
        &state.audit_key,
        &actor,
        &user_id,
        request.temporary_password,
        now,
    )
    .await?;
    let closed = affected.disconnect(&state);
    tracing::warn!(closed_sockets = closed, "password reset");
    Ok(Json(PasswordResetDone { temporary_password }))
}

/// Creates a unit below one of the admin's units, or moves one of them.
#[utoipa::path(post, path = "/api/units", tag = "accounts", request_body = UnitRequest,
    responses((status = 200, body = UnitView), (status = 400, body = zhiban_api::ErrorBody),
        (status = 403, body = zhiban_api::ErrorBody), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(by = %identity.user_id))]
pub(crate) async fn save_unit_route(
    State(state): State<AppState>,
    identity: Identity,
    ApiJson(request): ApiJson<UnitRequest>,
) -> Result<Json<UnitView>, AppError> {
    let cleared = identity.cleared;
    let actor = admin(identity)?;
    let now = state.clock.now_ms();
    let (id, affected) = save_unit(
        &state.pool,
        (&state.catalog_key, &state.audit_key),
        &actor,
        &request,
        now,
    )
    .await?;
    let closed = affected.disconnect(&state);
    tracing::info!(unit_id = %id, closed_sockets = closed, "unit saved");
    let unit = units::list_units(&state.pool)
        .await?
        .into_iter()
        .find(|unit| unit.id == id)
        .ok_or(AppError::NotFound("no such unit"))?;
    Ok(Json(UnitView {
        catalog: state.catalog_key.id(&unit.id, false),
        classified_catalog: cleared.then(|| state.catalog_key.id(&unit.id, true)),
        id: unit.id.into(),
        name: unit.name,
        parent_id: unit.parent_id.map(Into::into),
    }))
}
