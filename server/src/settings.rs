//! Server settings: defaults, then an optional TOML file, then `ZHIBAN_*` environment
//! variables. The defaults alone start a working server on SQLite in `./data`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where to listen. Loopback by default: put a TLS-terminating proxy in front (D24), or
    /// give `tls_cert` and `tls_key`.
    pub listen: SocketAddr,
    /// The server's certificate chain (PEM file), to serve https and wss itself; with
    /// `tls_key`, both or neither.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM file: PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Holds the SQLite database when `database_url` is not set.
    pub data_dir: PathBuf,
    /// `sqlite:///abs/path.db` or `postgres://…`; defaults to `<data_dir>/zhiban.db`.
    pub database_url: Option<String>,
    /// Overrides the signing key generated on first start (shared by all nodes).
    pub jwt_secret: Option<String>,
    /// Where the key files are (`keys`); `<data_dir>/keys` by default. Nodes of one
    /// deployment share them (a secret mount, or copies).
    pub keys_dir: Option<PathBuf>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// Largest websocket frame accepted on `/sync`; larger frames close the socket.
    pub max_frame_bytes: usize,
    /// What one account may make the server do (every account is assumed hostile).
    pub limits: Limits,
    /// Largest JSON body accepted on `/api`.
    pub max_api_body_bytes: usize,
    /// A document nobody is subscribed to is dropped from memory after this long.
    pub document_idle_secs: u64,
    /// After this many change chunks a document is rewritten as one snapshot.
    pub snapshot_after_chunks: u32,
    /// Ping interval on `/sync`; a peer silent for two intervals is disconnected.
    pub keepalive_secs: u64,
    /// tracing filter, e.g. `info` or `zhiban_server=debug`.
    pub log: String,
    /// The offices' local time, hours east of UTC (China: 8): days and hours of D15.
    pub utc_offset_hours: i32,
    /// On holidays, a unit's daily (or zero) report is due at this local hour (D15).
    pub daily_report_hour: u32,
    /// D11: minutes from an event becoming known to its first report (a unit may set its own).
    pub first_report_minutes: u32,
    /// D12: minutes between follow-up reports until the final one (a unit may set its own).
    pub follow_up_minutes: u32,
    /// The VAPID `sub` claim: whom push services may contact about our traffic (RFC 8292).
    pub push_contact: String,
    /// Origins besides the public push services that push endpoints may name, comma-separated
    /// (`https://ntfy.office.example,http://10.1.2.3:8080`): a self-hosted UnifiedPush/ntfy
    /// server on the office network; `http` is allowed here only.
    pub push_allowed_origins: String,
    /// Where the audit trail's signed heads are appended (`<data_dir>/audit-checkpoints` by
    /// default): keep it off the database's disk, or ship it to syslog.
    pub audit_checkpoint_file: Option<PathBuf>,
    /// How often the head is signed into it.
    pub audit_checkpoint_secs: u64,
    /// The clock deadlines and escalations run on; tests inject a manual one.
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

/// Limits on what any logged-in device (or anyone, for logins) may make the server do, each
/// refused with a clear message when reached. In a file: a `[limits]` table; in the
/// environment: `ZHIBAN_LIMITS__<NAME>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes of changes in one sync message, once inflated.
    pub max_message_bytes: usize,
    /// Operations in one sync message.
    pub max_message_ops: u64,
    /// Hashes (heads, needs, last syncs) in one sync message.
    pub max_message_hashes: usize,
    /// Change chunks in one sync message.
    pub max_message_chunks: usize,
    /// Bytes a document may take in storage; changes beyond are refused.
    pub max_document_bytes: u64,
    /// How deep objects may nest in a document (maps in lists in maps…).
    pub max_depth: usize,
    /// Bytes of one ephemeral message (presence, cursors); larger ones are refused.
    pub max_ephemeral_bytes: usize,
    /// Ephemeral messages one connection may send per minute.
    pub ephemeral_per_minute: u32,
    /// Bytes queued for a peer before it counts as not reading and is disconnected.
    pub max_outbox_bytes: usize,
    /// Seconds a socket write may wait on a peer that does not read.
    pub send_timeout_secs: u64,
    /// Documents the server has never stored that one connection may offer.
    pub max_unknown_offers: usize,
    /// Documents one user may create per hour.
    pub max_new_documents_per_hour: i64,
    /// Open `/sync` connections per device, and per user.
    pub max_connections_per_device: usize,
    pub max_connections_per_user: usize,
    /// Open HTTP connections in all.
    pub max_http_connections: usize,
    /// Seconds a client may take to send a request's headers, and the whole request.
    pub http_header_timeout_secs: u64,
    pub http_request_timeout_secs: u64,
    /// Password checks (Argon2) running at once; beyond, after a second's wait, logins get
    /// 429. Each keeps 19 MiB of working memory once used: four hold 76 MiB, and keep two
    /// cores busy.
    pub concurrent_password_checks: usize,
    /// Failed logins for one username, and from one address, before a lockout…
    pub failed_logins_per_username: u32,
    pub failed_logins_per_address: u32,
    /// …which lasts this long, doubling with each further failure up to 15 minutes.
    pub lockout_secs: u64,
    /// Push subscriptions one device, and one user, may hold.
    pub max_push_subscriptions_per_device: i64,
    pub max_push_subscriptions_per_user: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            max_message_ops: 200_000,
            max_message_hashes: 4096,
            max_message_chunks: 4096,
            max_document_bytes: 32 * 1024 * 1024,
            max_depth: 64,
            max_ephemeral_bytes: 16 * 1024,
            ephemeral_per_minute: 600,
            max_outbox_bytes: 8 * 1024 * 1024,
            send_timeout_secs: 10,
            max_unknown_offers: 1000,
            max_new_documents_per_hour: 1000,
            max_connections_per_device: 4,
            max_connections_per_user: 16,
            max_http_connections: 20_000,
            http_header_timeout_secs: 10,
            http_request_timeout_secs: 30,
            concurrent_password_checks: 4,
            failed_logins_per_username: 5,
            failed_logins_per_address: 50,
            lockout_secs: 30,
            max_push_subscriptions_per_device: 4,
            max_push_subscriptions_per_user: 16,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            data_dir: PathBuf::from("data"),
            database_url: None,
            jwt_secret: None,
            keys_dir: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            max_frame_bytes: 2 * 1024 * 1024,
            limits: Limits::default(),
            max_api_body_bytes: 256 * 1024,
            document_idle_secs: 60,
            snapshot_after_chunks: 512,
            keepalive_secs: 30,
            log: "info".into(),
            utc_offset_hours: 8,
            daily_report_hour: 16,
            first_report_minutes: 60,
            follow_up_minutes: 120,
            push_contact: "mailto:duty-office@example.invalid".into(),
            push_allowed_origins: String::new(),
            audit_checkpoint_file: None,
            audit_checkpoint_secs: 300,
            clock: crate::clock::Clock::system(),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("keys_dir", &self.keys_dir)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("refresh_token_ttl_secs", &self.refresh_token_ttl_secs)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("limits", &self.limits)
            .field("max_api_body_bytes", &self.max_api_body_bytes)
            .field("document_idle_secs", &self.document_idle_secs)
            .field("snapshot_after_chunks", &self.snapshot_after_chunks)
            .field("keepalive_secs", &self.keepalive_secs)
            .field("log", &self.log)
            .field("utc_offset_hours", &self.utc_offset_hours)
            .field("daily_report_hour", &self.daily_report_hour)
            .field("first_report_minutes", &self.first_report_minutes)
            .field("follow_up_minutes", &self.follow_up_minutes)
            .field("push_contact", &self.push_contact)
            .field("push_allowed_origins", &self.push_allowed_origins)
            .field("audit_checkpoint_file", &self.audit_checkpoint_file)
            .field("audit_checkpoint_secs", &self.audit_checkpoint_secs)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Settings {
    /// The deployment's reporting intervals (D11, D12), each at least a minute.
    pub fn intervals(&self) -> zhiban_records::Intervals {
        zhiban_records::Intervals::default().with(
            Some(i64::from(self.first_report_minutes.max(1))),
            Some(i64::from(self.follow_up_minutes.max(1))),
        )
    }

    /// Defaults → `file` (if given, it must exist) → `ZHIBAN_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            // The command line's own variables are not settings.
            .merge(
                Env::prefixed("ZHIBAN_")
                    .ignore(&["config", "new_password"])
                    .split("__"),
            )
            .extract()
            .map_err(Box::new)
    }

    /// The certificate and key files when the server terminates TLS itself; one without the
    /// other is a mistake to stop at, not a reason to serve plain http.
    pub fn tls_files(&self) -> Result<Option<(&Path, &Path)>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => {
                Err("tls_cert is set but tls_key is not: give both (or neither)".into())
            }
            (None, Some(_)) => {
                Err("tls_key is set but tls_cert is not: give both (or neither)".into())
            }
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let path = std::path::absolute(self.data_dir.join("zhiban.db"))
                    .unwrap_or_else(|_| self.data_dir.join("zhiban.db"));
                format!("sqlite://{}?mode=rwc", path.display())
            }
        }
    }

    pub fn audit_checkpoint_file(&self) -> PathBuf {
        self.audit_checkpoint_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-checkpoints"))
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_secs)
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs.max(1))
    }

    pub fn document_idle(&self) -> Duration {
        Duration::from_secs(self.document_idle_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_debug_hides_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("zhiban.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\njwt_secret = \"hunter2\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file)).unwrap();
        assert_eq!(settings.listen.port(), 9999);
        assert_eq!(settings.document_idle_secs, 60);
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn tls_needs_both_files_or_neither() {
        let mut settings = Settings::default();
        assert_eq!(settings.tls_files(), Ok(None));
        settings.tls_cert = Some("cert.pem".into());
        assert!(settings.tls_files().unwrap_err().contains("tls_key"));
        settings.tls_key = Some("key.pem".into());
        assert!(settings.tls_files().unwrap().is_some());
        settings.tls_cert = None;
        assert!(settings.tls_files().unwrap_err().contains("tls_cert"));
    }

    #[test]
    fn unknown_keys_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("zhiban.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9999\"\n").unwrap();
        assert!(Settings::load(Some(&file)).is_err());
    }
}
