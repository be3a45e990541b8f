//! What a person does in the browser: sign in, consent (web flow: a code to the product's
//! redirect URI; PIN flow: a PIN to type), register products, see and disconnect connected
//! products. Handlers answer `Result<Response, Response>`: the error side is a page. A store
//! failure is a 503 page, never read as "no session", "wrong password" or "no homes".

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use roost_model::{Permission, PermissionSet};
use roost_store::{CodeRecord, Product, Session, StoreError};
use subtle::ConstantTimeEq;

use super::pages::{self, ConnectionRow, Consent, ProductRow, error_page, page};
use super::protocol::{ParamError, Params, parse_form_with_lists, random_code, verify_secret};
use super::unix_now;
use crate::App;
use crate::auth::hash_token;
use crate::ids;

const SESSION_COOKIE: &str = "roost_session";
const LOGIN_CSRF_COOKIE: &str = "roost_login_csrf";
const SESSION_SECONDS: i64 = 12 * 3600;
/// Sign-in attempts allowed per login name per minute.
const LOGIN_ATTEMPTS_PER_MINUTE: u32 = 10;

/// A page's answer: the page, or the page that says what went wrong.
type PageResult = Result<Response, Response>;

/// A store result for a page: a failure is logged and answered with a 503 page.
// The error side is the page itself, built only on the failure path.
#[allow(clippy::result_large_err)]
fn stored<T>(r: Result<T, StoreError>) -> Result<T, Response> {
    r.map_err(|e| {
        tracing::error!(error = %e, "store failure");
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Roost could not reach its storage. Please try again in a moment.",
        )
    })
}

fn oops() -> Response {
    error_page(StatusCode::BAD_REQUEST, "Oops! We've encountered an error. Please try again.")
}

fn invalid_form() -> Response {
    error_page(StatusCode::BAD_REQUEST, "The form was not valid.")
}

/// A validated authorization request.
struct AuthRequest {
    product: Product,
    state: String,
    /// Empty for the PIN flow.
    redirect_uri: String,
    code_challenge: Option<String>,
    /// The request's own query string, carried through login.
    query: String,
}

async fn validate(app: &App, params: &Params, query: String) -> Result<AuthRequest, Response> {
    let (Some(client_id), Some(state)) = (params.get("client_id"), params.get("state")) else {
        return Err(error_page(StatusCode::BAD_REQUEST, "Missing client ID or state parameters."));
    };
    let product = stored(app.store.product(client_id).await)?.ok_or_else(oops)?;
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if product.redirect_uris.iter().any(|r| r == uri) => uri.to_string(),
        Some(_) => return Err(error_page(StatusCode::BAD_REQUEST, "redirect_uri not pre-registered")),
        None => product.redirect_uris.first().cloned().unwrap_or_default(),
    };
    let code_challenge = params.get("code_challenge").map(str::to_string);
    let refused = match (params.get("code_challenge_method"), &code_challenge) {
        (Some("S256") | None, Some(c)) if (43..=128).contains(&c.len()) => None,
        (_, Some(_)) => Some("code_challenge must be an S256 challenge (43 to 128 characters)"),
        (Some(_), None) => Some("code_challenge_method without code_challenge"),
        (None, None) if product.secret_hash.is_none() => {
            Some("This product must use PKCE (code_challenge with S256).")
        }
        (None, None) => None,
    };
    if let Some(why) = refused {
        return Err(error_page(StatusCode::BAD_REQUEST, why));
    }
    Ok(AuthRequest { product, state: state.to_string(), redirect_uri, code_challenge, query })
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// The signed-in user's live session with its secret (the cookie's value), if any.
pub(crate) async fn signed_in(app: &App, headers: &HeaderMap) -> Result<Option<(Session, String)>, Response> {
    let Some(raw) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    let session = stored(app.store.session(&hash_token(&raw)).await)?;
    Ok(session.filter(|s| s.expires_at > unix_now()).map(|s| (s, raw)))
}

/// The sign-in form, back to `next` (one of our own pages) once signed in.
pub(crate) fn sign_in_form(app: &App, next: &str) -> Response {
    login_form(app, next, None)
}

/// The signed-in user's live session, if any.
async fn session_of(app: &App, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    Ok(signed_in(app, headers).await?.map(|(session, _)| session))
}

/// The session of a form post whose CSRF token matches it; otherwise the page to answer.
async fn form_session(app: &App, headers: &HeaderMap, form: &Params) -> Result<Session, Response> {
    let Some(session) = session_of(app, headers).await? else {
        return Err(error_page(StatusCode::FORBIDDEN, "Your session expired. Please sign in again."));
    };
    if !form.get("csrf").is_some_and(|c| bool::from(c.as_bytes().ct_eq(session.csrf.as_bytes()))) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this site. Please try again.",
        ));
    }
    Ok(session)
}

fn set_cookie(app: &App, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if app.config.insecure_http { "" } else { "; Secure" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The sign-in page, with a fresh login CSRF cookie; `next` is where to go after it.
fn login_form(app: &App, next: &str, message: Option<&str>) -> Response {
    let csrf = ids::random_b64(24);
    let status = if message.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let mut r = page(status, "Sign in to Roost", pages::login(message, &csrf, next));
    r.headers_mut().append(header::SET_COOKIE, set_cookie(app, LOGIN_CSRF_COOKIE, &csrf, 3600));
    r
}

/// The name of a home for a page (its id when the hub does not hold it).
fn home_name(app: &App, structure_id: &str) -> String {
    app.hub
        .slot(structure_id)
        .and_then(|s| s.current().home.structure().get("name").and_then(|n| n.as_str()).map(str::to_string))
        .unwrap_or_else(|| structure_id.to_string())
}

/// `GET /login/oauth2`: validates the request, then the login form or the consent page.
pub async fn authorize_page(State(app): State<App>, uri: Uri, headers: HeaderMap) -> PageResult {
    let query = uri.query().unwrap_or("").to_string();
    let params = Params::parse(&[query.as_bytes()]).map_err(|e| match e {
        ParamError::Repeated(n) => error_page(StatusCode::BAD_REQUEST, &format!("Repeated parameter: {n}")),
        ParamError::TooLarge(n) => error_page(StatusCode::BAD_REQUEST, &format!("Parameter too large: {n}")),
    })?;
    let req = validate(&app, &params, query).await?;
    let Some(session) = session_of(&app, &headers).await? else {
        return Ok(login_form(&app, &req.query, None));
    };
    let homes = stored(app.store.structures_of(&session.user_id).await)?
        .into_iter()
        .map(|id| {
            let name = home_name(&app, &id);
            (id, name)
        })
        .collect();
    let consent = Consent {
        product: &req.product.name,
        description: &req.product.description,
        permissions: PermissionSet::from_bits(req.product.permissions)
            .iter()
            .map(|p| p.plain_words())
            .collect(),
        homes,
        pin_flow: req.redirect_uri.is_empty(),
        csrf: &session.csrf,
        request: &req.query,
    };
    Ok(page(StatusCode::OK, &format!("Connect {}", req.product.name), pages::consent(&consent)))
}

/// `POST /login`: the login form (with its CSRF cookie).
pub async fn login_submit(State(app): State<App>, headers: HeaderMap, body: Bytes) -> PageResult {
    let params = Params::parse(&[&body]).map_err(|_| invalid_form())?;
    let next = params.get("next").unwrap_or("").to_string();
    let csrf_ok = match (cookie(&headers, LOGIN_CSRF_COOKIE), params.get("csrf")) {
        (Some(c), Some(f)) => bool::from(c.as_bytes().ct_eq(f.as_bytes())),
        _ => false,
    };
    if !csrf_ok {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this site. Please try again.",
        ));
    }
    let (Some(login), Some(password)) = (params.get("login"), params.get("password")) else {
        return Ok(login_form(&app, &next, Some("Enter your login and password.")));
    };
    let key = format!("login:{login}");
    if app.limiter.take(&key, LOGIN_ATTEMPTS_PER_MINUTE, Duration::from_secs(60)).is_err() {
        let mut r = error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts. Wait a minute and try again.",
        );
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return Err(r);
    }
    let user = stored(app.store.user_by_login(login).await)?;
    let ok = match user.as_ref().and_then(|u| u.password_hash.clone()) {
        Some(hash) => verify_secret(password.to_string(), hash).await,
        None => {
            // Same work for unknown logins, so timing does not tell which logins exist.
            let _ = verify_secret(password.to_string(), DUMMY_HASH.clone()).await;
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        return Ok(login_form(&app, &next, Some("Wrong login or password.")));
    };
    let raw = ids::random_b64(32);
    let session = Session {
        hash: hash_token(&raw),
        user_id: user.id,
        csrf: ids::random_b64(24),
        expires_at: unix_now() + SESSION_SECONDS,
    };
    stored(app.store.insert_session(session).await)?;
    // Only ever back to one of our own pages, whatever `next` says.
    let target = if next == "/connections" || next == "/developer" || next == "/home" {
        next.clone()
    } else {
        format!("/login/oauth2?{}", next.trim_start_matches("/login/oauth2?").trim_start_matches('?'))
    };
    let mut r = redirect_to(&target);
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, &raw, SESSION_SECONDS));
    h.append(header::SET_COOKIE, set_cookie(&app, LOGIN_CSRF_COOKIE, "", 0));
    Ok(r)
}

/// An Argon2id hash of a random string, verified against for unknown logins.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::admin::hash_password(&ids::random_b64(16)).unwrap_or_default());

/// `POST /login/oauth2`: the consent decision.
pub async fn authorize_decision(State(app): State<App>, headers: HeaderMap, body: Bytes) -> PageResult {
    let form = parse_form_with_lists(&body, &["home"]).map_err(|_| invalid_form())?;
    let session = form_session(&app, &headers, &form).await?;
    let query = form.get("request").unwrap_or("").to_string();
    let params = Params::parse(&[query.as_bytes()]).map_err(|_| oops())?;
    let req = validate(&app, &params, query).await?;
    let sep = if req.redirect_uri.contains('?') { '&' } else { '?' };
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    if form.get("decision") != Some("allow") {
        if req.redirect_uri.is_empty() {
            return Ok(page(StatusCode::OK, "Not connected", pages::not_connected()));
        }
        return Ok(redirect_to(&format!(
            "{}{sep}error=access_denied&state={}",
            req.redirect_uri,
            enc(&req.state)
        )));
    }
    let owned = stored(app.store.structures_of(&session.user_id).await)?;
    let chosen: Vec<String> =
        form.all("home").filter(|h| owned.iter().any(|o| o == h)).map(str::to_string).collect();
    if chosen.is_empty() {
        return Err(error_page(StatusCode::BAD_REQUEST, "Choose at least one home to connect."));
    }
    let pin = req.redirect_uri.is_empty();
    let (code, ttl) =
        if pin { (random_code(8), app.config.pin_ttl) } else { (random_code(16), app.config.code_ttl) };
    let record = CodeRecord {
        hash: hash_token(&code),
        product_id: req.product.id.clone(),
        user_id: session.user_id.clone(),
        permissions: req.product.permissions,
        structures: chosen,
        client_version: req.product.client_version,
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        expires_at: unix_now() + ttl.as_secs() as i64,
        token_hash: None,
    };
    stored(app.store.insert_code(record).await)?;
    if pin {
        let title = format!("Connect {}", req.product.name);
        return Ok(page(StatusCode::OK, &title, pages::pin(&req.product.name, &code)));
    }
    Ok(redirect_to(&format!("{}{sep}code={code}&state={}", req.redirect_uri, enc(&req.state))))
}

/// `GET /developer`: the signed-in user's products, and a form to register one.
pub async fn developer_page(State(app): State<App>, headers: HeaderMap) -> PageResult {
    let Some(session) = session_of(&app, &headers).await? else {
        return Ok(login_form(&app, "/developer", None));
    };
    developer_view(&app, &session, None).await
}

async fn developer_view(
    app: &App,
    session: &Session,
    created: Option<&crate::admin::NewProduct>,
) -> PageResult {
    let mine: Vec<ProductRow> = stored(app.store.products().await)?
        .into_iter()
        .filter(|p| p.owner.as_deref() == Some(session.user_id.as_str()))
        .map(|p| ProductRow {
            permissions: PermissionSet::from_bits(p.permissions).iter().map(|x| x.title()).collect(),
            name: p.name,
            client_id: p.id,
            client_version: p.client_version,
            redirect_uris: p.redirect_uris,
        })
        .collect();
    let catalogue: Vec<(&str, &str)> = Permission::ALL.iter().map(|p| (p.id(), p.title())).collect();
    let created = created.map(|p| (p.client_id.as_str(), p.client_secret.as_deref()));
    Ok(page(StatusCode::OK, "Developer", pages::developer(created, &mine, &catalogue, &session.csrf)))
}

/// `POST /developer`: registers a product owned by the signed-in user.
pub async fn developer_create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> PageResult {
    let form = parse_form_with_lists(&body, &["permission"]).map_err(|_| invalid_form())?;
    let session = form_session(&app, &headers, &form).await?;
    let mut perms = PermissionSet::EMPTY;
    for p in form.all("permission") {
        let p = Permission::parse(p)
            .ok_or_else(|| error_page(StatusCode::BAD_REQUEST, &format!("Unknown permission: {p}")))?;
        perms = perms.union(PermissionSet::of(&[p]));
    }
    let uris: Vec<String> = form
        .get("redirect_uris")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let created = crate::admin::create_product(
        app.store.as_ref(),
        form.get("name").unwrap_or(""),
        form.get("description").unwrap_or(""),
        &uris,
        perms,
        form.get("public").is_some(),
        Some(&session.user_id),
    )
    .await
    .map_err(|e| error_page(StatusCode::BAD_REQUEST, &e.to_string()))?;
    developer_view(&app, &session, Some(&created)).await
}

/// `GET /connections`: the products a user connected, with a button to disconnect each.
pub async fn connections_page(State(app): State<App>, headers: HeaderMap) -> PageResult {
    let Some(session) = session_of(&app, &headers).await? else {
        return Ok(login_form(&app, "/connections", None));
    };
    let rows = connection_rows(&app, &session.user_id).await?;
    Ok(page(StatusCode::OK, "Connected products", pages::connections(&rows, &session.csrf)))
}

/// `POST /logout`: ends the session and revokes the home app's token of that session (its
/// open stream ends at once).
pub async fn logout(State(app): State<App>, headers: HeaderMap, body: Bytes) -> PageResult {
    let form = Params::parse(&[&body]).map_err(|_| invalid_form())?;
    form_session(&app, &headers, &form).await?;
    if let Some(raw) = cookie(&headers, SESSION_COOKIE) {
        let token = hash_token(&crate::web::session_app_token(&raw));
        if stored(app.store.revoke_token(&token).await)? {
            app.revoke(&token);
        }
        stored(app.store.delete_session(&hash_token(&raw)).await)?;
    }
    let mut r = redirect_to("/home");
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, "", 0));
    Ok(r)
}

/// The products a user connected, as the connections page and the home app list them.
// The error side is the page itself, built only on the failure path.
#[allow(clippy::result_large_err)]
pub(crate) async fn connection_rows(app: &App, user_id: &str) -> Result<Vec<ConnectionRow>, Response> {
    Ok(stored(app.store.tokens_of(user_id).await)?
        .into_iter()
        .filter(|t| t.product_id.is_some() && !t.revoked)
        .map(|t| ConnectionRow {
            homes: t.structures.iter().map(|sid| home_name(app, sid)).collect(),
            permissions: PermissionSet::from_bits(t.permissions).iter().map(|p| p.plain_words()).collect(),
            grant: crate::ids::hex(&t.hash),
            product: t.label,
            connected_at: t.created_at,
        })
        .collect())
}

/// `POST /connections/revoke`: disconnects one product (its token stops working at once).
pub async fn connections_revoke(State(app): State<App>, headers: HeaderMap, body: Bytes) -> PageResult {
    let form = Params::parse(&[&body]).map_err(|_| invalid_form())?;
    let session = form_session(&app, &headers, &form).await?;
    let wanted = form.get("grant").unwrap_or("");
    let tokens = stored(app.store.tokens_of(&session.user_id).await)?;
    // Only the user's own grants can be disconnected here.
    let t = tokens
        .iter()
        .find(|t| crate::ids::hex(&t.hash) == wanted)
        .ok_or_else(|| error_page(StatusCode::NOT_FOUND, "That connection does not exist."))?;
    stored(app.store.revoke_token(&t.hash).await)?;
    app.revoke(&t.hash);
    Ok(redirect_to("/connections"))
}

fn redirect_to(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
