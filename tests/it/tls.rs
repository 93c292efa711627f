//! TLS end to end: the server terminating TLS itself with a certificate from a test CA (a
//! government office's private CA, in production), a device and the `zhiban` command trusting
//! that CA given at login, over `https` and `wss`; a login that does not trust it failing
//! with words that say why; HSTS on https answers only; a slow handshake not holding up
//! other connections; and a half-given TLS setting stopping the start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use zhiban_client_core::{Backoff, DeliveryStatus, Device, Error, LoginOptions};
use zhiban_server::Settings;

use crate::cli::zhiban;
use crate::helpers::{PASSWORD, TestApp, org, spawn_app, spawn_app_with, test_settings};

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(300),
};

/// A CA's certificate (PEM file) and what it issued for the server: its chain and key.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA named `name` and a server certificate it issued for `127.0.0.1` and `localhost`,
/// written into `dir`.
fn pki(dir: &Path, name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "zhiban test server");
    let server = server_params.signed_by(&server_key, &ca).unwrap();

    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-server.pem")),
        key: dir.join(format!("{name}-server.key")),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, server.pem()).unwrap();
    std::fs::write(&pki.key, server_key.serialize_pem()).unwrap();
    pki
}

/// The server on port 0 serving TLS with `pki`'s certificate, with the usual test org.
async fn spawn_tls_app(dir: &Path, pki: &Pki) -> TestApp {
    let app = spawn_app_with(Settings {
        tls_cert: Some(pki.cert.clone()),
        tls_key: Some(pki.key.clone()),
        ..test_settings(dir)
    })
    .await;
    org(&app).await;
    app
}

/// An HTTP client trusting only `ca` (as a device given `--ca` does, less the system roots).
fn client_trusting(ca: &Path) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_device_given_the_ca_logs_in_over_https_and_syncs_over_wss() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "office");
    let app = spawn_tls_app(dir.path(), &pki).await;
    let server = app.url("");
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
    let ca = std::fs::read(&pki.ca).unwrap();

    let phone = tempfile::tempdir().unwrap();
    {
        let device = Device::open(phone.path()).await.unwrap();
        let options = LoginOptions {
            ca_pem: Some(ca.clone()),
            ..LoginOptions::default()
        };
        let identity = device
            .login_with(&server, "alice", PASSWORD, "alice's phone", &options)
            .await
            .expect("login over https with the office CA");
        assert_eq!(identity.server_url, server);
    }

    // Opened again, as the next command would: the CA was kept on the device.
    let alice = Device::open(phone.path()).await.unwrap();
    let report = alice
        .urgent_report("accident", "G4 km 1032", "two lorries, road blocked")
        .await
        .unwrap();
    let sync_alice = alice.start_sync_with(FAST);
    alice
        .wait_received(&report, Duration::from_secs(20))
        .await
        .expect("the server confirms the report over wss");
    assert_eq!(
        alice.status(&report).await.unwrap(),
        DeliveryStatus::ReceivedByServer
    );
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE id = $1")
        .bind(report.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);

    // And the other way: a colleague's device, also over wss, is sent the report.
    let tablet = tempfile::tempdir().unwrap();
    let anna = Device::open(tablet.path()).await.unwrap();
    anna.login_with(
        &server,
        "anna",
        PASSWORD,
        "anna's tablet",
        &LoginOptions {
            ca_pem: Some(ca),
            ..LoginOptions::default()
        },
    )
    .await
    .unwrap();
    let sync_anna = anna.start_sync_with(FAST);
    crate::helpers::until_held(&anna, &report).await;
    assert_eq!(anna.get(&report).await.unwrap()["location"], "G4 km 1032");
    sync_alice.stop().await;
    sync_anna.stop().await;
}

#[tokio::test]
async fn a_device_without_the_ca_is_told_the_certificate_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki_office = pki(dir.path(), "office");
    let other = pki(dir.path(), "other");
    let app = spawn_tls_app(dir.path(), &pki_office).await;
    let phone = tempfile::tempdir().unwrap();
    let device = Device::open(phone.path()).await.unwrap();

    let without = device
        .login(&app.url(""), "alice", PASSWORD, "phone")
        .await
        .unwrap_err();
    let Error::Network(message) = &without else {
        panic!("expected a network error, got {without:?}");
    };
    assert!(message.contains("not trusted (UnknownIssuer)"), "{message}");
    assert!(message.contains("--ca FILE"), "{message}");

    let wrong_ca = LoginOptions {
        ca_pem: Some(std::fs::read(&other.ca).unwrap()),
        ..LoginOptions::default()
    };
    let with_another_ca = device
        .login_with(&app.url(""), "alice", PASSWORD, "phone", &wrong_ca)
        .await
        .unwrap_err();
    assert!(
        with_another_ca.to_string().contains("not trusted"),
        "{with_another_ca}"
    );

    let not_a_ca = LoginOptions {
        ca_pem: Some(std::fs::read(&pki_office.key).unwrap()),
        ..LoginOptions::default()
    };
    let refused = device
        .login_with(&app.url(""), "alice", PASSWORD, "phone", &not_a_ca)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Invalid(m) if m.contains("no certificate")),
        "{refused:?}"
    );
    assert_eq!(device.identity().await, None);
}

/// Runs `zhiban --json <args>` with the test password in the environment; its exit code and
/// JSON lines.
async fn zhiban_with_password(data_dir: &Path, args: &[&str]) -> (i32, Vec<Value>) {
    let mut command = zhiban(data_dir);
    command.env("ZHIBAN_PASSWORD", PASSWORD).args(args);
    crate::cli_day::outcome_of(command).await
}

#[tokio::test]
async fn the_cli_logs_in_with_ca_and_its_later_commands_trust_it() {
    let dir = tempfile::tempdir().unwrap();
    let office = pki(dir.path(), "office");
    let other = pki(dir.path(), "other");
    let app = spawn_tls_app(dir.path(), &office).await;
    let server = app.url("");
    let tablet = tempfile::tempdir().unwrap();
    let login = ["login", "--server", &server, "--username", "alice"];

    // Without --ca: refused, saying why and what to do.
    let (code, lines) = zhiban_with_password(tablet.path(), &login).await;
    assert_ne!(code, 0, "{lines:?}");
    let error = lines.last().expect("an error line")["error"]
        .as_str()
        .unwrap();
    assert!(error.contains("not trusted (UnknownIssuer)"), "{error}");
    assert!(error.contains("--ca FILE"), "{error}");

    // Another office's CA does not vouch for this server either.
    let other_ca = other.ca.to_str().unwrap();
    let (code, lines) =
        zhiban_with_password(tablet.path(), &[&login[..], &["--ca", other_ca]].concat()).await;
    assert_ne!(code, 0, "{lines:?}");
    assert!(
        lines.last().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("not trusted"),
        "{lines:?}"
    );

    // A file that is no certificate is a clear error before anything is sent.
    let key = office.key.to_str().unwrap();
    let (code, lines) =
        zhiban_with_password(tablet.path(), &[&login[..], &["--ca", key]].concat()).await;
    assert_ne!(code, 0, "{lines:?}");
    let error = lines.last().unwrap()["error"].as_str().unwrap();
    assert!(error.contains("no certificate"), "{error}");

    // With the office's CA: logged in, and a later command (its own process) syncs over wss.
    let ca = office.ca.to_str().unwrap();
    let (code, lines) =
        zhiban_with_password(tablet.path(), &[&login[..], &["--ca", ca]].concat()).await;
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines[0]["device_id"].is_string(), "{lines:?}");
    let (code, lines) = zhiban_with_password(
        tablet.path(),
        &[
            "report",
            "--urgent",
            "--category",
            "fire",
            "--location",
            "Town A market",
            "--wait",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[1]["status"], "received_by_server", "{lines:?}");
    let id = lines[0]["id"].as_str().unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn https_answers_carry_hsts_and_plain_http_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "office");
    let app = spawn_tls_app(dir.path(), &pki).await;
    let https = client_trusting(&pki.ca);

    for path in ["/healthz", "/no/such/route"] {
        let answer = https.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            answer.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
    assert_eq!(
        https
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Plain http to the TLS port is no way in.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", app.address))
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    assert!(plain.is_err(), "plain http answered: {plain:?}");
    // Nor does it hurt the server.
    assert_eq!(
        https
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A server without TLS (behind a proxy) leaves HSTS to the proxy.
    let plain_app = spawn_app().await;
    let answer = plain_app
        .http
        .get(plain_app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
    assert!(answer.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "office");
    // A long deadline: if handshakes ran in the accept loop, the next request would wait it.
    let mut settings = Settings {
        tls_cert: Some(pki.cert.clone()),
        tls_key: Some(pki.key.clone()),
        ..test_settings(dir.path())
    };
    settings.limits.http_header_timeout_secs = 60;
    let app = spawn_app_with(settings).await;
    let https = client_trusting(&pki.ca);

    // Connected, and then silent: no ClientHello.
    let stalled = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        https.get(app.url("/healthz")).send(),
    )
    .await
    .expect("answered while another handshake is stalled")
    .unwrap();
    assert_eq!(answer.status(), 200);
    drop(stalled);
}

#[tokio::test]
async fn a_half_given_or_unreadable_tls_setting_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let office = pki(dir.path(), "office");
    let other = pki(dir.path(), "other");
    let start = |settings: Settings| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let started = tokio::time::timeout(
            Duration::from_secs(20),
            zhiban_server::launch(settings, listener, std::future::ready(())),
        )
        .await
        .expect("returns");
        format!("{:#}", started.expect_err("refuses to start"))
    };

    let only_cert = start(Settings {
        tls_cert: Some(office.cert.clone()),
        ..test_settings(dir.path())
    })
    .await;
    assert!(only_cert.contains("tls_key is not"), "{only_cert}");

    let mismatched = start(Settings {
        tls_cert: Some(office.cert.clone()),
        tls_key: Some(other.key.clone()),
        ..test_settings(dir.path())
    })
    .await;
    assert!(mismatched.contains("does not fit"), "{mismatched}");

    let key_as_cert = start(Settings {
        tls_cert: Some(office.key.clone()),
        tls_key: Some(office.key.clone()),
        ..test_settings(dir.path())
    })
    .await;
    assert!(key_as_cert.contains("no certificate"), "{key_as_cert}");
}
