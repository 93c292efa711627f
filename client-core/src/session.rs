//! The device's session with the server: login, tokens kept in the local store and refreshed
//! before they expire, and revocation (a revoked device stops syncing but keeps its data
//! readable).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use zhiban_api::{
    ErrorBody, LoginRequest, LogoutRequest, Me, RefreshRequest, Role, TokenResponse, UnitView,
};

use zhiban_protocol::DocumentId;

use crate::Error;
use crate::store::Store;
use crate::tls::{self, Transport};

/// Who the device is logged in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub server_url: String,
    /// The user's id on the server.
    pub user_id: String,
    /// This device's id on the server (kept across logins).
    pub device_id: String,
    /// The peer id this device uses on `/sync`.
    pub peer_id: String,
    /// The user's unit.
    pub unit_id: String,
    /// The user's role in their unit.
    pub role: Role,
    /// Cleared for classified items (D18).
    pub cleared: bool,
    /// The user's unit and the units below it.
    pub units: Vec<String>,
    /// Their catalogs (the classified ones if the user is cleared), which the device follows
    /// to learn of new records. Their ids are the server's to give, not derivable.
    #[serde(default)]
    pub catalogs: Vec<DocumentId>,
}

/// Whether the device may sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// No session: log in.
    LoggedOut,
    /// Logged in with tokens that can be refreshed.
    Active,
    /// The server revoked this device (a lost phone, D24). Local data stays readable.
    Revoked,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
    /// Milliseconds since the epoch.
    access_expires_at: i64,
}

#[derive(Default)]
struct Data {
    identity: Option<Identity>,
    tokens: Option<Tokens>,
    revoked: bool,
}

pub(crate) struct Session {
    store: Store,
    /// Replaced when a login brings a CA to trust.
    transport: std::sync::RwLock<Transport>,
    data: Mutex<Data>,
}

/// Refresh this long before the access token expires.
const REFRESH_MARGIN_MS: i64 = 60_000;

impl Session {
    pub async fn load(store: Store) -> Result<Session, Error> {
        let identity = match store.setting("identity").await? {
            Some(text) => serde_json::from_str(&text).ok(),
            None => None,
        };
        let tokens = match store.setting("tokens").await? {
            Some(text) => serde_json::from_str(&text).ok(),
            None => None,
        };
        let revoked = store.setting("revoked").await?.is_some();
        let ca = store.setting(tls::CA_SETTING).await?;
        let transport = match Transport::new(ca.as_deref().map(str::as_bytes)) {
            Ok(transport) => transport,
            // Checked at login, so only a damaged store gets here: the device must still
            // open (its data is readable offline); servers under public CAs still work.
            Err(error) => {
                tracing::warn!(%error, "the CA kept on this device is unusable; ignored");
                Transport::new(None)?
            }
        };
        Ok(Session {
            store,
            transport: std::sync::RwLock::new(transport),
            data: Mutex::new(Data {
                identity,
                tokens,
                revoked,
            }),
        })
    }

    pub async fn identity(&self) -> Option<Identity> {
        self.data.lock().await.identity.clone()
    }

    pub async fn state(&self) -> SessionState {
        let data = self.data.lock().await;
        if data.revoked {
            SessionState::Revoked
        } else if data.tokens.is_some() {
            SessionState::Active
        } else {
            SessionState::LoggedOut
        }
    }

    /// What the HTTP API and `/sync` connect with.
    pub fn transport(&self) -> Transport {
        self.transport.read().expect("transport lock").clone()
    }

    /// Logs in; with `ca_pem`, over a transport that also trusts that CA, which is kept
    /// (store and memory) only if the login succeeds, so a wrong file changes nothing.
    pub async fn login(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
        device_name: &str,
        options: &crate::LoginOptions,
    ) -> Result<Identity, Error> {
        let ca_pem = options.ca_pem.as_deref();
        let transport = match ca_pem {
            Some(pem) => Transport::new(Some(pem))?,
            None => self.transport(),
        };
        let http = &transport.http;
        let server_url = server_url.trim_end_matches('/').to_owned();
        // The same device keeps its id across logins, so its sync state and peer id stay.
        let device_id = self.store.setting("device_id").await?;
        let mut body = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device_id: device_id.map(Into::into),
            device_name: Some(device_name.to_owned()),
            device_time: Some(crate::now_ms()),
            new_password: options.new_password.clone(),
        };
        let mut response = post(http, &server_url, "/api/auth/login", &body).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND && body.device_id.is_some() {
            // Another user on this device: it registers as a new device for them.
            body.device_id = None;
            response = post(http, &server_url, "/api/auth/login", &body).await?;
        }
        let tokens: TokenResponse = match response.status() {
            s if s.is_success() => response.json().await.map_err(network)?,
            reqwest::StatusCode::PRECONDITION_REQUIRED => {
                return Err(Error::PasswordChangeRequired);
            }
            // A revoked device; a disabled account is the user's business, not the device's.
            reqwest::StatusCode::FORBIDDEN => {
                let text = error_text(response).await;
                return Err(if text.contains("revoked") {
                    Error::Revoked
                } else {
                    Error::Refused(text)
                });
            }
            _ => return Err(Error::Refused(error_text(response).await)),
        };
        self.note_clock(tokens.clock_skew_ms).await?;
        let me: Me = get_json(http, &server_url, "/api/me", &tokens.access_token).await?;
        let units: Vec<UnitView> =
            get_json(http, &server_url, "/api/units", &tokens.access_token).await?;
        let identity = Identity {
            server_url,
            user_id: tokens.user_id.0,
            device_id: tokens.device_id.0,
            peer_id: tokens.peer_id,
            unit_id: me.unit_id.0,
            role: me.role,
            cleared: me.cleared,
            catalogs: catalogs(&units),
            units: units.into_iter().map(|unit| unit.id.0).collect(),
        };
        let stored = Tokens {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            access_expires_at: expires_at(tokens.expires_in),
        };
        self.store
            .set_setting("device_id", &identity.device_id)
            .await?;
        self.save(&identity, &stored).await?;
        self.store.delete_setting("revoked").await?;
        if let Some(pem) = ca_pem {
            // `Transport::new` parsed it as PEM, which is text.
            let pem = String::from_utf8_lossy(pem);
            self.store.set_setting(tls::CA_SETTING, &pem).await?;
            *self.transport.write().expect("transport lock") = transport;
        }
        let mut data = self.data.lock().await;
        data.identity = Some(identity.clone());
        data.tokens = Some(stored);
        data.revoked = false;
        Ok(identity)
    }

    /// Forgets the session: identity and tokens leave the store and memory (the device id
    /// stays, so the same user logging in again keeps their device).
    pub async fn logout(&self) -> Result<(), Error> {
        let mut data = self.data.lock().await;
        // The server spends the refresh token when it can be told; offline, the token is
        // forgotten here all the same and lapses on the server.
        if let (Some(identity), Some(tokens)) = (&data.identity, &data.tokens) {
            let body = LogoutRequest {
                refresh_token: tokens.refresh_token.clone(),
            };
            if let Err(error) = post(
                &self.transport().http,
                &identity.server_url,
                "/api/auth/logout",
                &body,
            )
            .await
            {
                tracing::info!(%error, "the server could not be told of the logout");
            }
        }
        for key in ["identity", "tokens", "clock_skew_ms"] {
            self.store.delete_setting(key).await?;
        }
        data.identity = None;
        data.tokens = None;
        Ok(())
    }

    /// Keeps what the server said of this device's clock at the last login or refresh.
    async fn note_clock(&self, skew_ms: Option<i64>) -> Result<(), Error> {
        match skew_ms {
            Some(skew) => {
                tracing::warn!(skew_ms = skew, "this device's clock is off the server's");
                self.store
                    .set_setting("clock_skew_ms", &skew.to_string())
                    .await
            }
            None => self.store.delete_setting("clock_skew_ms").await,
        }
    }

    /// How far this device's clock is off the server's (device minus server, ms), if the
    /// server said it is more than 5 minutes at the last login or refresh.
    pub async fn clock_skew(&self) -> Result<Option<i64>, Error> {
        Ok(self
            .store
            .setting("clock_skew_ms")
            .await?
            .and_then(|skew| skew.parse().ok()))
    }

    async fn save(&self, identity: &Identity, tokens: &Tokens) -> Result<(), Error> {
        let identity =
            serde_json::to_string(identity).map_err(|e| Error::Storage(e.to_string()))?;
        let tokens = serde_json::to_string(tokens).map_err(|e| Error::Storage(e.to_string()))?;
        self.store.set_setting("identity", &identity).await?;
        self.store.set_setting("tokens", &tokens).await
    }

    /// A valid access token, refreshed first if it is about to expire.
    pub async fn access_token(&self) -> Result<String, Error> {
        {
            let data = self.data.lock().await;
            if data.revoked {
                return Err(Error::Revoked);
            }
            let tokens = data.tokens.as_ref().ok_or(Error::NotLoggedIn)?;
            if tokens.access_expires_at - REFRESH_MARGIN_MS > crate::now_ms() {
                return Ok(tokens.access_token.clone());
            }
        }
        self.refresh().await
    }

    /// Trades the refresh token for new tokens. A revoked device learns it here.
    pub async fn refresh(&self) -> Result<String, Error> {
        let mut data = self.data.lock().await;
        if data.revoked {
            return Err(Error::Revoked);
        }
        let (Some(identity), Some(tokens)) = (data.identity.clone(), data.tokens.clone()) else {
            return Err(Error::NotLoggedIn);
        };
        let body = RefreshRequest {
            refresh_token: tokens.refresh_token,
            device_time: Some(crate::now_ms()),
        };
        let response = post(
            &self.transport().http,
            &identity.server_url,
            "/api/auth/refresh",
            &body,
        )
        .await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            let text = error_text(response).await;
            if text.contains("revoked") {
                data.revoked = true;
                self.store.set_setting("revoked", "1").await?;
                return Err(Error::Revoked);
            }
            data.tokens = None;
            self.store.delete_setting("tokens").await?;
            return Err(Error::NotLoggedIn);
        }
        if !response.status().is_success() {
            return Err(Error::Network(error_text(response).await));
        }
        let renewed: TokenResponse = response.json().await.map_err(network)?;
        let stored = Tokens {
            access_token: renewed.access_token.clone(),
            refresh_token: renewed.refresh_token,
            access_expires_at: expires_at(renewed.expires_in),
        };
        // Saved before use: a crash now must not leave the device with a spent token.
        self.save(&identity, &stored).await?;
        data.tokens = Some(stored);
        self.note_clock(renewed.clock_skew_ms).await?;
        Ok(renewed.access_token)
    }

    /// Asks the server again which units the user sees and their catalogs (units are added,
    /// catalogs re-keyed); keeps what it knew when the server cannot be asked.
    pub async fn refresh_units(&self) -> Result<Identity, Error> {
        let mut identity = self.identity().await.ok_or(Error::NotLoggedIn)?;
        let units: Vec<UnitView> = self.api_get("/api/units").await?;
        identity.catalogs = catalogs(&units);
        identity.units = units.into_iter().map(|unit| unit.id.0).collect();
        let mut data = self.data.lock().await;
        if let Some(tokens) = data.tokens.clone() {
            self.save(&identity, &tokens).await?;
        }
        data.identity = Some(identity.clone());
        Ok(identity)
    }

    /// Called when the server closes the socket as revoked.
    pub async fn mark_revoked(&self) -> Result<(), Error> {
        self.data.lock().await.revoked = true;
        self.store.set_setting("revoked", "1").await
    }

    /// A ticket for one `/sync` connection (`POST /api/sync/ticket`). An access token the
    /// server refuses (clock skew, a new key, revocation) is refreshed once, which also tells
    /// whether the device was revoked.
    pub async fn sync_ticket(&self) -> Result<String, Error> {
        let server_url = self.identity().await.ok_or(Error::NotLoggedIn)?.server_url;
        let ask = |token: String| {
            self.transport()
                .http
                .post(format!("{server_url}/api/sync/ticket"))
                .bearer_auth(token)
                .send()
        };
        let mut response = ask(self.access_token().await?).await.map_err(network)?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            response = ask(self.refresh().await?).await.map_err(network)?;
        }
        let ticket: zhiban_api::SyncTicket = answer(response).await?;
        Ok(ticket.ticket)
    }

    /// GET an API path as the logged-in device (refreshing the token first if needed).
    pub async fn api_get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, Error> {
        let server_url = self.identity().await.ok_or(Error::NotLoggedIn)?.server_url;
        let token = self.access_token().await?;
        get_json(&self.transport().http, &server_url, path_and_query, &token).await
    }

    /// POST `body` to an API path as the logged-in device (refreshing the token first if
    /// needed). An answer without a body (204) reads as `null`: ask for `()` or an `Option`.
    pub async fn api_post<B: Serialize, T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        body: &B,
    ) -> Result<T, Error> {
        let server_url = self.identity().await.ok_or(Error::NotLoggedIn)?.server_url;
        let token = self.access_token().await?;
        let response = self
            .transport()
            .http
            .post(format!("{server_url}{path_and_query}"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(network)?;
        answer(response).await
    }
}

async fn post(
    http: &reqwest::Client,
    server_url: &str,
    path: &str,
    body: &impl Serialize,
) -> Result<reqwest::Response, Error> {
    http.post(format!("{server_url}{path}"))
        .json(body)
        .send()
        .await
        .map_err(network)
}

async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    server_url: &str,
    path: &str,
    token: &str,
) -> Result<T, Error> {
    let response = http
        .get(format!("{server_url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(network)?;
    answer(response).await
}

/// A failed request as the user should read it: a TLS failure says what is wrong with the
/// server's certificate (reqwest's own text names only the URL).
fn network(error: reqwest::Error) -> Error {
    Error::Network(tls::explain(&error).unwrap_or_else(|| error.to_string()))
}

/// A successful answer's body as `T`; a refusal as [`Error::Refused`] with the server's words.
async fn answer<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, Error> {
    if !response.status().is_success() {
        return Err(Error::Refused(error_text(response).await));
    }
    let bytes = response.bytes().await.map_err(network)?;
    // An empty body is no JSON at all; reading it as `null` lets a caller that expects no
    // answer say so in the type instead of with a second method.
    let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
    serde_json::from_slice(body).map_err(|e| Error::Network(e.to_string()))
}

async fn error_text(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&body)
        .map(|answer| answer.error)
        .unwrap_or(body);
    format!("{status}: {message}")
}

/// The catalogs of `units` the device follows.
fn catalogs(units: &[UnitView]) -> Vec<DocumentId> {
    units
        .iter()
        .flat_map(|unit| std::iter::once(unit.catalog).chain(unit.classified_catalog))
        .collect()
}

/// When an access token valid for `expires_in` seconds expires, in milliseconds; saturating,
/// because the lifetime is the server's number and must not wrap into the past.
fn expires_at(expires_in: u64) -> i64 {
    let lifetime = i64::try_from(expires_in.saturating_mul(1000)).unwrap_or(i64::MAX);
    crate::now_ms().saturating_add(lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_stored_with_the_role_as_text_still_loads() {
        let stored = r#"{"server_url": "http://127.0.0.1:8080", "user_id": "u", "device_id": "d",
            "peer_id": "p", "unit_id": "t", "role": "leader", "cleared": false, "units": ["t"]}"#;
        let identity: Identity = serde_json::from_str(stored).unwrap();
        assert_eq!(identity.role, Role::Leader);
        assert_eq!(
            serde_json::to_value(&identity).unwrap()["role"],
            serde_json::json!("leader")
        );
    }

    #[test]
    fn a_token_lifetime_cannot_wrap_into_the_past() {
        assert!(expires_at(u64::MAX) > crate::now_ms());
        assert!(expires_at(60) >= crate::now_ms() + 59_000);
    }
}
