//! Which `Host` names the server answers to: a defence against DNS rebinding.
//!
//! A web page on `evil.example` can point its own name at 127.0.0.1 and then talk to a server
//! on the developer's machine as if same-origin; CORS does not stop that, the `Host` header
//! does (it says `evil.example`). Requests are answered when the host is an IP literal (no
//! rebinding through those), `localhost`, the host of `http.public_url`, or listed in
//! `http.allowed_hosts` (`*.example.com` wildcards; `"*"` turns the check off). Health
//! endpoints are exempt, for load balancers and probes that send anything.

use super::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use std::net::IpAddr;
use std::sync::Arc;

/// Paths answered whatever the host (probes).
const EXEMPT: [&str; 2] = ["/healthz", "/readyz"];

#[derive(Debug, Clone)]
pub struct HostCheck {
    /// Lower-case names (or `*.suffix` patterns) besides IP literals and `localhost`.
    names: Vec<String>,
    any: bool,
}

impl HostCheck {
    pub fn new(public_url: &str, allowed_hosts: &[String]) -> HostCheck {
        let mut names: Vec<String> = allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if let Some(host) = reqwest::Url::parse(public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        {
            names.push(host);
        }
        HostCheck {
            any: names.iter().any(|n| n == "*"),
            names,
        }
    }

    /// Whether a request with this `Host` value (name, optional port) may be answered.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let name = strip_port(host.trim()).to_ascii_lowercase();
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<IpAddr>().is_ok() || name == "localhost" {
            return true;
        }
        self.names
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(suffix) => name
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
                None => *allowed == name,
            })
    }
}

/// `example.com:8080` -> `example.com`, `[::1]:8080` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Middleware: refuse requests for names this server is not (403).
pub async fn check_host(
    State(check): State<Arc<HostCheck>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if EXEMPT.contains(&req.uri().path()) {
        return Ok(next.run(req).await);
    }
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(host) if !check.allows(&host) => {
            tracing::info!(%host, path = %req.uri().path(), "request refused: unknown Host");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{host}` is not a name of this server (add it to http.allowed_hosts)"
                ),
            ))
        }
        _ => Ok(next.run(req).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_literals_and_wildcards() {
        let check = HostCheck::new("https://live.example.com/sb", &["*.cdn.example.net".into()]);
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "192.0.2.7",
            "localhost:8080",
            "LIVE.example.com",
            "live.example.com:443",
            "edge1.cdn.example.net",
        ] {
            assert!(check.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "cdn.example.net",
            "example.com",
            "live.example.com.evil.example",
            "localhost.evil.example",
        ] {
            assert!(!check.allows(bad), "{bad}");
        }
        assert!(HostCheck::new("", &["*".into()]).allows("anything.at.all"));
        assert!(!HostCheck::new("", &[]).allows("rebind.example"));
    }
}
