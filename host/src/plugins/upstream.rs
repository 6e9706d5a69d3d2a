//! `switchboard:plugin/http`: requests to upstreams the operator declared by name.
//!
//! A plugin names an upstream and a path below its URL; it never supplies a host. Redirects
//! are not followed (they could leave the upstream), bodies are capped both ways, and the
//! operator's configured headers (API keys) are added by the host so plugins never hold them.

use super::PluginError;
use super::bindings::switchboard::plugin::http::{HttpError, Request, Response};
use super::config::UpstreamConfig;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Largest request body a plugin may send.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Headers the host controls; a plugin setting them is refused.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

struct Upstream {
    base: Url,
    timeout: Duration,
    headers: HeaderMap,
    max_response_bytes: usize,
}

/// All declared upstreams and one shared HTTP client.
pub struct Upstreams {
    client: reqwest::Client,
    by_name: HashMap<String, Upstream>,
}

impl Upstreams {
    pub fn new(config: &BTreeMap<String, UpstreamConfig>) -> Result<Self, PluginError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PluginError::Engine(format!("cannot build the HTTP client: {e}")))?;
        let mut by_name = HashMap::new();
        for (name, up) in config {
            let bad = |message: String| PluginError::Upstream {
                name: name.clone(),
                message,
            };
            let base = Url::parse(&up.url).map_err(|e| bad(format!("url: {e}")))?;
            let mut headers = HeaderMap::new();
            for (k, v) in &up.headers {
                let k = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| bad(format!("headers: `{k}` is not a valid header name")))?;
                let v = HeaderValue::from_str(v)
                    .map_err(|_| bad(format!("headers.{k}: not a valid header value")))?;
                headers.insert(k, v);
            }
            by_name.insert(
                name.clone(),
                Upstream {
                    base,
                    timeout: Duration::from_millis(up.timeout_ms),
                    headers,
                    max_response_bytes: up.max_response_kib as usize * 1024,
                },
            );
        }
        Ok(Upstreams { client, by_name })
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
        let mut builder = self.client.request(method, url).headers(headers);
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

fn transport(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout
    } else {
        // The error's Display includes the URL, which the operator may not want plugins to
        // learn; the source chain holds the useful part.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let mut msg = e.without_url().to_string();
        for cause in causes {
            msg = format!("{msg}: {cause}");
        }
        HttpError::Transport(msg)
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
                url: "http://127.0.0.1:9".into(),
                timeout_ms: 100,
                headers: BTreeMap::new(),
                max_response_kib: 1,
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
}
