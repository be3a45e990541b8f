//! # roost-server: the HTTPS service
//!
//! [`Server::build`] opens the store, loads every structure, binds the listeners (port 0 works:
//! the bound addresses are in [`Server::url`]) and prepares TLS; [`Server::run`] serves until
//! the shutdown token is cancelled, then closes streams, finishes in-flight requests and lets
//! the store finish every queued write.
//!
//! Only this crate knows HTTP.

pub mod admin;
pub mod api;
pub mod auth;
pub mod change;
pub mod clock;
pub mod config;
pub mod connectivity;
pub mod error;
pub mod feed;
pub mod follow;
pub mod history;
pub mod http;
pub mod hub;
pub mod ids;
pub mod listen;
pub mod oauth;
pub mod openapi;
pub mod ratelimit;
pub mod reference;
pub mod stream;
pub mod tls;
pub mod web;

pub use config::Config;
pub use follow::POLL_INTERVAL;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use roost_store::{SqliteStore, Store, StoreOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub struct AppInner {
    pub store: Arc<dyn Store>,
    pub hub: hub::Hub,
    pub grants: auth::Grants,
    pub streams: stream::Streams,
    pub connectivity: connectivity::Connectivity,
    pub limiter: ratelimit::Limiter,
    /// The data listener's base URL (the OAuth issuer).
    pub public_url: String,
    pub config: Config,
    pub shutdown: CancellationToken,
    metrics: Option<PrometheusHandle>,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct App(Arc<AppInner>);

impl std::ops::Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl App {
    /// A token was revoked: it stops resolving and its open streams get `auth_revoked`.
    pub fn revoke(&self, hash: &[u8; 32]) {
        self.grants.revoked(hash);
        self.streams.revoke(hash);
    }

    /// Where this server makes changes (see [`change::make`]).
    pub fn ground(&self) -> change::Ground<'_> {
        change::Ground { store: self.store.as_ref(), hub: &self.hub, rules: &self.config.rules }
    }
}

/// Opens the store the operator chose, for the server and `roost admin`: PostgreSQL when
/// `database` is given, otherwise the embedded store in the data dir (see [`open_store`]).
/// The one place a backend is chosen; everything after holds a `dyn Store`.
pub async fn connect_store(
    dir: &std::path::Path,
    database: Option<&str>,
    pool_size: usize,
    changelog_keep: u64,
    wakeups: bool,
) -> anyhow::Result<Arc<dyn Store>> {
    match database {
        Some(url) => {
            let options = roost_store::PgOptions {
                changelog_keep,
                pool_size,
                wakeups,
                ..roost_store::PgOptions::default()
            };
            let store: Arc<dyn Store> = roost_store::PgStore::open(url, options)
                .await
                .with_context(|| format!("opening the database {}", roost_store::redacted(url)))?;
            Ok(store)
        }
        None => {
            // Opening runs migrations and reads on this thread: off the runtime's workers.
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || open_store(&dir, changelog_keep)).await?
        }
    }
}

/// The embedded SQLite backend in the data dir (created when missing).
pub fn open_store(dir: &std::path::Path, changelog_keep: u64) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    let store: Arc<dyn Store> =
        SqliteStore::open(&dir.join("roost.db"), StoreOptions { changelog_keep, ..StoreOptions::default() })?;
    Ok(store)
}

pub struct Server {
    app: App,
    store: Arc<dyn Store>,
    data: std::net::TcpListener,
    front: Option<std::net::TcpListener>,
    tls: Option<tls::TlsFiles>,
    url: String,
    pub demo: Option<admin::DemoInfo>,
    /// Held while the server runs: one `roost serve` per data dir.
    _lock: std::fs::File,
}

/// Takes the data dir's server lock, or says who holds it. Two servers on one embedded store
/// would each keep a hub of their own and learn of the other's commits only by polling, and
/// `--demo` would re-pair the demo devices under the other's simulator; several nodes are
/// for a shared database server, not a shared data dir.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    let path = dir.join("serve.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "data dir {} is in use by another `roost serve` (pid {}); run one server per data dir \
                 (`roost admin` works beside it)",
                dir.display(),
                holder.trim()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

impl Server {
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Server> {
        if config.insecure_http && !config.listen.ip().is_loopback() {
            bail!("--insecure-http is allowed only on a loopback address (listen = {})", config.listen);
        }
        let lock = lock_data_dir(&config.data_dir)?;
        let store = connect_store(
            &config.data_dir,
            config.database.as_deref(),
            config.database_pool,
            config.changelog_keep,
            config.database_wakeups,
        )
        .await?;
        let tls = if config.insecure_http {
            None
        } else {
            match (&config.tls_cert, &config.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(tls::TlsFiles { cert: cert.clone(), key: key.clone(), ca: None })
                }
                (None, None) => Some(tls::ensure_local_ca(&config.data_dir, &config.hostnames)?),
                _ => bail!("tls_cert and tls_key must be set together"),
            }
        };
        let data = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        data.set_nonblocking(true)?;
        let addr = data.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if addr.ip().is_loopback() && tls.is_some() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        let url = format!("{scheme}://{host}");
        let front = match config.front_listen {
            Some(a) => {
                let l = std::net::TcpListener::bind(a).with_context(|| format!("binding front door {a}"))?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let demo = if config.demo {
            Some(
                admin::ensure_demo(
                    store.as_ref(),
                    &config.data_dir,
                    &url,
                    tls.as_ref().and_then(|t| t.ca.as_deref()),
                    &config.rules,
                )
                .await?,
            )
        } else {
            None
        };
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().ok();
        let app = App(Arc::new(AppInner {
            store: store.clone(),
            hub: hub::Hub::default(),
            grants: auth::Grants::default(),
            streams: stream::Streams::default(),
            connectivity: connectivity::Connectivity::default(),
            limiter: ratelimit::Limiter::new(config.database.is_some()),
            public_url: url.clone(),
            config,
            shutdown,
            metrics,
        }));
        // On the embedded store paired devices are tracked from the start: one that never
        // comes back goes offline. Not on a shared database: a device talking to another node
        // would be written offline by this one (each node tracks the devices it sees).
        if app.config.database.is_none() {
            for t in app.store.device_tokens().await? {
                if let (Some(device), Some(structure)) = (&t.device_id, t.structures.first()) {
                    app.connectivity.seen(device, structure);
                }
            }
        }
        Ok(Server { app, store, data, front, tls, url, demo, _lock: lock })
    }

    /// The data listener's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn front_addr(&self) -> Option<SocketAddr> {
        self.front.as_ref().and_then(|f| f.local_addr().ok())
    }

    pub fn ca(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().and_then(|t| t.ca.as_deref())
    }

    pub fn structures(&self) -> usize {
        self.app.hub.len()
    }

    pub fn router(app: App) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_page))
            .route("/login/oauth2", get(oauth::authorize_page).post(oauth::authorize_decision))
            .route("/login", axum::routing::post(oauth::login_submit))
            .route("/logout", axum::routing::post(oauth::logout))
            .route("/connections", get(oauth::connections_page))
            .route("/developer", get(oauth::developer_page).post(oauth::developer_create))
            .route("/connections/revoke", axum::routing::post(oauth::connections_revoke))
            .route("/oauth2/access_token", axum::routing::post(oauth::token))
            .route("/oauth2/access_tokens/{token}", axum::routing::delete(oauth::revoke_original))
            .route("/oauth2/revoke", axum::routing::post(oauth::revoke_rfc7009))
            .route("/.well-known/oauth-authorization-server", get(oauth::metadata))
            .route("/presence/{structure_id}", axum::routing::put(api::presence).post(api::presence))
            .route("/history/{structure_id}", get(history::history))
            .route("/home", get(web::home_page))
            .route("/reference", get(reference::reference_page))
            .route("/openapi.json", get(openapi::openapi_json))
            .route("/assets/{name}", get(web::asset))
            .fallback(api::data)
            .layer(axum::middleware::from_fn(api::observe))
            .with_state(app)
    }

    /// Serves until shutdown; then drains.
    pub async fn run(self) -> anyhow::Result<()> {
        let Server { app, store, data, front, tls, url, _lock, .. } = self;
        let gate = listen::Gate::new(app.config.max_connections);
        let positions = follow::feed_positions(app.store.as_ref()).await;
        let poller = tokio::spawn(follow::poll_other_writers(app.clone(), positions));
        let clock = tokio::spawn(clock::run(app.clone()));
        let due_times = tokio::spawn(clock::record_due_times(app.clone()));
        // Limits hold for the cluster as a whole: only a shared database has other nodes.
        let sharing = app.config.database.is_some().then(|| tokio::spawn(ratelimit::share(app.clone())));
        let router = Front { router: Server::router(app.clone()), data: Some(app.clone()) };
        let acceptor = match &tls {
            Some(files) => Some(files.acceptor().context("loading the TLS certificate")?),
            None => None,
        };
        const DRAIN: Duration = Duration::from_secs(10);
        let mut tasks = Vec::new();
        let h2 = app.config.h2_max_streams;
        if let Some(front) = front {
            let target = app.config.front_location.clone().map(|h| {
                let scheme = if tls.is_some() { "https" } else { "http" };
                if h.contains("://") { h } else { format!("{scheme}://{h}") }
            });
            let target = target.unwrap_or_else(|| url.clone());
            let limit = app.config.body_limit;
            let redirect = Front::routed(Router::new().fallback(move |uri: Uri, body: axum::body::Body| {
                let target = target.clone();
                async move {
                    // Read the request body before answering: a client still sending a PUT
                    // body would otherwise see its stream reset (curl over HTTP/2 reports a
                    // framing error). Bounded like every body.
                    let _ = axum::body::to_bytes(body, limit).await;
                    redirect(&target, &uri)
                }
            }));
            let serving =
                listen::serve(front, acceptor.clone(), redirect, listen::builder(), gate.clone(), DRAIN);
            tasks.push(tokio::spawn(serving));
        }
        let mut builder = listen::builder();
        tune(&mut builder, h2);
        tasks.push(tokio::spawn(listen::serve(data, acceptor, router, builder, gate.clone(), DRAIN)));
        app.shutdown.cancelled().await;
        app.streams.close_all();
        clock.abort();
        due_times.abort();
        if let Some(sharing) = &sharing {
            sharing.abort();
        }
        tracing::info!("shutting down: closing streams, finishing requests");
        gate.close();
        for t in tasks {
            let _ = t.await;
        }
        poller.abort();
        // Waits for the store's threads to finish the queued writes: off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("stopped; every acknowledged write is on disk");
        Ok(())
    }
}

/// Connection settings: many streams per HTTP/2 connection (one load balancer connection can
/// carry thousands of subscriptions), and header limits large enough that oversized headers
/// reach the handler, which answers in the API's error shape.
fn tune(b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>, h2_streams: u32) {
    b.http1().max_buf_size(MAX_HEADER_BYTES);
    b.http2().max_concurrent_streams(h2_streams).max_header_list_size(MAX_HEADER_BYTES as u32);
}

/// Largest request head accepted; beyond it the HTTP layer refuses the request (431 on
/// HTTP/1.1, a stream reset on HTTP/2) before any handler runs.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

/// What a listener serves: `router`, except that a data API request (a path under `/`,
/// `/devices`, `/structures` or `/metadata`, which no other route takes) goes straight to
/// [`api::data_unrouted`] when `data` is set. The router would give it to the same handler
/// as its fallback; skipping its matching and layers is a quarter of a leaf GET's
/// instructions.
#[derive(Clone)]
pub struct Front {
    router: Router,
    data: Option<App>,
}

impl Front {
    /// Everything through `router`.
    pub fn routed(router: Router) -> Front {
        Front { router, data: None }
    }
}

/// Whether no route but the data API's fallback can take `path`.
fn is_data_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    matches!(first, "" | "devices" | "structures" | "metadata")
}

impl tower::Service<axum::http::Request<hyper::body::Incoming>> for Front {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // The router is always ready, and so is the data API.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        use tower::ServiceExt;
        match &self.data {
            Some(app) if is_data_path(req.uri().path()) => {
                let app = app.clone();
                Box::pin(async move { Ok(api::data_unrouted(app, req).await) })
            }
            _ => Box::pin(self.router.clone().oneshot(req)),
        }
    }
}

fn redirect(target: &str, uri: &Uri) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("{}{}", target.trim_end_matches('/'), path);
    let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn healthz() -> Response {
    http::json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn readyz(State(app): State<App>) -> Response {
    match app.store.feed_head().await {
        Ok(_) => {
            http::json_response(StatusCode::OK, &json!({"status": "ready", "structures": app.hub.len()}))
        }
        Err(e) => error::Error::store(&e).into_response(),
    }
}

async fn metrics_page(State(app): State<App>) -> Response {
    let body = app.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

#[cfg(test)]
mod tests {
    use super::is_data_path;

    #[test]
    fn data_paths_are_the_data_apis_own() {
        for data in
            ["/", "", "/devices", "/devices/thermostats/t1", "//structures/s1", "/metadata/client_version"]
        {
            assert!(is_data_path(data), "{data}");
        }
        for other in ["/healthz", "/presence/s1", "/oauth2/access_token", "/devicesx", "/%64evices"] {
            assert!(!is_data_path(other), "{other}");
        }
        // Every route the router spells out keeps its path: none of them is a data path,
        // or `Front` would hand its requests to the data API instead.
        let source = include_str!("lib.rs");
        let router = &source[source.find("pub fn router(").unwrap_or(0)..];
        let router = &router[..router.find(".fallback(").unwrap_or(router.len())];
        let routes: Vec<&str> =
            router.split(".route(\"").skip(1).filter_map(|r| r.split('"').next()).collect();
        assert!(routes.len() >= 10, "{routes:?}");
        for route in routes {
            assert!(!is_data_path(route), "{route}");
        }
    }
}
