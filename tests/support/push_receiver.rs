//! A loopback Web Push service (RFC 8030) plus the "browsers" subscribed to it, for testing the
//! server's push sender end to end.
//!
//! Included via `#[path = "../support/push_receiver.rs"] mod push_receiver_support;` (no
//! submodules here).
//!
//! [`PushReceiver::start`] serves `POST /push/{name}` on `127.0.0.1:0`. [`PushReceiver::subscribe`]
//! makes a new browser (a fresh P-256 key pair and auth secret) and returns the PushSubscription
//! JSON a browser would hand to our web app. Every push message is checked the way a push service
//! and the browser behind it would: VAPID (RFC 8292) signature, audience, expiry and subject, the
//! `aes128gcm` content coding, a `TTL` header, well-formed `Urgency`/`Topic`, and decryption of the
//! body (RFC 8291). A message that passes is answered `201 Created` and becomes a [`Delivery`];
//! one that fails is answered 400/401/403/413 and becomes a [`Rejection`], never a delivery.
//! Error bodies use the `{code, errno, error, message}` shape that autopush sends and the
//! `web-push` crate parses, so a sender sees the reason in its error.
//!
//! VAPID audience: RFC 8292 asks for the origin of the endpoint, which here includes the port
//! (`http://127.0.0.1:PORT`), but `web-push` 0.11 builds `aud` from scheme and host only and sends
//! `http://127.0.0.1` (the two agree for real services on the default port). Both are accepted;
//! any other audience is refused.
#![allow(dead_code)]

use std::{
    collections::{HashMap, VecDeque},
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use tokio::{
    net::TcpListener,
    sync::{Mutex as AsyncMutex, mpsc},
    task::JoinHandle,
};

/// RFC 8030 §7.2: a push service must accept at least 4096 octets; autopush accepts no more.
const MAX_BODY: usize = 4096;
/// RFC 8292 §2: the expiry must not be more than 24 hours after the request.
const MAX_JWT_LIFETIME: u64 = 24 * 60 * 60;

/// A push message that passed every check, decrypted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The subscription (browser) it was addressed to.
    pub name: String,
    pub payload: Vec<u8>,
    pub urgency: Option<String>,
    pub ttl: u64,
    pub topic: Option<String>,
    /// The `sub` claim of the VAPID token: the sender's contact.
    pub vapid_sub: String,
    pub received_at: Instant,
}

impl Delivery {
    /// The payload parsed as JSON; panics (a test failure) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|error| {
            panic!(
                "push payload to {} is not JSON ({error}): {:?}",
                self.name,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
}

/// A push message refused by a check, with the reason also sent back in the response body.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub name: String,
    pub reason: String,
}

pub struct PushReceiver {
    shared: Arc<Shared>,
    /// Deliveries in arrival order, for [`PushReceiver::next_delivery`]; a channel rather than a
    /// polled list so that a waiting test wakes the moment the handler records one.
    arrivals: AsyncMutex<mpsc::UnboundedReceiver<Delivery>>,
    address: SocketAddr,
    server: JoinHandle<()>,
}

struct Shared {
    origin: String,
    state: Mutex<ServiceState>,
    arrivals: mpsc::UnboundedSender<Delivery>,
}

#[derive(Default)]
struct ServiceState {
    browsers: HashMap<String, Browser>,
    /// Every POST per name, including unknown names and scripted failures.
    attempts: HashMap<String, usize>,
    scripted: HashMap<String, VecDeque<u16>>,
    /// The application server key the browsers were subscribed with, if pinned.
    vapid_key: Option<Vec<u8>>,
    deliveries: Vec<Delivery>,
    rejections: Vec<Rejection>,
}

#[derive(Clone)]
struct Browser {
    keys: ece::EcKeyComponents,
    auth_secret: [u8; 16],
}

impl PushReceiver {
    /// `http://127.0.0.1:PORT`: what a server's `push_allowed_origins` must list for it.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    pub async fn start() -> anyhow::Result<PushReceiver> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the push receiver")?;
        let address = listener.local_addr()?;
        let (sender, arrivals) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            origin: format!("http://{address}"),
            state: Mutex::default(),
            arrivals: sender,
        });
        let app = Router::new()
            .route("/push/{name}", post(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("push receiver stopped: {error}");
            }
        });
        Ok(PushReceiver {
            shared,
            arrivals: AsyncMutex::new(arrivals),
            address,
            server,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A new browser subscription: returns its PushSubscription JSON (`endpoint`,
    /// `expirationTime`, `keys.p256dh`, `keys.auth`), as `pushManager.subscribe()` gives it.
    pub fn subscribe(&self, name: &str) -> serde_json::Value {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
            "subscription name {name:?} must be usable as a URL path segment"
        );
        let (key_pair, auth_secret) =
            ece::generate_keypair_and_auth_secret().expect("generating a P-256 key pair");
        let keys = key_pair.raw_components().expect("exporting the key pair");
        let p256dh = URL_SAFE_NO_PAD.encode(keys.public_key());
        let previous = self
            .state()
            .browsers
            .insert(name.to_owned(), Browser { keys, auth_secret });
        assert!(previous.is_none(), "{name:?} is already subscribed");
        json!({
            "endpoint": format!("{}/push/{name}", self.shared.origin),
            "expirationTime": null,
            "keys": { "p256dh": p256dh, "auth": URL_SAFE_NO_PAD.encode(auth_secret) },
        })
    }

    /// Refuse (403) messages signed with any VAPID key but this one, as a push service does for
    /// subscriptions made with an `applicationServerKey`. The key is base64url, as given to the
    /// browser.
    pub fn expect_vapid_key(&self, application_server_key: &str) {
        let key = decode_base64url(application_server_key).expect("VAPID public key is base64url");
        assert_eq!(
            key.len(),
            65,
            "VAPID public key must be an uncompressed P-256 point"
        );
        self.state().vapid_key = Some(key);
    }

    /// Answer the next requests to `name` with these statuses, in order, without looking at them;
    /// then go back to checking and delivering. A 429 carries `Retry-After: 1`.
    pub fn respond_with(&self, name: &str, statuses: &[u16]) {
        self.state()
            .scripted
            .entry(name.to_owned())
            .or_default()
            .extend(statuses);
    }

    /// Every POST to `name` so far: deliveries, rejections and scripted failures alike.
    pub fn attempts(&self, name: &str) -> usize {
        self.state().attempts.get(name).copied().unwrap_or(0)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().deliveries.clone()
    }

    pub fn rejections(&self) -> Vec<Rejection> {
        self.state().rejections.clone()
    }

    /// The next delivery not yet returned by this method (each is returned once, in arrival
    /// order), waiting up to `timeout` for it.
    pub async fn next_delivery(&self, timeout: Duration) -> Option<Delivery> {
        let mut arrivals = self.arrivals.lock().await;
        tokio::time::timeout(timeout, arrivals.recv())
            .await
            .ok()
            .flatten()
    }

    /// Assert that no delivery (beyond those already taken by `next_delivery`) arrives within
    /// `quiet_for`. Absence can only be shown by waiting, so this always takes `quiet_for`.
    pub async fn expect_none(&self, quiet_for: Duration) {
        if let Some(delivery) = self.next_delivery(quiet_for).await {
            panic!(
                "expected no push delivery, got one to {} with payload {:?}",
                delivery.name,
                String::from_utf8_lossy(&delivery.payload)
            );
        }
    }

    pub fn stop(&self) {
        self.server.abort();
    }

    fn state(&self) -> MutexGuard<'_, ServiceState> {
        self.shared
            .state
            .lock()
            .expect("push receiver state poisoned")
    }
}

impl Drop for PushReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (browser, pinned_key) = {
        let mut state = shared.state.lock().expect("push receiver state poisoned");
        *state.attempts.entry(name.clone()).or_default() += 1;
        let Some(browser) = state.browsers.get(&name).cloned() else {
            state.rejections.push(Rejection {
                name,
                reason: "no such subscription".into(),
            });
            return error_response(StatusCode::NOT_FOUND, "no such subscription");
        };
        if let Some(status) = state.scripted.get_mut(&name).and_then(VecDeque::pop_front) {
            return scripted_response(status);
        }
        (browser, state.vapid_key.clone())
    };

    let checked = check(
        &shared.origin,
        pinned_key.as_deref(),
        &browser,
        &headers,
        &body,
    );
    let mut state = shared.state.lock().expect("push receiver state poisoned");
    match checked {
        Ok(message) => {
            let delivery = Delivery {
                name,
                payload: message.payload,
                urgency: message.urgency,
                ttl: message.ttl,
                topic: message.topic,
                vapid_sub: message.vapid_sub,
                received_at: Instant::now(),
            };
            state.deliveries.push(delivery.clone());
            let location = format!("/message/{}", state.deliveries.len());
            // Recorded before answering, so a sender that saw 201 finds the delivery in place.
            let _ = shared.arrivals.send(delivery);
            let location = HeaderValue::from_str(&location).expect("ASCII location");
            (StatusCode::CREATED, [(header::LOCATION, location)]).into_response()
        }
        Err((status, reason)) => {
            let response = error_response(status, &reason);
            state.rejections.push(Rejection { name, reason });
            response
        }
    }
}

struct CheckedMessage {
    payload: Vec<u8>,
    urgency: Option<String>,
    ttl: u64,
    topic: Option<String>,
    vapid_sub: String,
}

type Refusal = (StatusCode, String);

fn check(
    origin: &str,
    pinned_key: Option<&[u8]>,
    browser: &Browser,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CheckedMessage, Refusal> {
    let bad_request = |reason: String| (StatusCode::BAD_REQUEST, reason);
    let (token, key) =
        vapid_credentials(headers).map_err(|reason| (StatusCode::UNAUTHORIZED, reason))?;
    if pinned_key.is_some_and(|pinned| pinned != key.as_slice()) {
        return Err((
            StatusCode::FORBIDDEN,
            "VAPID key differs from the subscription's applicationServerKey".into(),
        ));
    }
    let vapid_sub = verify_vapid_token(&token, &key, origin)
        .map_err(|reason| (StatusCode::UNAUTHORIZED, reason))?;

    if body.len() > MAX_BODY {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body of {} bytes exceeds {MAX_BODY}", body.len()),
        ));
    }
    match text_header(headers, header::CONTENT_ENCODING.as_str()) {
        Some(encoding) if encoding.eq_ignore_ascii_case("aes128gcm") => {}
        other => {
            return Err(bad_request(format!(
                "Content-Encoding must be aes128gcm, got {other:?}"
            )));
        }
    }
    let ttl = text_header(headers, "ttl")
        .ok_or_else(|| bad_request("missing TTL header".into()))?
        .parse::<u64>()
        .map_err(|error| bad_request(format!("TTL is not a number of seconds: {error}")))?;
    let urgency = text_header(headers, "urgency").map(str::to_owned);
    if let Some(urgency) = &urgency
        && !["very-low", "low", "normal", "high"].contains(&urgency.as_str())
    {
        return Err(bad_request(format!("unknown Urgency {urgency:?}")));
    }
    let topic = text_header(headers, "topic").map(str::to_owned);
    if let Some(topic) = &topic
        && (topic.len() > 32 || !topic.bytes().all(is_base64url_byte))
    {
        return Err(bad_request(format!(
            "Topic {topic:?} is not at most 32 base64url characters"
        )));
    }

    // The browser's part: a body it cannot decrypt never reaches the service worker.
    let payload = ece::decrypt(&browser.keys, &browser.auth_secret, body)
        .map_err(|error| bad_request(format!("cannot decrypt the body: {error}")))?;
    Ok(CheckedMessage {
        payload,
        urgency,
        ttl,
        topic,
        vapid_sub,
    })
}

/// The VAPID token and public key, from `Authorization: vapid t=…, k=…` (RFC 8292) or from the
/// draft form still sent by older libraries: `Authorization: WebPush <jwt>` with
/// `Crypto-Key: p256ecdsa=<key>`.
fn vapid_credentials(headers: &HeaderMap) -> Result<(String, Vec<u8>), String> {
    let authorization = text_header(headers, header::AUTHORIZATION.as_str())
        .ok_or("missing Authorization header")?;
    let (scheme, parameters) = authorization
        .split_once(' ')
        .ok_or("Authorization has no credentials")?;
    let (token, key) = if scheme.eq_ignore_ascii_case("vapid") {
        let parameter = |wanted: &str| {
            parameters.split(',').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case(wanted)
                    .then(|| value.trim())
            })
        };
        let token = parameter("t").ok_or("vapid Authorization without t=")?;
        let key = parameter("k").ok_or("vapid Authorization without k=")?;
        (token, key)
    } else if scheme.eq_ignore_ascii_case("webpush") {
        let crypto_key =
            text_header(headers, "crypto-key").ok_or("WebPush Authorization without Crypto-Key")?;
        let key = crypto_key
            .split([',', ';'])
            .find_map(|pair| pair.trim().strip_prefix("p256ecdsa="))
            .ok_or("Crypto-Key without p256ecdsa=")?;
        (parameters.trim(), key)
    } else {
        return Err(format!("unknown Authorization scheme {scheme:?}"));
    };
    let key =
        decode_base64url(key).map_err(|error| format!("VAPID key is not base64url: {error}"))?;
    if key.len() != 65 || key[0] != 0x04 {
        return Err("VAPID key is not an uncompressed P-256 point".into());
    }
    Ok((token.to_owned(), key))
}

#[derive(Deserialize)]
struct VapidClaims {
    exp: u64,
    sub: String,
}

/// Checks the ES256 signature with `key`, the audience, the expiry (future, at most 24 h away)
/// and the subject; returns the subject.
fn verify_vapid_token(token: &str, key: &[u8], origin: &str) -> Result<String, String> {
    let decoding_key = DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&key[1..33]),
        &URL_SAFE_NO_PAD.encode(&key[33..]),
    )
    .map_err(|error| format!("VAPID key: {error}"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    // See the module comment: web-push drops the port from the origin.
    let origin_without_port = origin
        .rsplit_once(':')
        .map_or(origin, |(without, _)| without);
    validation.set_audience(&[origin, origin_without_port]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<VapidClaims>(token, &decoding_key, &validation)
        .map_err(|error| format!("VAPID token refused: {error}"))?
        .claims;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    if claims.exp > now + MAX_JWT_LIFETIME {
        return Err(format!(
            "VAPID token expires {} s from now, more than 24 h",
            claims.exp - now
        ));
    }
    if !(claims.sub.starts_with("mailto:") || claims.sub.starts_with("https:")) {
        return Err(format!(
            "VAPID sub {:?} is neither mailto: nor https:",
            claims.sub
        ));
    }
    Ok(claims.sub)
}

fn scripted_response(status: u16) -> Response {
    let status = StatusCode::from_u16(status).expect("scripted status is a valid HTTP status");
    let mut response = error_response(status, "scripted failure");
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "code": status.as_u16(),
        "errno": 999,
        "error": status.canonical_reason().unwrap_or("error"),
        "message": message,
    });
    (status, axum::Json(body)).into_response()
}

fn text_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// Browsers and push libraries disagree on padding; the alphabet is always base64url.
fn decode_base64url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

fn is_base64url_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}
