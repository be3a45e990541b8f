//! The data API (docs/compatibility.md §3, §4): `GET` any data location as JSON or as a stream,
//! `PUT`/`PATCH` a merge write; everything else is 405. Thin: parsing and the HTTP shape live
//! here, every decision about the document is `roost_model`'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use roost_model::view::{Snapshot, covered, read_location};
use roost_model::{Actor, ApiError, Location, Metadata, plan_write};
use roost_store::IdempotencyKey;
use serde_json::Value;

use crate::App;
use crate::auth::Grant;
use crate::change::{self, Edit};
use crate::error::Error;
use crate::http::{
    Received, add_budget_headers, etag, hex8, if_match_ok, json_body, json_response, read_body, token_of,
};

/// The request's token and its live grant, or 401.
pub(crate) async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(String, Arc<Grant>), Error> {
    let token = token_of(headers, uri).ok_or_else(ApiError::unauthorized)?;
    let grant = app.grants.resolve(app.store.as_ref(), &token).await?.ok_or_else(ApiError::unauthorized)?;
    Ok((token, grant))
}

/// The structures a request at `location` reads or writes: the one the location names (a
/// structure, or a device found through the hub's index) when the grant covers it, else
/// every structure of the grant. So a request for one element costs the same whether the
/// token covers one home or a thousand.
///
/// A structure of the scope that the hub does not hold yet is loaded: one that another
/// process (`roost admin`, another node) created since the poller last looked, whose first
/// requests would otherwise be 404 until the next poll.
pub(crate) async fn scope(app: &App, grant: &Grant, location: &Location) -> Result<Vec<String>, Error> {
    let named: Option<String> = match (location.get(0), location.get(1), location.get(2)) {
        (Some("structures"), Some(id), _) => Some(id.to_string()),
        (Some("devices"), Some(kind), Some(id)) if roost_model::Entity::from_collection(kind).is_some() => {
            app.hub.structure_of_device(id).map(|s| s.to_string())
        }
        _ => None,
    };
    let ids = match named {
        Some(id) if grant.covers(&id) => vec![id],
        _ => grant.structures.clone(),
    };
    for id in &ids {
        if app.hub.slot(id).is_none_or(|s| s.is_stale()) {
            app.hub.reload(app.store.as_ref(), id).await?;
        }
        if let Some(slot) = app.hub.slot(id) {
            slot.touch();
        }
    }
    Ok(ids)
}

/// The data API as the router's fallback (requests that skip the router come in through
/// [`data_unrouted`]).
pub async fn data(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(&app, &method, &uri, &headers, body).await
}

/// A data API request's answer, whichever way it came in.
async fn answer(app: &App, method: &Method, uri: &Uri, headers: &HeaderMap, body: Body) -> Response {
    // The body is read (bounded) before anything is judged: an answer given while a body is
    // still unread would make the server close the keep-alive connection, and a client that
    // reuses it (python-nest after a 401, say) would see it drop.
    let body = read_body(body, app.config.body_limit).await;
    handle(app, method, uri, headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Received,
) -> Result<Response, Error> {
    if !matches!(*method, Method::GET | Method::HEAD | Method::PUT | Method::PATCH) {
        return Err(ApiError::method_not_allowed(method.as_str()).into());
    }
    let (token, grant) = authenticate(app, headers, uri).await?;
    let location = Location::parse(uri.path())?;
    let metadata = Metadata {
        access_token: token,
        client_version: grant.client_version,
        user_id: grant.user_id.clone(),
    };
    let wants_stream = matches!(*method, Method::GET | Method::HEAD)
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"));
    if let (Some(d), Some(s)) = (&grant.device_id, grant.structures.first()) {
        app.connectivity.seen(d, s);
    }
    let budget = charge_call(app, &grant)?;
    let structures = scope(app, &grant, &location).await?;
    if wants_stream {
        // The first stream of a token or user on this node: ask the other nodes (in a cluster) what they
        // hold open before counting (later opens use the counts exchanged every half second).
        let keys = [crate::stream::token_gauge(&grant.hash), crate::stream::user_gauge(&grant.user_id)];
        app.limiter.learn(app.store.as_ref(), &keys).await;
    }
    if budget.is_some() && wants_stream {
        let key = format!("streams:{}", hex8(&grant.hash));
        app.limiter
            .take(&key, app.config.limits.stream_opens_per_token_per_hour, Duration::from_secs(3600))
            .map_err(|b| blocked(&b))?;
    }
    let mut resp = match *method {
        Method::GET | Method::HEAD if wants_stream => {
            crate::stream::open(app, grant, &structures, location, metadata, headers, uri)
        }
        Method::GET | Method::HEAD => read(app, &grant, &structures, &location, &metadata),
        _ => write(app, &grant, &structures, &location, headers, body).await,
    }?;
    if let Some(b) = budget {
        add_budget_headers(resp.headers_mut(), &b);
    }
    Ok(resp)
}

/// One call from the token's per-minute budget. Products' and devices' tokens are rate
/// limited; operator-issued tokens are not (`None`).
fn charge_call(app: &App, grant: &Grant) -> Result<Option<crate::ratelimit::Budget>, Error> {
    if grant.product_id.is_none() && grant.device_id.is_none() {
        return Ok(None);
    }
    let key = format!("calls:{}", hex8(&grant.hash));
    app.limiter
        .take(&key, app.config.limits.calls_per_token_per_minute, Duration::from_secs(60))
        .map(Some)
        .map_err(|b| blocked(&b).into())
}

/// A rate-limit refusal: 429 `blocked`, with when to retry.
fn blocked(b: &crate::ratelimit::Budget) -> ApiError {
    let mut e = ApiError::blocked();
    e.message = format!("Rate limit reached; retry in {} s", b.reset);
    e.with("retry_after", b.reset.to_string())
}

fn read(
    app: &App,
    grant: &Grant,
    structures: &[String],
    location: &Location,
    metadata: &Metadata,
) -> Result<Response, Error> {
    let snaps = app.hub.snapshots(structures);
    let value = read_location(&snaps, grant.viewer(), metadata, location)
        .ok_or_else(|| ApiError::not_found(&location.to_string()))?;
    let mut resp = json_response(StatusCode::OK, &value);
    resp.headers_mut().insert(header::ETAG, etag(&covered(location, &snaps)));
    Ok(resp)
}

async fn write(
    app: &App,
    grant: &Grant,
    structures: &[String],
    location: &Location,
    headers: &HeaderMap,
    body: Received,
) -> Result<Response, Error> {
    let (value, raw) = json_body(body)?;
    let snaps = app.hub.snapshots(structures);
    let plan = plan_write(location, &value, snaps.iter().map(|s| &s.home))?;
    if grant.product_id.is_some() {
        // Writes per device and per structure, shared by every product.
        let limits = &app.config.limits;
        let hour = Duration::from_secs(3600);
        for w in &plan.writes {
            if let roost_model::write::Target::Device(_, id) = &w.target {
                app.limiter
                    .take(&format!("device:{id}"), limits.writes_per_device_per_hour, hour)
                    .map_err(|b| blocked(&b))?;
            }
        }
        let key = format!("structure:{}", plan.structure_id);
        app.limiter.take(&key, limits.writes_per_structure_per_hour, hour).map_err(|b| blocked(&b))?;
    }
    let (actor, actor_name) = match (&grant.device_id, &grant.product_id) {
        (Some(d), _) => (Actor::Device { device_id: d.clone() }, format!("device:{d}")),
        (None, Some(p)) => (Actor::Product { permissions: grant.permissions }, format!("product:{p}")),
        (None, None) => {
            (Actor::Product { permissions: grant.permissions }, format!("token:{}", hex8(&grant.hash)))
        }
    };
    // If-Match is judged against what this location covers, as GET reported it.
    let precondition = |current: &Arc<Snapshot>| {
        let mut snaps = app.hub.snapshots(structures);
        for s in snaps.iter_mut() {
            if s.home.id() == current.home.id() {
                *s = current.clone();
            }
        }
        let tag = etag(&covered(location, &snaps));
        if if_match_ok(headers, &tag) { Ok(()) } else { Err(ApiError::precondition_failed(current.revision)) }
    };
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(IdempotencyKey {
            scope: match &grant.device_id {
                Some(d) => format!("device:{d}"),
                None => {
                    format!("token:{}", crate::ids::hex(&grant.hash))
                }
            },
            key: v
                .to_str()
                .ok()
                .filter(|k| (1..=255).contains(&k.len()))
                .ok_or_else(|| {
                    ApiError::invalid_header("Idempotency-Key", "1 to 255 visible ASCII characters")
                })?
                .to_string(),
        }),
    };
    let measured_at = match headers.get("roost-measured-at") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .ok_or_else(|| ApiError::invalid_header("Roost-Measured-At", "an RFC 3339 time"))?,
        ),
    };
    // The change log records the request's key with its writer (audit: which request made it).
    let actor_name = match &idempotency {
        Some(k) => format!("{actor_name} key:{}", k.key),
        None => actor_name,
    };
    let has_if_match = headers.contains_key(header::IF_MATCH);
    let options = change::Options {
        measured_at,
        idempotency,
        precondition: if has_if_match { Some(&precondition) } else { None },
    };
    let outcome = change::make(app.ground(), Edit::Plan(&plan), &actor, &actor_name, options).await?;
    let mut resp = echo(raw, &etag(&[&outcome.snapshot]));
    if outcome.replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if !outcome.stale.is_empty()
        && let Ok(v) = HeaderValue::from_str(&outcome.stale.join(", "))
    {
        resp.headers_mut().insert("roost-stale-fields", v);
    }
    Ok(resp)
}

/// The answer to a write: the JSON that was written, as it was sent (it parsed as JSON).
fn echo(raw: Bytes, tag: &HeaderValue) -> Response {
    let mut resp = (StatusCode::OK, raw).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    h.insert(header::ETAG, tag.clone());
    resp
}

/// Metrics and an access log line per request (path only: query strings can hold tokens).
pub async fn observe(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = logged_path(req.uri());
    let resp = next.run(req).await;
    observed(&method, path, started, &resp);
    resp
}

/// The request's path for the access log, only when the debug log is on (it is a copy).
fn logged_path(uri: &Uri) -> Option<String> {
    tracing::enabled!(tracing::Level::DEBUG).then(|| uri.path().to_string())
}

fn observed(method: &Method, path: Option<String>, started: Instant, resp: &Response) {
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    request_metrics(method, status, elapsed);
    if let Some(path) = path {
        tracing::debug!(%method, path = %truncate(&path, 200), status, micros = elapsed.as_micros() as u64, "request");
    }
}

/// The data API for a request that no other route can take (see `crate::Front`): what the
/// router's fallback to [`data`] and the [`observe`] layer do, without the router's matching,
/// the layer's boxing and the extractors' copies of the headers (a quarter of a leaf GET's
/// instructions in user space). As the router does, the answer carries its length, and an
/// answer to `HEAD` has no body.
pub async fn data_unrouted(app: App, req: axum::http::Request<hyper::body::Incoming>) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = logged_path(&parts.uri);
    let mut resp = answer(&app, &parts.method, &parts.uri, &parts.headers, Body::new(body)).await;
    if !resp.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(len) = axum::body::HttpBody::size_hint(resp.body()).exact()
    {
        resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if parts.method == Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    observed(&parts.method, path, started, &resp);
    resp
}

/// Request counters and latency histograms, with their handles registered once per
/// (method, status) instead of looked up by labels on every request.
fn request_metrics(method: &Method, status: u16, elapsed: Duration) {
    use std::collections::HashMap;
    use std::sync::LazyLock;

    use parking_lot::RwLock;
    type Handles = (metrics::Counter, metrics::Histogram);
    static HANDLES: LazyLock<RwLock<HashMap<(Method, u16), Handles>>> = LazyLock::new(Default::default);
    let key = (method.clone(), status);
    let cached = HANDLES.read().get(&key).cloned();
    let (counter, histogram) = match cached {
        Some(h) => h,
        None => {
            let h = (
                metrics::counter!("roost_http_requests_total", "method" => method.to_string(), "status" => status.to_string()),
                metrics::histogram!("roost_http_request_seconds", "method" => method.to_string()),
            );
            // Bounded: methods the router accepts times the statuses it answers.
            let mut map = HANDLES.write();
            if map.len() < 1024 {
                map.insert(key, h.clone());
            }
            h
        }
    };
    counter.increment(1);
    histogram.record(elapsed.as_secs_f64());
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub const KEEPALIVE_DEFAULT: Duration = Duration::from_secs(30);

/// `PUT /presence/<structure_id>` with `{"present": true}`: a phone (through a product with
/// `away:write`) says someone is home. It raises the structure's `last_presence_at`, and
/// Home/Away Assist may bring an away home back (see `roost_model::assist`). `false` is
/// accepted and changes nothing: quiet is counted from the last signal.
pub async fn presence(
    State(app): State<App>,
    axum::extract::Path(structure_id): axum::extract::Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let body = read_body(body, app.config.body_limit).await;
    let (app, structure_id) = (&app, structure_id.as_str());
    let (_, grant) = authenticate(app, &headers, &uri).await?;
    let location = format!("/presence/{structure_id}");
    if grant.device_id.is_some() || !grant.structures.iter().any(|s| s == structure_id) {
        return Err(ApiError::not_found(&location).into());
    }
    if !grant.permissions.contains(roost_model::Permission::AwayReadWrite) {
        return Err(ApiError::no_write_permission(&["presence".to_string()]).into());
    }
    let budget = charge_call(app, &grant)?;
    let (value, _) = json_body(body)?;
    let present = value
        .get("present")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::invalid_value("present", "true or false"))?;
    let snapshot = if present {
        let mut fields = serde_json::Map::new();
        fields.insert(
            "last_presence_at".into(),
            Value::from(roost_model::units::format_time(chrono::Utc::now())),
        );
        let plan = roost_model::WritePlan {
            structure_id: structure_id.to_string(),
            writes: vec![roost_model::write::EntityWrite {
                target: roost_model::write::Target::Structure,
                fields: fields.into(),
            }],
        };
        let name = match &grant.product_id {
            Some(p) => format!("presence:product:{p}"),
            None => format!("presence:token:{}", hex8(&grant.hash)),
        };
        change::make(app.ground(), Edit::Plan(&plan), &Actor::Service, &name, Default::default())
            .await?
            .snapshot
    } else {
        app.hub.slot(structure_id).ok_or_else(|| ApiError::not_found(&location))?.current()
    };
    let s = snapshot.home.structure();
    let answer = serde_json::json!({
        "away": s.get("away"),
        "away_set_by": s.get("away_set_by"),
        "last_presence_at": s.get("last_presence_at"),
    });
    let mut resp = json_response(StatusCode::OK, &answer);
    resp.headers_mut().insert(header::ETAG, etag(&[&snapshot]));
    if let Some(b) = budget {
        add_budget_headers(resp.headers_mut(), &b);
    }
    Ok(resp)
}
