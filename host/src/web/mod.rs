//! Embedded web pages: an index, a WHIP publish page and a WHEP play page.
//!
//! Everything is compiled into the binary (`include_bytes!`), written by us in plain HTML, CSS
//! and JavaScript: no framework, no CDN, no external fonts. The pages only talk to this server
//! (`/whip/{room}`, `/whep/{room}` and the session resources they return), and use relative URLs
//! so they keep working behind a reverse proxy that mounts the server under a path prefix.
//!
//! Caching: every response carries a strong `ETag` (a hash computed at compile time) and
//! `Cache-Control: no-cache`, so browsers revalidate on each use and get `304 Not Modified` while
//! the binary is unchanged, and never run a stale script against a newer server.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// A file served verbatim.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// Quoted strong entity tag, e.g. `"0123456789abcdef"`.
    etag: &'static str,
    /// HTML documents get the document-only security headers (CSP, referrer policy).
    document: bool,
}

/// FNV-1a 64 of `bytes`, as a quoted hexadecimal entity tag. Runs at compile time.
const fn entity_tag(bytes: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut d = 0;
    while d < 16 {
        out[1 + d] = HEX[((hash >> (60 - 4 * d)) & 0xf) as usize];
        d += 1;
    }
    out
}

macro_rules! asset {
    ($file:literal, $content_type:literal, $document:literal) => {{
        const BODY: &[u8] = include_bytes!($file);
        const TAG: [u8; 18] = entity_tag(BODY);
        Asset {
            body: BODY,
            content_type: $content_type,
            etag: match std::str::from_utf8(&TAG) {
                Ok(tag) => tag,
                Err(_) => panic!("entity tags are ASCII"),
            },
            document: $document,
        }
    }};
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8", true);
static PUBLISH: Asset = asset!("publish.html", "text/html; charset=utf-8", true);
static PLAY: Asset = asset!("play.html", "text/html; charset=utf-8", true);

/// Files under `/assets/`.
static ASSETS: &[(&str, Asset)] = &[
    (
        "whip-whep.js",
        asset!(
            "assets/whip-whep.js",
            "text/javascript; charset=utf-8",
            false
        ),
    ),
    (
        "pages.js",
        asset!("assets/pages.js", "text/javascript; charset=utf-8", false),
    ),
    (
        "style.css",
        asset!("assets/style.css", "text/css; charset=utf-8", false),
    ),
    (
        "favicon.svg",
        asset!("assets/favicon.svg", "image/svg+xml", false),
    ),
];

/// Scripts and styles come from this server only; media and the WHIP/WHEP requests may also use
/// https origins (a session endpoint may redirect to another node).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; media-src 'self' blob:; connect-src 'self' https:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The routes serving the pages: `GET /`, `GET /publish`, `GET /play` and `GET /assets/{file}`
/// (`HEAD` too). Merge them into the server's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve(&INDEX, &headers) }),
        )
        .route(
            "/publish",
            get(|headers: HeaderMap| async move { serve(&PUBLISH, &headers) }),
        )
        .route(
            "/play",
            get(|headers: HeaderMap| async move { serve(&PLAY, &headers) }),
        )
        .route("/assets/{file}", get(asset_file))
}

async fn asset_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == file) {
        Some((_, asset)) => serve(asset, &headers),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

/// True if an `If-None-Match` header matches `etag` (weak comparison, RFC 9110 section 13.1.2).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let mut response = if not_modified(request, asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut ok = asset.body.into_response();
        ok.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        ok
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.document {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `routes()` on an ephemeral port and performs one raw HTTP/1.1 request.
    async fn fetch(method: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, routes::<()>()).await.unwrap();
        });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut raw),
        )
        .await
        .expect("response within 10 s")
        .unwrap();
        server.abort();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = String::from_utf8(raw[..split].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    }

    #[tokio::test]
    async fn pages_are_served_with_types_and_caching_headers() {
        for (path, page) in [("/", "index"), ("/publish", "publish"), ("/play", "play")] {
            let (status, head, body) = fetch("GET", path, "").await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(
                header_value(&head, "content-type"),
                Some("text/html; charset=utf-8")
            );
            assert_eq!(header_value(&head, "cache-control"), Some("no-cache"));
            assert!(
                header_value(&head, "content-security-policy").is_some(),
                "{path}"
            );
            let body = String::from_utf8(body).unwrap();
            assert!(body.contains(&format!("data-page=\"{page}\"")), "{path}");
            assert!(body.contains("assets/pages.js"), "{path}");
        }
    }

    #[tokio::test]
    async fn assets_are_served_and_unknown_ones_are_404() {
        let (status, head, body) = fetch("GET", "/assets/whip-whep.js", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            header_value(&head, "content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            header_value(&head, "x-content-type-options"),
            Some("nosniff")
        );
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("export class Session")
        );

        let (status, head, _) = fetch("GET", "/assets/style.css", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            header_value(&head, "content-type"),
            Some("text/css; charset=utf-8")
        );

        let (status, _, _) = fetch("GET", "/assets/missing.js", "").await;
        assert_eq!(status, 404);
        let (status, _, _) = fetch("GET", "/assets/..%2fmod.rs", "").await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn matching_etag_revalidates_to_304() {
        let (_, head, _) = fetch("GET", "/assets/pages.js", "").await;
        let etag = header_value(&head, "etag").expect("etag").to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18,
            "{etag}"
        );

        let (status, head, body) = fetch(
            "GET",
            "/assets/pages.js",
            &format!("If-None-Match: W/{etag}, \"other\"\r\n"),
        )
        .await;
        assert_eq!(status, 304);
        assert!(body.is_empty());
        assert_eq!(header_value(&head, "etag"), Some(etag.as_str()));

        let (status, _, _) = fetch("GET", "/assets/pages.js", "If-None-Match: \"stale\"\r\n").await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn head_has_headers_and_no_body() {
        let (status, head, body) = fetch("HEAD", "/play", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            header_value(&head, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(body.is_empty());
    }

    #[test]
    fn entity_tags_differ_per_file() {
        let mut tags: Vec<&str> = ASSETS.iter().map(|(_, a)| a.etag).collect();
        tags.extend([INDEX.etag, PUBLISH.etag, PLAY.etag]);
        let count = tags.len();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), count);
    }
}
