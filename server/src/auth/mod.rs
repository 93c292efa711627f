//! Who is calling: password login, short-lived access tokens (JWT), refresh tokens bound to a
//! registered device, and device revocation for a lost phone (D24). The sync socket and every
//! API route identify their caller as an `access::Identity` through [`identify`]. Every
//! action commits with its audit row.

pub mod throttle;

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use zhiban_api::{DeviceView, LoginRequest, LogoutRequest, Me, RefreshRequest, TokenResponse};
use zhiban_protocol::PeerId;

use crate::AppState;
use crate::access::{Identity, Role, visible_units};
use crate::audit::{self, Entry};
use crate::db::begin_write;
use crate::error::{ApiJson, AppError};
use crate::listener::ClientAddress;
use crate::units::hash_password;

const AUDIENCE: &str = "zhiban";
const ISSUER: &str = "zhiban";
/// Sync tickets are for `/sync` only: the REST API checks for [`AUDIENCE`] and refuses them.
const SYNC_AUDIENCE: &str = "zhiban-sync";
/// Long enough to open a socket over a slow network; short enough that a ticket found in a
/// proxy's log has expired.
const TICKET_TTL_SECS: u64 = 120;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/devices", get(list_devices))
        .route("/api/devices/{id}/revoke", post(revoke_device))
        .route("/api/sync/ticket", post(sync_ticket))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing access token")]
    Missing,
    #[error("invalid access token")]
    Invalid,
    #[error("access token expired")]
    Expired,
    #[error("device revoked")]
    Revoked,
    #[error("account disabled")]
    Disabled,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<AuthError> for AppError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => AppError::Unauthorized("missing access token"),
            AuthError::Invalid => AppError::Unauthorized("invalid access token"),
            AuthError::Expired => AppError::Unauthorized("access token expired"),
            AuthError::Revoked => AppError::Unauthorized("device revoked"),
            AuthError::Disabled => AppError::Unauthorized("account disabled"),
            AuthError::Database(e) => e.into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    dev: String,
    aud: String,
    iss: String,
    iat: i64,
    exp: i64,
}

/// Signs and checks access tokens and sync tickets: HS256 with the key every node reads
/// from its key file (`keys`).
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ticket_validation: Validation,
    access_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 5;
        let mut ticket_validation = validation.clone();
        ticket_validation.set_audience(&[SYNC_AUDIENCE]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ticket_validation,
            access_ttl,
        }
    }

    /// An access token for the REST API.
    pub fn issue(&self, user_id: &str, device_id: &str) -> Result<String, AppError> {
        self.sign(user_id, device_id, AUDIENCE, self.access_ttl.as_secs())
    }

    fn sign(
        &self,
        user_id: &str,
        device_id: &str,
        audience: &str,
        ttl_secs: u64,
    ) -> Result<String, AppError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            dev: device_id.to_owned(),
            aud: audience.to_owned(),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(e.into()))
    }

    /// Checks signature, audience, issuer and expiry.
    fn verify(&self, token: &str, validation: &Validation) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            },
        )?;
        Ok(data.claims)
    }
}

/// Verifies the access token, then checks the database: a revoked device or a disabled
/// account is refused even while its access token has not yet expired.
pub async fn identify(state: &AppState, token: &str) -> Result<Identity, AuthError> {
    let claims = state.keys.verify(token, &state.keys.validation)?;
    load_identity(state, &claims.sub, &claims.dev).await
}

/// Who opens `/sync` with `credential` (a sync ticket, or else an access token from a
/// header), and until when (ms) that credential holds: then the socket is checked again.
pub async fn identify_sync(
    state: &AppState,
    credential: SyncCredential<'_>,
) -> Result<(Identity, i64), AuthError> {
    let claims = match credential {
        SyncCredential::Ticket(ticket) => {
            state.keys.verify(ticket, &state.keys.ticket_validation)?
        }
        SyncCredential::AccessToken(token) => state.keys.verify(token, &state.keys.validation)?,
    };
    let identity = load_identity(state, &claims.sub, &claims.dev).await?;
    Ok((identity, claims.exp.saturating_mul(1000)))
}

/// How a socket proves who opens it.
pub enum SyncCredential<'a> {
    /// `?ticket=` from `POST /api/sync/ticket`: browsers cannot set headers on websockets.
    Ticket(&'a str),
    /// `Authorization: Bearer`, for clients that can set headers (never in a URL).
    AccessToken(&'a str),
}

/// The user and device as they stand now in the database.
pub async fn load_identity(
    state: &AppState,
    user_id: &str,
    device_id: &str,
) -> Result<Identity, AuthError> {
    let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
    let row = sqlx::query(
        "SELECT u.unit_id, u.role, u.cleared, u.disabled_at, d.revoked_at FROM users u \
         JOIN devices d ON d.user_id = u.id WHERE u.id = $1 AND d.id = $2",
    )
    .bind(&user_id)
    .bind(&device_id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(AuthError::Invalid)?;
    if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
        return Err(AuthError::Revoked);
    }
    if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
        return Err(AuthError::Disabled);
    }
    let role: String = row.try_get("role")?;
    Ok(Identity {
        user_id,
        device_id,
        unit_id: row.try_get("unit_id")?,
        role: role.parse().map_err(|_| AuthError::Invalid)?,
        cleared: row.try_get::<i64, _>("cleared")? != 0,
    })
}

impl FromRequestParts<AppState> for Identity {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(AuthError::Missing)?;
        Ok(identify(state, token).await?)
    }
}

/// A hash verified when the username is unknown, so that the answer takes as long as for a
/// wrong password and does not reveal which usernames exist.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("not a password").unwrap_or_default());

fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Logs a device in with a username and password; registers the device unless it names one
/// registered before.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = zhiban_api::ErrorBody),
        (status = 403, body = zhiban_api::ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %request.username))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, AppError> {
    // No user has a longer name (units::NewUser), and no password check is spent on one.
    if request.username.chars().count() > 64
        || request.password.len() > 1024
        || request
            .new_password
            .as_ref()
            .is_some_and(|new| new.len() > 1024)
    {
        return Err(AppError::BadRequest(
            "a username has at most 64 characters and a password at most 1024 bytes".into(),
        ));
    }
    if let Some(wait) = state.logins.locked(&request.username, address) {
        let secs = wait.as_secs().saturating_add(1);
        return Err(AppError::TooManyRequests(
            format!("too many failed logins: try again in {secs} s"),
            secs,
        ));
    }
    let Some(check) = state.logins.check().await else {
        return Err(AppError::TooManyRequests(
            "the server is busy checking passwords: try again in a second".into(),
            1,
        ));
    };
    let row = sqlx::query(
        "SELECT id, password_hash, disabled_at, must_change_password FROM users \
         WHERE username = $1",
    )
    .bind(&request.username)
    .fetch_optional(&state.pool)
    .await?;
    let (user_id, hash) = match &row {
        Some(row) => (
            Some(row.try_get::<String, _>("id")?),
            row.try_get::<String, _>("password_hash")?,
        ),
        None => (None, DUMMY_HASH.clone()),
    };
    let password = request.password.clone();
    let password_ok = tokio::task::spawn_blocking(move || check.verify(&password, &hash))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let now = state.clock.now_ms();
    let Some(user_id) = user_id.filter(|_| password_ok) else {
        let mut entries = vec![
            Entry::new("auth.login_failed")
                .detail(serde_json::json!({ "username": request.username, "address": address })),
        ];
        for lockout in state.logins.failed(&request.username, address) {
            tracing::warn!(of = %lockout.of, secs = lockout.secs, "login lockout");
            entries.push(
                Entry::new("auth.lockout")
                    .detail(serde_json::json!({ "of": lockout.of, "secs": lockout.secs })),
            );
        }
        audit::record(&state.pool, &state.audit_key, &entries, now).await?;
        return Err(AppError::Unauthorized("wrong username or password"));
    };
    state.logins.succeeded(&request.username);
    // Told only to who knows the password: the account's state is nobody else's business.
    if let Some(row) = &row {
        if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
            let entry = Entry::new("auth.login_disabled").by(&user_id, None);
            audit::record(&state.pool, &state.audit_key, &[entry], now).await?;
            return Err(AppError::Forbidden("this account is disabled"));
        }
        let must_change = row.try_get::<i64, _>("must_change_password")? != 0;
        match &request.new_password {
            Some(new_password) => {
                change_password(
                    &state,
                    (&user_id, &request.username),
                    &request.password,
                    new_password,
                    now,
                )
                .await?;
            }
            None if must_change => {
                return Err(AppError::Rejected(
                    StatusCode::PRECONDITION_REQUIRED,
                    "this password was set by an admin: log in with a new password of your own \
                     (new_password)"
                        .into(),
                ));
            }
            None => {}
        }
    }

    let mut tx = begin_write(&state.pool).await?;
    let device_id = match request.device_id {
        Some(device_id) => {
            let revoked: Option<Option<i64>> =
                sqlx::query_scalar("SELECT revoked_at FROM devices WHERE id = $1 AND user_id = $2")
                    .bind(device_id.as_str())
                    .bind(&user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match revoked {
                None => return Err(AppError::NotFound("no such device for this user")),
                Some(Some(_)) => return Err(AppError::Forbidden("device revoked")),
                Some(None) => device_id.0,
            }
        }
        None => {
            let device_id = uuid::Uuid::now_v7().to_string();
            let name = request
                .device_name
                .unwrap_or_else(|| "unnamed device".into());
            if name.len() > 200 {
                return Err(AppError::BadRequest("device_name is too long".into()));
            }
            sqlx::query(
                "INSERT INTO devices (id, user_id, name, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&device_id)
            .bind(&user_id)
            .bind(&name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            device_id
        }
    };
    let response = issue_tokens(
        &state,
        &mut tx,
        (&user_id, &device_id),
        now,
        request.device_time,
        "auth.login",
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%user_id, %device_id, "logged in");
    Ok(Json(response))
}

/// Replaces the user's password with their own new one, audited; the old one (an admin's
/// temporary one, or simply the previous) no longer works.
async fn change_password(
    state: &AppState,
    (user_id, username): (&str, &str),
    old_password: &str,
    new_password: &str,
    now: i64,
) -> Result<(), AppError> {
    if new_password == old_password {
        return Err(AppError::BadRequest(
            "the new password must differ from the old one".into(),
        ));
    }
    crate::units::check_password(new_password, &[username])
        .map_err(|error| AppError::BadRequest(error.to_string()))?;
    let hash = crate::units::hash_off_thread(new_password)
        .await
        .map_err(|error| AppError::Internal(error.into()))?;
    let mut tx = begin_write(&state.pool).await?;
    sqlx::query("UPDATE users SET password_hash = $1, must_change_password = 0 WHERE id = $2")
        .bind(&hash)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let entry = Entry::new("auth.password_change").by(user_id, None);
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    Ok(())
}

/// How soon after a refresh token was spent it may come again as a retry (the answer lost on
/// the way back), refused without revoking anything.
const REFRESH_RETRY_MS: i64 = 10_000;

/// A device's clock this far off the server's is told so and flagged: the times it writes
/// into records (when a matter became known, when it was reported) are doubtful (D11).
const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// New tokens for the device, audited as `action`; `device_time` (the device's clock, when it
/// sent its request) is compared with the server's, and the device flagged (or cleared).
async fn issue_tokens(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    (user_id, device_id): (&str, &str),
    now: i64,
    device_time: Option<i64>,
    action: &'static str,
) -> Result<TokenResponse, AppError> {
    let skew = device_time
        .map(|at| at.saturating_sub(now))
        .filter(|skew| skew.unsigned_abs() > MAX_CLOCK_SKEW_MS);
    if device_time.is_some() {
        sqlx::query("UPDATE devices SET clock_skew_ms = $1 WHERE id = $2")
            .bind(skew)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
    }
    let mut entries = vec![Entry::new(action).by(user_id, Some(device_id))];
    if let Some(skew) = skew {
        tracing::warn!(%user_id, %device_id, skew_ms = skew, "device clock is off");
        entries.push(
            Entry::new("device.clock_skew")
                .by(user_id, Some(device_id))
                .detail(serde_json::json!({ "skew_ms": skew })),
        );
    }
    audit::append(&mut *tx, &state.audit_key, &entries, now).await?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let refresh_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let ttl = i64::try_from(state.settings.refresh_token_ttl().as_millis()).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, device_id, expires_at, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(hash_refresh_token(&refresh_token))
    .bind(device_id)
    .bind(now.saturating_add(ttl))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(TokenResponse {
        access_token: state.keys.issue(user_id, device_id)?,
        refresh_token,
        expires_in: state.settings.access_token_ttl_secs,
        user_id: user_id.into(),
        device_id: device_id.into(),
        peer_id: PeerId::for_device(user_id, device_id).to_string(),
        clock_skew_ms: skew,
    })
}

/// Trades a refresh token for a new pair; the old refresh token is spent (rotation), so a
/// stolen copy works at most once and the theft shows as a failed refresh on the phone.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = zhiban_api::ErrorBody)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, AppError> {
    let token_hash = hash_refresh_token(&request.refresh_token);
    let now = state.clock.now_ms();
    let mut tx = begin_write(&state.pool).await?;
    let row = sqlx::query(
        "SELECT r.device_id, r.expires_at, r.spent_at, d.user_id, d.revoked_at, u.disabled_at \
         FROM refresh_tokens r JOIN devices d ON d.id = r.device_id \
         JOIN users u ON u.id = d.user_id WHERE r.token_hash = $1",
    )
    .bind(&token_hash)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::Unauthorized("invalid refresh token"))?;
    let device_id: String = row.try_get("device_id")?;
    let user_id: String = row.try_get("user_id")?;
    if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
        return Err(AppError::Unauthorized("device revoked"));
    }
    if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
        return Err(AppError::Unauthorized("account disabled"));
    }
    if row.try_get::<i64, _>("expires_at")? < now {
        return Err(AppError::Unauthorized("refresh token expired"));
    }
    if let Some(spent_at) = row.try_get::<Option<i64>, _>("spent_at")? {
        // A phone whose answer was lost on a bad network asks again at once: that is no
        // theft, but the new tokens went to whoever received the first answer.
        if now.saturating_sub(spent_at) <= REFRESH_RETRY_MS {
            return Err(AppError::Unauthorized("refresh token already used"));
        }
        // Two holders of one token family: the thief's rotated token must die with it.
        revoke(&mut tx, &device_id, now).await?;
        let entry = Entry::new("auth.refresh_reuse")
            .by(&user_id, Some(&device_id))
            .detail(serde_json::json!({ "spent_at": spent_at }));
        audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
        tx.commit().await?;
        let closed = state.connections.disconnect_device(&device_id);
        tracing::warn!(%user_id, %device_id, closed_sockets = closed, "spent refresh token reused; device revoked");
        return Err(AppError::Unauthorized(
            "refresh token reused: this device is revoked",
        ));
    }
    let spent = sqlx::query(
        "UPDATE refresh_tokens SET spent_at = $1 WHERE token_hash = $2 AND spent_at IS NULL",
    )
    .bind(now)
    .bind(&token_hash)
    .execute(&mut *tx)
    .await?;
    if spent.rows_affected() != 1 {
        return Err(AppError::Unauthorized("invalid refresh token"));
    }
    // Spent tokens are kept to catch their reuse, until they would have expired anyway.
    sqlx::query("DELETE FROM refresh_tokens WHERE device_id = $1 AND expires_at < $2")
        .bind(&device_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let response = issue_tokens(
        &state,
        &mut tx,
        (&user_id, &device_id),
        now,
        request.device_time,
        "auth.refresh",
    )
    .await?;
    tx.commit().await?;
    Ok(Json(response))
}

/// Ends a device's session (a shared tablet changing hands): its refresh token is spent, so
/// only a new login continues; the device itself stays registered. Answers 204 for a token
/// it does not know too, so that a logout can be repeated.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = LogoutRequest,
    responses((status = 204)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LogoutRequest>,
) -> Result<axum::http::StatusCode, AppError> {
    let token_hash = hash_refresh_token(&request.refresh_token);
    let now = state.clock.now_ms();
    let mut tx = begin_write(&state.pool).await?;
    let owner = sqlx::query(
        "SELECT d.id, d.user_id FROM refresh_tokens r JOIN devices d ON d.id = r.device_id \
         WHERE r.token_hash = $1 AND r.spent_at IS NULL",
    )
    .bind(&token_hash)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(owner) = owner {
        let (device_id, user_id): (String, String) =
            (owner.try_get("id")?, owner.try_get("user_id")?);
        sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = $1")
            .bind(&token_hash)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            &state.audit_key,
            &[Entry::new("auth.logout").by(&user_id, Some(&device_id))],
            now,
        )
        .await?;
        tracing::info!(%user_id, %device_id, "logged out");
    }
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A ticket that opens this device's `/sync?ticket=…` for the next two minutes, and nothing
/// else: the URL of a websocket ends up in proxies' logs, an access token must not.
#[utoipa::path(post, path = "/api/sync/ticket", tag = "auth",
    responses((status = 200, body = zhiban_api::SyncTicket), (status = 401, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn sync_ticket(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Json<zhiban_api::SyncTicket>, AppError> {
    // Never longer than an access token: the socket is first re-checked when it expires.
    let ttl = TICKET_TTL_SECS.min(state.settings.access_token_ttl_secs.max(1));
    let ticket = state
        .keys
        .sign(&identity.user_id, &identity.device_id, SYNC_AUDIENCE, ttl)?;
    Ok(Json(zhiban_api::SyncTicket {
        ticket,
        expires_in: ttl,
    }))
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn me(identity: Identity) -> Json<Me> {
    Json(Me {
        peer_id: identity.peer_id().to_string(),
        user_id: identity.user_id.into(),
        device_id: identity.device_id.into(),
        unit_id: identity.unit_id.into(),
        role: identity.role,
        cleared: identity.cleared,
    })
}

/// The caller's devices, revoked ones included.
#[utoipa::path(get, path = "/api/devices", tag = "auth",
    responses((status = 200, body = Vec<DeviceView>)), security(("bearer" = [])))]
pub(crate) async fn list_devices(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Json<Vec<DeviceView>>, AppError> {
    let rows = sqlx::query(
        "SELECT id, name, created_at, revoked_at, clock_skew_ms FROM devices WHERE user_id = $1 \
         ORDER BY id",
    )
    .bind(&identity.user_id)
    .fetch_all(&state.pool)
    .await?;
    let devices = rows
        .iter()
        .map(|row| {
            Ok(DeviceView {
                id: row.try_get::<String, _>("id")?.into(),
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
                clock_skew_ms: row.try_get("clock_skew_ms")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(devices))
}

/// Cuts off a device: its refresh tokens are deleted, its access tokens stop being accepted,
/// and its open sync sockets are closed. Allowed to the device's owner and to an admin of the
/// owner's unit or of a superior unit.
#[utoipa::path(post, path = "/api/devices/{id}/revoke", tag = "auth", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(device_id = %device_id, by = %identity.user_id))]
pub(crate) async fn revoke_device(
    State(state): State<AppState>,
    identity: Identity,
    Path(device_id): Path<String>,
) -> Result<StatusCode, AppError> {
    let row = sqlx::query(
        "SELECT d.user_id, u.unit_id FROM devices d JOIN users u ON u.id = d.user_id \
         WHERE d.id = $1",
    )
    .bind(&device_id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(AppError::NotFound("no such device"))?;
    let owner: String = row.try_get("user_id")?;
    let owner_unit: String = row.try_get("unit_id")?;
    let allowed = owner == identity.user_id
        || (identity.role == Role::Admin
            && visible_units(&state.pool, &identity.unit_id)
                .await?
                .contains(&owner_unit));
    if !allowed {
        // Not 403: a device of another unit is none of the caller's business.
        return Err(AppError::NotFound("no such device"));
    }
    let now = state.clock.now_ms();
    let mut tx = begin_write(&state.pool).await?;
    revoke(&mut tx, &device_id, now).await?;
    let entry = Entry::new("device.revoke")
        .by(&identity.user_id, Some(&identity.device_id))
        .detail(serde_json::json!({ "device_id": device_id, "owner": owner }));
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    let closed = state.connections.disconnect_device(&device_id);
    tracing::warn!(closed_sockets = closed, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a device in the caller's transaction: no refresh token of it works again, and its
/// push subscriptions go. The caller closes its sockets after the commit.
async fn revoke(
    tx: &mut sqlx::AnyConnection,
    device_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE device_id = $1")
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
    // A lost phone must not keep receiving alerts (D24), nor have them queued for it.
    crate::push::subscriptions::remove_device(tx, device_id).await
}
