//! `switchboard:plugin/http`: requests to upstreams the operator declared by name, and the
//! `[upstreams.<name>]` config they come from.
//!
//! A plugin names an upstream and a path below its URL; it never supplies a host. Redirects
//! are not followed (they could leave the upstream), bodies are capped both ways, and the
//! operator's configured headers (API keys) are added by the host so plugins never hold them.
//!
//! `https://` upstreams are verified with rustls against the system's root certificates plus,
//! per upstream, the PEM bundle in `ca_file` (private PKI). Each upstream has its own client,
//! so one upstream's extra roots are never trusted for another.

use super::abi::latest::switchboard::plugin::http::{HttpError, Request, Response};
use super::error::PluginError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest request body a plugin may send.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Longest per-request timeout: no plugin call may last longer anyway
/// (`config::MAX_TIMEOUT_MS`).
pub const MAX_UPSTREAM_TIMEOUT_MS: u64 = 60_000;

/// One `[upstreams.<name>]` entry: an HTTP service plugins may call by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL (`http` or `https`); plugin paths are appended to it.
    pub url: String,
    /// Per-request timeout, in milliseconds (the calling plugin's own timeout also applies).
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// Headers added to every request, e.g. an API key the plugin never sees. They override
    /// headers of the same name set by the plugin.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Responses with a larger body fail with `too-large`.
    #[serde(default = "default_max_response_kib")]
    pub max_response_kib: u32,
    /// A PEM bundle of CA certificates trusted for this upstream in addition to the system's
    /// roots (private PKI). Read and checked at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_upstream_timeout_ms() -> u64 {
    2_000
}

fn default_max_response_kib() -> u32 {
    1_024
}

impl UpstreamConfig {
    /// An upstream at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        UpstreamConfig {
            url: url.into(),
            timeout_ms: default_upstream_timeout_ms(),
            headers: BTreeMap::new(),
            max_response_kib: default_max_response_kib(),
            ca_file: None,
        }
    }

    /// Everything that can be checked without I/O (`ca_file` is read at load).
    pub fn validate(&self, name: &str) -> Result<(), PluginError> {
        let bad = |key: &str, message: String| PluginError::Upstream {
            key: format!("upstreams.{name}.{key}"),
            message,
        };
        let url = Url::parse(&self.url).map_err(|e| bad("url", format!("`{}`: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(
                "url",
                format!("`{}` must be an http:// or https:// URL", self.url),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "url",
                format!("`{}` must not have a query or fragment", self.url),
            ));
        }
        if !(1..=MAX_UPSTREAM_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(bad(
                "timeout_ms",
                format!(
                    "{} is out of range (1..={MAX_UPSTREAM_TIMEOUT_MS})",
                    self.timeout_ms
                ),
            ));
        }
        if self.max_response_kib == 0 {
            return Err(bad("max_response_kib", "must be at least 1".into()));
        }
        for (header, value) in &self.headers {
            HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| bad("headers", format!("`{header}` is not a valid header name")))?;
            HeaderValue::from_str(value).map_err(|_| {
                bad(
                    &format!("headers.{header}"),
                    "not a valid header value".into(),
                )
            })?;
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(bad("ca_file", "must name a PEM file".into()));
        }
        Ok(())
    }
}

/// Headers the host controls; a plugin setting them is refused.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

struct Upstream {
    /// Its own client: its trusted roots are the system's plus its `ca_file`.
    client: reqwest::Client,
    base: Url,
    timeout: Duration,
    headers: HeaderMap,
    max_response_bytes: usize,
}

/// All declared upstreams, ready to be called.
pub struct Upstreams {
    by_name: HashMap<String, Upstream>,
}

impl Upstreams {
    /// Validate every upstream, read its `ca_file`, and build its client.
    pub fn new(config: &BTreeMap<String, UpstreamConfig>) -> Result<Self, PluginError> {
        let mut by_name = HashMap::new();
        for (name, up) in config {
            up.validate(name)?;
            let bad = |key: &str, message: String| PluginError::Upstream {
                key: format!("upstreams.{name}.{key}"),
                message,
            };
            let base = Url::parse(&up.url).map_err(|e| bad("url", e.to_string()))?;
            let mut headers = HeaderMap::new();
            for (k, v) in &up.headers {
                let k = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| bad("headers", format!("`{k}` is not a valid header name")))?;
                let v = HeaderValue::from_str(v)
                    .map_err(|_| bad(&format!("headers.{k}"), "not a valid header value".into()))?;
                headers.insert(k, v);
            }
            by_name.insert(
                name.clone(),
                Upstream {
                    client: client(up.ca_file.as_deref())
                        .map_err(|message| bad("ca_file", message))?,
                    base,
                    timeout: Duration::from_millis(up.timeout_ms),
                    headers,
                    max_response_bytes: up.max_response_kib as usize * 1024,
                },
            );
        }
        Ok(Upstreams { by_name })
    }

    /// Send `req` if `granted` lists its upstream.
    pub async fn fetch(&self, granted: &[String], req: Request) -> Result<Response, HttpError> {
        let upstream = match self.by_name.get(&req.upstream) {
            Some(u) if granted.contains(&req.upstream) => u,
            _ => return Err(HttpError::UnknownUpstream(req.upstream)),
        };
        let url = join(&upstream.base, &req.path).map_err(HttpError::InvalidRequest)?;
        let method = Method::from_bytes(req.method.as_bytes())
            .ok()
            .filter(|m| {
                [
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ]
                .contains(m)
            })
            .ok_or_else(|| HttpError::InvalidRequest(format!("method `{}`", req.method)))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &req.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| HttpError::InvalidRequest(format!("header name `{k}`")))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(HttpError::InvalidRequest(format!(
                    "header `{name}` is set by the host"
                )));
            }
            let value = HeaderValue::from_str(v)
                .map_err(|_| HttpError::InvalidRequest(format!("header `{k}` value")))?;
            headers.append(name, value);
        }
        for (k, v) in &upstream.headers {
            headers.insert(k.clone(), v.clone());
        }
        let mut builder = upstream.client.request(method, url).headers(headers);
        if let Some(body) = req.body {
            if body.len() > MAX_REQUEST_BYTES {
                return Err(HttpError::InvalidRequest(format!(
                    "body over {MAX_REQUEST_BYTES} bytes"
                )));
            }
            builder = builder.body(body);
        }
        let exchange = async {
            let mut resp = builder.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            if resp
                .content_length()
                .is_some_and(|n| n > upstream.max_response_bytes as u64)
            {
                return Err(HttpError::TooLarge);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > upstream.max_response_bytes {
                    return Err(HttpError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(upstream.timeout, exchange)
            .await
            .unwrap_or(Err(HttpError::Timeout))
    }
}

/// An HTTP client that follows no redirects and trusts the system's roots plus the
/// certificates in `ca_file`. Errors are the `ca_file` problem, for the operator.
fn client(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .use_rustls_tls()
        .tls_built_in_native_certs(true);
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| match ca_file {
        Some(path) => format!(
            "{}: cannot use these certificates: {}",
            path.display(),
            chain(&e)
        ),
        None => format!("cannot build the HTTP client: {}", chain(&e)),
    })
}

/// The certificates of a PEM bundle; an unreadable file, an unparsable one or one without any
/// certificate is an error naming the file.
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "{} is not a PEM certificate bundle: {}",
            path.display(),
            chain(&e)
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

fn transport(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout
    } else {
        // The error's Display includes the URL, which the operator may not want plugins to
        // learn; the source chain holds the useful part (e.g. "invalid peer certificate:
        // UnknownIssuer").
        HttpError::Transport(chain(&e.without_url()))
    }
}

/// `base` + `path`, refusing anything that could escape the upstream: other hosts,
/// dot-segments, fragments, control characters.
fn join(base: &Url, path: &str) -> Result<Url, String> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(format!("path `{path}` must start with a single `/`"));
    }
    if path
        .chars()
        .any(|c| c.is_control() || c == ' ' || c == '#' || c == '\\')
    {
        return Err(format!("path `{path}` contains a forbidden character"));
    }
    let path_only = path.split('?').next().unwrap_or_default();
    if path_only
        .split('/')
        .any(|seg| seg == ".." || seg == "." || seg.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err(format!("path `{path}` contains dot-segments"));
    }
    let joined = format!("{}{}", base.as_str().trim_end_matches('/'), path);
    let url = Url::parse(&joined).map_err(|e| format!("path `{path}`: {e}"))?;
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default();
    if !same_origin || !url.path().starts_with(base.path().trim_end_matches('/')) {
        return Err(format!("path `{path}` leaves the upstream"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_stays_below_the_base() {
        let base = Url::parse("https://idp.internal/api/").unwrap();
        assert_eq!(
            join(&base, "/v1/check?token=a%20b").unwrap().as_str(),
            "https://idp.internal/api/v1/check?token=a%20b"
        );
        for bad in [
            "v1",
            "//evil.example/x",
            "/../admin",
            "/a/./b",
            "/a#frag",
            "/a\nb",
            "/a b",
            "/%2e%2e/x",
            "/a\\b",
        ] {
            assert!(join(&base, bad).is_err(), "{bad}");
        }
        let root = Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            join(&root, "/x").unwrap().as_str(),
            "http://127.0.0.1:9000/x"
        );
        // `@` would turn the base host into userinfo if the URL were built naively.
        let u = join(&root, "/@evil.example").unwrap();
        assert_eq!(u.host_str(), Some("127.0.0.1"));
    }

    #[tokio::test]
    async fn undeclared_or_ungranted_upstreams_are_refused() {
        let mut cfg = BTreeMap::new();
        cfg.insert(
            "idp".to_string(),
            UpstreamConfig {
                timeout_ms: 100,
                max_response_kib: 1,
                ..UpstreamConfig::new("http://127.0.0.1:9")
            },
        );
        let ups = Upstreams::new(&cfg).unwrap();
        let req = |upstream: &str| Request {
            upstream: upstream.into(),
            method: "GET".into(),
            path: "/".into(),
            headers: vec![],
            body: None,
        };
        assert_eq!(
            ups.fetch(&["idp".into()], req("other")).await,
            Err(HttpError::UnknownUpstream("other".into()))
        );
        assert_eq!(
            ups.fetch(&[], req("idp")).await,
            Err(HttpError::UnknownUpstream("idp".into()))
        );
        let mut r = req("idp");
        r.headers.push(("Host".into(), "evil".into()));
        assert!(matches!(
            ups.fetch(&["idp".into()], r).await,
            Err(HttpError::InvalidRequest(_))
        ));
        let mut r = req("idp");
        r.method = "CONNECT".into();
        assert!(matches!(
            ups.fetch(&["idp".into()], r).await,
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[test]
    fn config_errors_name_the_key() {
        let check = |up: UpstreamConfig| up.validate("idp").unwrap_err().to_string();
        assert_eq!(
            check(UpstreamConfig::new("ftp://x")),
            "invalid config: upstreams.idp.url: `ftp://x` must be an http:// or https:// URL"
        );
        UpstreamConfig::new("https://idp.example/api")
            .validate("idp")
            .unwrap();
        let mut up = UpstreamConfig::new("https://idp.example/api");
        up.headers.insert("bad header".into(), "v".into());
        assert_eq!(
            check(up),
            "invalid config: upstreams.idp.headers: `bad header` is not a valid header name"
        );
        let mut up = UpstreamConfig::new("https://idp.example/api");
        up.timeout_ms = 0;
        assert!(check(up).starts_with("invalid config: upstreams.idp.timeout_ms: 0"));
    }

    #[test]
    fn ca_file_problems_name_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let load = |path: PathBuf| {
            let mut up = UpstreamConfig::new("https://127.0.0.1:9");
            up.ca_file = Some(path);
            match Upstreams::new(&BTreeMap::from([("idp".to_string(), up)])) {
                Ok(_) => panic!("ca_file must be refused"),
                Err(e) => e.to_string(),
            }
        };
        let missing = dir.path().join("missing.pem");
        let err = load(missing.clone());
        assert!(
            err.starts_with(&format!(
                "invalid config: upstreams.idp.ca_file: cannot read {}",
                missing.display()
            )),
            "{err}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let err = load(garbage);
        assert!(
            err.starts_with("invalid config: upstreams.idp.ca_file: ")
                && err.contains("no PEM certificate"),
            "{err}"
        );
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load(broken);
        assert!(
            err.starts_with("invalid config: upstreams.idp.ca_file: "),
            "{err}"
        );
    }
}
