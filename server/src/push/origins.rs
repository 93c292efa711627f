//! Where the server may send pushes. A push endpoint is a URL a device hands us, and the
//! server then POSTs to it: left open, any account could make the server reach loopback or
//! the office network (and scan its ports). So an endpoint is accepted only on a public push
//! service over https on its default port, or on an origin the operator lists in
//! `push_allowed_origins` (a self-hosted UnifiedPush/ntfy server; `http` allowed there).

use std::fmt;

use axum::http::Uri;
use axum::http::uri::Scheme;

/// The public Web Push services (Google, Mozilla, Apple, Microsoft): a host is theirs when it
/// is one of these or a subdomain of one.
const PUBLIC_PUSH_SERVICES: [&str; 5] = [
    "fcm.googleapis.com",
    "android.googleapis.com",
    "push.services.mozilla.com",
    "push.apple.com",
    "notify.windows.com",
];

/// An origin: scheme, lower-case host and port (the scheme's default if not written).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &Uri) -> Option<Origin> {
        let https = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => true,
            Some(scheme) if *scheme == Scheme::HTTP => false,
            _ => return None,
        };
        let authority = uri.authority()?;
        // `user@host` is refused: whoever reads the URL should see the host it goes to.
        if authority.as_str().contains('@') {
            return None;
        }
        let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Origin { https, host, port })
    }

    fn is_public_push_service(&self) -> bool {
        self.https
            && self.port == 443
            && PUBLIC_PUSH_SERVICES.iter().any(|service| {
                self.host == *service
                    || self
                        .host
                        .strip_suffix(service)
                        .is_some_and(|sub| sub.ends_with('.'))
            })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// The public push services and the operator's own origins.
#[derive(Debug, Clone, Default)]
pub struct PushOrigins {
    listed: Vec<Origin>,
}

impl PushOrigins {
    /// `listed`: the setting `push_allowed_origins`, comma-separated origins such as
    /// `https://ntfy.office.example,http://10.1.2.3:8080` (no path).
    pub fn parse(listed: &str) -> Result<PushOrigins, String> {
        let listed = listed
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|text| {
                let uri: Uri = text
                    .parse()
                    .map_err(|_| format!("push_allowed_origins: `{text}` is not a URL"))?;
                if uri
                    .path_and_query()
                    .is_some_and(|path| path.as_str() != "/")
                {
                    return Err(format!(
                        "push_allowed_origins: `{text}` must be an origin, without a path"
                    ));
                }
                Origin::of(&uri).ok_or_else(|| {
                    format!("push_allowed_origins: `{text}` is not an http(s) origin")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(PushOrigins { listed })
    }

    /// Whether the server may post to `endpoint`; if not, why.
    pub fn check(&self, endpoint: &str) -> Result<(), String> {
        let origin = endpoint
            .parse::<Uri>()
            .ok()
            .as_ref()
            .and_then(Origin::of)
            .ok_or_else(|| "the push endpoint must be an https URL".to_owned())?;
        if origin.is_public_push_service() || self.listed.contains(&origin) {
            return Ok(());
        }
        Err(format!(
            "push endpoint {origin} is not allowed: only https on a public push service \
             (Google, Mozilla, Apple, Microsoft) or an origin in push_allowed_origins"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_push_services_over_https_and_listed_origins_only() {
        let origins =
            PushOrigins::parse(" http://127.0.0.1:4000 , https://ntfy.office.example").unwrap();
        for allowed in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://updates.push.services.mozilla.com/wpush/v2/x",
            "https://web.push.apple.com/QGx",
            "https://wns2-par02p.notify.windows.com/w/?token=x",
            "http://127.0.0.1:4000/push/1",
            "https://ntfy.office.example/up123",
            "https://NTFY.office.example:443/up123",
        ] {
            assert_eq!(origins.check(allowed), Ok(()), "{allowed}");
        }
        for refused in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://fcm.googleapis.com:8443/x",
            "https://evilfcm.googleapis.com.attacker.example/x",
            "https://notfcm.googleapis.com/x",
            "https://user@fcm.googleapis.com/x",
            "http://127.0.0.1:4001/push/1",
            "https://127.0.0.1:4000/push/1",
            "http://localhost/x",
            "http://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/x",
            "ftp://fcm.googleapis.com/x",
            "not a url",
        ] {
            assert!(origins.check(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_listed_origin_must_be_an_origin() {
        assert!(PushOrigins::parse("").unwrap().listed.is_empty());
        assert!(PushOrigins::parse("https://x.example/path").is_err());
        assert!(PushOrigins::parse("x.example").is_err());
        assert!(PushOrigins::parse("ftp://x.example").is_err());
    }
}
