//! The web dashboard: an axum [`Router`] to serve with `psychiq web` or to mount in your own
//! app under a prefix.
//!
//! Pages: Dashboard (totals, a live chart, history), Busy (processes with quiet/stop, running
//! jobs), Queues, Retries, Scheduled, Dead (page, search, select many), a job page, per-class
//! metrics; `/metrics` for Prometheus and `/api/stats` as JSON. Every asset is compiled in.
//!
//! Security: every state change is a POST carrying a token that must match a
//! `SameSite=Strict` cookie (double submit) from the same origin; everything shown is
//! HTML-escaped (maud) and a Content-Security-Policy allows only the dashboard's own script,
//! so injected markup cannot run; numbers from the URL are bounded; optional basic or bearer
//! authentication.
//!
//! ```no_run
//! # async fn demo() -> psychiq::Result<()> {
//! use psychiq::api::Api;
//! use psychiq::web::{WebConfig, router};
//! let api = Api::connect(&psychiq::RedisConfig::default(), "").await?;
//! let app = axum::Router::new().nest("/jobs", router(api, WebConfig::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # Ok(()) }
//! ```

mod actions;
mod extensions;
mod groups;
mod lookup;
mod metrics;
mod pages;
mod serve;
mod workflows;

pub use serve::{CONNECTION_LIFE, HEADER_TIMEOUT, MAX_CONNECTIONS, serve};

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;

use crate::api::Api;

/// How the dashboard guards itself: open to loopback only by default, or behind HTTP basic
/// authentication and/or a bearer token.
///
/// ```
/// use psychiq::web::WebConfig;
/// let config = WebConfig::default()
///     .basic_auth("ops", "s3cret")
///     .token("for-the-metrics-scraper")
///     .secure_cookie(true);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    pub(crate) basic_auth: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) secure_cookie: bool,
}

impl WebConfig {
    /// Requires HTTP basic authentication with this user and password.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        self.basic_auth = Some(format!("{user}:{password}"));
        self
    }
    /// Accepts `Authorization: Bearer TOKEN` instead of (or besides) basic credentials.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Without authentication, requests must name a loopback host (`localhost`,
    /// `127.0.0.1`, `[::1]`) or an allowed one in their `Host` header, so a web page whose
    /// name was re-pointed at 127.0.0.1 (DNS rebinding) is refused. Adds `host` to those.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }
    /// Marks the anti-forgery cookie `Secure` (the dashboard is served over HTTPS, e.g.
    /// behind a TLS proxy), so a browser never sends it over plain HTTP.
    pub fn secure_cookie(mut self, secure: bool) -> Self {
        self.secure_cookie = secure;
        self
    }
}

/// Shared by every handler.
pub(crate) struct Web {
    pub api: Api,
    pub config: WebConfig,
    /// What the last actions did, shown once on the page they redirect to.
    pub notices: Notices,
}

/// Notices kept on the server and named in the redirect by a random id, so a link from
/// elsewhere (`?notice=...`) cannot put its own words on a dashboard page.
#[derive(Default)]
pub(crate) struct Notices(std::sync::Mutex<std::collections::VecDeque<(String, String)>>);

impl Notices {
    /// Notices kept at most (the oldest unshown ones are dropped).
    const KEPT: usize = 256;

    /// Keeps `text`; returns the id to put in the redirect.
    pub fn put(&self, text: String) -> String {
        let id: [u8; 8] = rand::random();
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut notices = self.0.lock().expect("notices lock");
        if notices.len() >= Self::KEPT {
            notices.pop_front();
        }
        notices.push_back((id.clone(), text));
        id
    }

    /// The notice with this id, once.
    pub fn take(&self, id: Option<&str>) -> Option<String> {
        let id = id?;
        let mut notices = self.0.lock().expect("notices lock");
        let at = notices.iter().position(|(known, _)| known == id)?;
        notices.remove(at).map(|(_, text)| text)
    }
}

/// Per request: where the dashboard is mounted and the anti-forgery token.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// The mount prefix, e.g. `""` or `"/jobs"`.
    pub base: String,
    /// The token forms must send back (`_csrf`).
    pub csrf: String,
    /// Which Redis (password masked), db and namespace this dashboard shows.
    pub source: String,
}

impl Ctx {
    /// The dashboard's own address: `/`, or the prefix itself (axum's `nest` serves the
    /// root of `/jobs` at `/jobs`, not `/jobs/`).
    pub fn home(&self) -> &str {
        if self.base.is_empty() {
            "/"
        } else {
            &self.base
        }
    }
}

const CSRF_COOKIE: &str = "psychiq_csrf";

/// The dashboard as a router; mount it with `Router::nest` under any prefix.
pub fn router(api: Api, config: WebConfig) -> Router {
    let web = Arc::new(Web {
        api,
        config,
        notices: Notices::default(),
    });
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/busy", get(pages::busy).post(actions::busy))
        .route("/queues", get(pages::queues))
        .route("/queues/{name}", get(pages::queue).post(actions::queue))
        .route("/queues/{name}/{jid}", get(pages::queue_job))
        .route("/classes", get(pages::classes))
        .route("/jobs", get(lookup::search))
        .route("/jobs/{jid}", get(lookup::job))
        .route("/jobs/{jid}/cancel", axum::routing::post(lookup::cancel))
        .route("/periodic", get(extensions::periodic))
        .route("/limits", get(extensions::limits))
        .route("/batches", get(extensions::batches))
        .route("/groups", get(groups::list))
        .route("/groups/{queue}/{group}", axum::routing::post(groups::act))
        .route("/workflows", get(workflows::list))
        .route("/workflows/{wid}", get(workflows::show))
        .route(
            "/workflows/{wid}/cancel",
            axum::routing::post(workflows::cancel),
        )
        .route(
            "/workflows/{wid}/retry",
            axum::routing::post(workflows::retry),
        )
        .route("/unique", axum::routing::post(actions::unlock_unique))
        .route(
            "/iterations",
            get(extensions::iterations).post(extensions::cancel_iteration),
        )
        .route(
            "/periodic/{name}",
            axum::routing::post(extensions::act_on_periodic),
        )
        .route("/{set}", get(pages::set).post(actions::set))
        .route("/{set}/{jid}", get(pages::set_job))
        .route("/api/stats", get(pages::api_stats))
        .route("/api/history", get(pages::api_history))
        .route("/metrics", get(metrics::metrics))
        .route("/assets/app.css", get(pages::css))
        .route("/assets/app.js", get(pages::js))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&web),
            guard_forms,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&web),
            authenticate,
        ))
        .with_state(web)
}

/// The host part of a `Host` header: `[::1]:7433` → `[::1]`, `example.com:80` → `example.com`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Loopback names, and those the operator allowed.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host);
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|ok| name.eq_ignore_ascii_case(ok))
        || allowed
            .iter()
            .any(|ok| name.eq_ignore_ascii_case(host_name(ok)))
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Basic or bearer authentication, when configured.
async fn authenticate(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    let config = &web.config;
    if config.basic_auth.is_none() && config.token.is_none() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        if let Some(host) = host
            && !host_allowed(host, &config.allowed_hosts)
        {
            let message = format!(
                "this dashboard does not answer to Host {host:?}; start it with --allowed-host {} (or with --basic-auth / --token)\n",
                host_name(host)
            );
            return (StatusCode::MISDIRECTED_REQUEST, message).into_response();
        }
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let ok = match given.trim_start().split_once(' ') {
        Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
            config.basic_auth.as_ref().is_some_and(|pair| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .is_ok_and(|decoded| same_secret(&decoded, pair.as_bytes()))
            })
        }
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => config
            .token
            .as_ref()
            .is_some_and(|t| same_secret(token.trim().as_bytes(), t.as_bytes())),
        _ => false,
    };
    if ok {
        return next.run(request).await;
    }
    let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    if config.basic_auth.is_some() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Psychiq\", charset=\"UTF-8\""),
        );
    }
    response
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a POST comes from a page of this dashboard: same origin, and (checked by the
/// handler) a form token equal to the cookie.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest == host)
        }
    }
}

/// Whether a request was made by another site's page without the person opening the
/// dashboard (an `<img>`, a script, a `fetch`, an `<iframe>`): browsers say so in
/// `Sec-Fetch-Site`, `-Mode` and `-Dest`. Such requests are refused, so no web page can
/// make an open dashboard scan big sets; following a link (a top-level navigation) works.
fn embedded_from_elsewhere(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    matches!(get("sec-fetch-site"), Some("cross-site" | "same-site"))
        && (get("sec-fetch-mode") != Some("navigate")
            || !matches!(get("sec-fetch-dest"), None | Some("document")))
}

/// Gives every request its [`Ctx`], refuses cross-origin POSTs and requests embedded in
/// other sites' pages, sets the token cookie when it is new, and adds the security headers.
async fn guard_forms(
    State(web): State<Arc<Web>>,
    OriginalUri(original): OriginalUri,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let full = original.path();
    let base = if path == "/" {
        // The root of a nested router: `/jobs` arrives as `/`.
        full.trim_end_matches('/')
    } else {
        full.strip_suffix(path.as_str()).unwrap_or("")
    }
    .trim_end_matches('/')
    .to_string();
    // Only plain path characters go into links and the cookie's Path.
    let base = if base
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~%".contains(&b))
    {
        base
    } else {
        String::new()
    };
    if request.method() == axum::http::Method::POST && !same_origin(request.headers()) {
        return (StatusCode::FORBIDDEN, "cross-site request refused\n").into_response();
    }
    if embedded_from_elsewhere(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "the dashboard does not serve requests embedded in other sites' pages\n",
        )
            .into_response();
    }
    let existing = cookie(request.headers(), CSRF_COOKIE)
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string);
    let fresh = existing.is_none();
    let csrf = existing.unwrap_or_else(|| {
        let bytes: [u8; 16] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    request.extensions_mut().insert(Ctx {
        base: base.clone(),
        csrf: csrf.clone(),
        source: web.api.source(),
    });
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if fresh {
        let path = if base.is_empty() { "/" } else { base.as_str() };
        if let Ok(value) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={csrf}; Path={path}; HttpOnly; SameSite=Strict{}",
            if web.config.secure_cookie {
                "; Secure"
            } else {
                ""
            }
        )) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn only_loopback_and_allowed_hosts_without_authentication() {
        let allowed = vec!["jobs.internal".to_string()];
        for host in [
            "localhost:7433",
            "127.0.0.1",
            "[::1]:7433",
            "LOCALHOST",
            "jobs.internal:80",
        ] {
            assert!(host_allowed(host, &allowed), "{host}");
        }
        for host in ["attacker.example:7433", "127.0.0.1.evil.example", "[::2]"] {
            assert!(!host_allowed(host, &allowed), "{host}");
        }
    }

    #[test]
    fn origins_must_match_the_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7433"));
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7433"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&headers));
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
    }
}
