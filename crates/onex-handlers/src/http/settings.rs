//! [`HttpSettings`]: what the HTTP handler needs from a [`ConnectionConfig`], validated once.

use std::time::Duration;

use onex_core::{Auth, ConnectionConfig, Error, Result, Secret};
use reqwest::header::{HeaderName, HeaderValue};

/// Default health path (option `health_path`).
pub const DEFAULT_HEALTH_PATH: &str = "/health";
/// Default number of redirects followed (option `redirects`; 0 = none).
pub const DEFAULT_REDIRECTS: usize = 5;

/// Validated HTTP connection settings.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    /// Base URL without credentials and without a trailing slash.
    pub(crate) base: String,
    /// Host and port for `describe`.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The auth header sent on every request, marked sensitive so it never prints.
    pub(crate) auth_header: Option<(HeaderName, HeaderValue)>,
    pub(crate) health_path: String,
    pub(crate) redirects: usize,
    pub(crate) max_request_bytes: Option<u64>,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_max_idle: usize,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) auth_kind: &'static str,
}

impl HttpSettings {
    /// Parses and validates `config`. Credentials in the URL (`http://user:pw@host`) become
    /// basic auth when `auth` is `none`, and are removed from the URL kept for errors.
    pub(crate) fn from_config(config: &ConnectionConfig) -> Result<Self> {
        let raw = config.resolved_url()?;
        let mut url = url::Url::parse(&raw).map_err(|e| {
            Error::config(format!(
                "HTTP base URL {:?} is not a valid URL ({e}); expected e.g. http://127.0.0.1:8080/api",
                onex_core::sanitize::sanitize(&raw)
            ))
        })?;
        require_scheme(&url, &["http", "https"], "http")?;
        let host = url.host_str().ok_or_else(|| Error::config("HTTP base URL has no host"))?.to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let mut auth = config.auth.clone();
        if !url.username().is_empty() || url.password().is_some() {
            let user = percent_decode(url.username());
            let pass = url.password().map(percent_decode).unwrap_or_default();
            if matches!(auth, Auth::None) {
                auth = Auth::Basic { username: user, password: Secret::new(pass) };
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::config("HTTP base URL must not have a query or fragment; pass query parameters per request in params"));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        let (auth_header, auth_kind) = auth_header(&auth)?;
        let redirects = config.option("redirects", DEFAULT_REDIRECTS)?;
        let max_request_bytes = match config.options.get("max_request_bytes") {
            None => None,
            Some(_) => Some(config.option::<u64>("max_request_bytes", 0)?),
        };
        let mut health_path = config.options.get("health_path").cloned().unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_string());
        if !health_path.starts_with('/') {
            health_path.insert(0, '/');
        }
        if config.pool.max == 0 {
            return Err(Error::config("pool.max must be at least 1 for the HTTP handler (it is the idle connections kept per host)"));
        }
        Ok(HttpSettings {
            base,
            host,
            port,
            auth_header,
            health_path,
            redirects,
            max_request_bytes,
            request_timeout: config.timeouts.request,
            connect_timeout: config.timeouts.connect,
            pool_max_idle: config.pool.max,
            pool_idle_timeout: config.pool.idle_timeout,
            auth_kind,
        })
    }

    /// Builds the reqwest client these settings describe.
    pub(crate) fn client(&self, tls: &onex_core::TlsConfig) -> Result<reqwest::Client> {
        let redirect =
            if self.redirects == 0 { reqwest::redirect::Policy::none() } else { reqwest::redirect::Policy::limited(self.redirects) };
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(self.pool_max_idle)
            .pool_idle_timeout(self.pool_idle_timeout)
            .connect_timeout(self.connect_timeout)
            .redirect(redirect)
            .danger_accept_invalid_certs(tls.insecure_skip_verify);
        if tls.enabled {
            builder = builder.https_only(true);
        }
        if let Some(path) = &tls.ca_file {
            let pem = std::fs::read(path).map_err(|e| Error::config(format!("cannot read TLS CA file {path:?}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Error::config(format!("TLS CA file {path:?} is not a PEM certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build().map_err(|e| Error::initialization("cannot build the HTTP client").with_source(e))
    }
}

/// Checks a URL scheme against the accepted ones.
fn require_scheme(url: &url::Url, accepted: &[&str], handler: &str) -> Result<()> {
    if accepted.contains(&url.scheme()) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{handler} handler needs a URL with scheme {}; got {:?}",
            accepted.join(" or "),
            onex_core::sanitize::sanitize(url.as_str())
        )))
    }
}

fn auth_header(auth: &Auth) -> Result<(Option<(HeaderName, HeaderValue)>, &'static str)> {
    use base64::Engine as _;
    let (name, value, kind) = match auth {
        Auth::None => return Ok((None, "none")),
        Auth::Basic { username, password } => {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()));
            (reqwest::header::AUTHORIZATION, format!("Basic {token}"), "basic")
        }
        Auth::Bearer { token } => (reqwest::header::AUTHORIZATION, format!("Bearer {}", token.expose()), "bearer"),
        Auth::ApiKey { header, key } => {
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| Error::config(format!("api_key auth header name {header:?} is not a valid HTTP header name")))?;
            (name, key.expose().to_string(), "api_key")
        }
    };
    // The error must not echo the value: it is the credential.
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| Error::config(format!("the {kind} credential contains characters not allowed in an HTTP header")))?;
    value.set_sensitive(true);
    Ok((Some((name, value)), kind))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_become_basic_auth_and_leave_the_url() {
        let s = HttpSettings::from_config(&ConnectionConfig::new("http://alice:p%40ss@127.0.0.1:9/api/")).unwrap();
        assert_eq!(s.base, "http://127.0.0.1:9/api");
        assert_eq!(s.auth_kind, "basic");
        let (_, v) = s.auth_header.clone().unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{s:?}").contains("p@ss"));
    }

    #[test]
    fn bad_config_is_explained() {
        let e = HttpSettings::from_config(&ConnectionConfig::new("ftp://h")).unwrap_err().to_string();
        assert!(e.contains("http or https"), "{e}");
        let e = HttpSettings::from_config(&ConnectionConfig::new("not a url")).unwrap_err().to_string();
        assert!(e.contains("not a valid URL"), "{e}");
        let mut c = ConnectionConfig::new("http://h");
        c.options.insert("redirects".into(), "many".into());
        let e = HttpSettings::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("redirects"), "{e}");
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
    }
}
