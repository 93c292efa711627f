//! TLS for both of the device's connections to the server, the HTTP API (`session`) and the
//! `/sync` websocket (`sync`): one rustls configuration on the ring provider, trusting the
//! Mozilla roots, the system's roots and, when the device was given one at login, an office's
//! own CA (kept in the store, so every later command trusts it too). Also puts a TLS failure
//! into words a user can act on.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::Error;

/// The store's setting holding the PEM of the CA given at login.
pub(crate) const CA_SETTING: &str = "tls_ca_pem";

/// How long one API request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the device speaks to the server with: an HTTP client and, for the websocket, the
/// same TLS configuration it uses. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub tls: Arc<ClientConfig>,
}

impl Transport {
    /// Trusting the system's roots, and the CA of `extra_ca_pem` if given.
    pub fn new(extra_ca_pem: Option<&[u8]>) -> Result<Transport, Error> {
        let mut roots = system_roots().clone();
        if let Some(pem) = extra_ca_pem {
            for certificate in parse_ca(pem)? {
                roots
                    .add(certificate)
                    .map_err(|error| Error::Invalid(format!("the CA file: {error}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Network(format!("TLS cannot be set up: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // reqwest takes the configuration itself, so it never looks for a process-wide
        // crypto provider (it has none built in: we leave aws-lc-rs out).
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .tls_backend_preconfigured(config.clone())
            .build()
            .map_err(|error| Error::Network(error.to_string()))?;
        Ok(Transport {
            http,
            tls: Arc::new(config),
        })
    }
}

/// The certificates of a CA file (PEM), or why it is none: a file with no certificate (a key,
/// a DER file, the wrong file) or one that cannot be a trust anchor is refused here, at login,
/// rather than showing up later as an untrusted server.
pub(crate) fn parse_ca(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::Invalid(format!("the CA file is not valid PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(Error::Invalid(
            "the CA file holds no certificate (expected PEM, \"-----BEGIN CERTIFICATE-----\")"
                .into(),
        ));
    }
    let mut check = RootCertStore::empty();
    for certificate in &certificates {
        check.add(certificate.clone()).map_err(|error| {
            Error::Invalid(format!("the CA file's certificate cannot be used: {error}"))
        })?;
    }
    Ok(certificates)
}

/// The Mozilla roots and the system's, read once per process: every command of the CLI opens
/// a device, and the system's store is a directory of files.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        for error in native.errors {
            tracing::debug!(%error, "a system certificate could not be read");
        }
        let (_, unusable) = roots.add_parsable_certificates(native.certs);
        if unusable > 0 {
            tracing::debug!(unusable, "some system certificates are not usable as roots");
        }
        roots
    })
}

/// What to tell the user when `error` (a failed request or connect, with its causes) comes
/// from TLS; `None` when it does not.
pub(crate) fn explain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        // An `io::Error`'s `source` skips what it carries (and hyper wraps one in another),
        // so walk into it instead.
        next = match error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

fn describe(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not trusted (UnknownIssuer); if your office uses its \
             own CA, log in with --ca FILE"
                .into()
        }
        rustls::Error::InvalidCertificate(_) => {
            format!("the server's certificate is not valid: {error}")
        }
        // Most often an https address for a server that speaks plain http.
        _ => format!("TLS with the server failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let key =
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert!(matches!(parse_ca(key), Err(Error::Invalid(m)) if m.contains("no certificate")));
        assert!(matches!(
            parse_ca(b"not a certificate"),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn garbage_inside_a_certificate_block_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_ca(pem), Err(Error::Invalid(_))));
    }

    #[test]
    fn an_unknown_issuer_names_the_way_out_even_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        // As hyper hands it over: one io::Error inside another.
        let io = std::io::Error::other(io);
        let explained = explain(&io).unwrap();
        assert!(
            explained.contains("not trusted (UnknownIssuer)"),
            "{explained}"
        );
        assert!(explained.contains("--ca FILE"), "{explained}");
        assert_eq!(explain(&std::io::Error::other("refused")), None);
    }
}
