//! OAuth 2.0 with the original flows' parameters and texts (docs/compatibility.md §6) on RFC 6749
//! (authorization code), RFC 7636 (PKCE, S256 only), RFC 7009 (revocation), RFC 8414
//! (metadata) and the Security BCP (RFC 9700: exact redirect URIs, single-use short-lived
//! codes, no implicit grant, errors about the client or redirect URI shown on our own page).
//!
//! ```text
//!  browser                                   Roost                               product
//!  GET /login/oauth2?client_id&state[&redirect_uri][&code_challenge&…=S256]
//!      -> not logged in: login form (login CSRF cookie)  POST /login -> session cookie
//!      -> consent page: permissions in plain words, homes     (authorize_page)
//!  POST /login/oauth2 (csrf, decision, homes)                  (authorize_decision)
//!      -> web flow: 303 redirect_uri?code=<16 chars, 10 min>&state
//!      -> PIN flow: page with an 8-character PIN (48 h)
//!                                         POST /oauth2/access_token  <- client_id, client_secret,
//!                                                                       code, grant_type[, code_verifier]
//!                                         -> {"access_token":"c.…","expires_in":315360000}
//!  DELETE /oauth2/access_tokens/{token}  or  POST /oauth2/revoke (token=…): the token stops
//!  working at once and its open streams get auth_revoked.
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use roost_model::{Permission, PermissionSet};
use roost_store::{CodeRecord, Product, Session, TokenRecord};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::App;
use crate::auth::hash_token;
use crate::ids;

/// Access tokens effectively never expire (as the original: ten years).
pub const TOKEN_EXPIRES_IN: u64 = 315_360_000;
/// Largest parameter value accepted by the OAuth endpoints.
const MAX_PARAM: usize = 2048;
/// Largest form body accepted by the OAuth endpoints.
const MAX_FORM: usize = 16 * 1024;
const SESSION_COOKIE: &str = "roost_session";
const LOGIN_CSRF_COOKIE: &str = "roost_login_csrf";
const SESSION_SECONDS: i64 = 12 * 3600;

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---------- parameters ----------

/// Request parameters from a query string and/or a form body; a name given twice is an error.
pub struct Params(Vec<(String, String)>);

#[derive(Debug)]
pub enum ParamError {
    Repeated(String),
    TooLarge(String),
}

impl Params {
    pub fn parse(sources: &[&[u8]]) -> Result<Params, ParamError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for src in sources {
            for (k, v) in form_urlencoded::parse(src) {
                if v.len() > MAX_PARAM || k.len() > 64 {
                    return Err(ParamError::TooLarge(k.chars().take(64).collect()));
                }
                if out.iter().any(|(n, _)| *n == k) {
                    return Err(ParamError::Repeated(k.into_owned()));
                }
                out.push((k.into_owned(), v.into_owned()));
            }
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Like [`Params::parse`], but a checkbox list (`home=a&home=b`) may repeat.
fn parse_form_with_lists(body: &[u8], lists: &[&str]) -> Result<Params, ParamError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        if v.len() > MAX_PARAM || k.len() > 64 {
            return Err(ParamError::TooLarge(k.chars().take(64).collect()));
        }
        if !lists.contains(&k.as_ref()) && out.iter().any(|(n, _)| *n == k) {
            return Err(ParamError::Repeated(k.into_owned()));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(Params(out))
}

// ---------- PKCE and secrets ----------

/// RFC 7636 S256: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    if !(43..=128).contains(&verifier.len()) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Checks a password or client secret against its Argon2id hash (off the async threads).
pub async fn verify_secret(secret: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordVerifier;
        use argon2::password_hash::phc::PasswordHash;
        PasswordHash::new(&hash)
            .map(|h| argon2::Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A code or PIN from an unambiguous alphabet (no 0/O, 1/I).
fn random_code(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = vec![0u8; len];
    if getrandom::fill(&mut buf).is_err() {
        std::process::abort();
    }
    // 256 is a multiple of 32: no modulo bias.
    buf.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect()
}

// ---------- token endpoint ----------

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        json!({"error": error, "error_description": description, "instance_id": uuid::Uuid::new_v4().to_string()})
            .to_string(),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn param_error(e: ParamError) -> Response {
    match e {
        ParamError::Repeated(n) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &format!("repeated parameter: {n}"))
        }
        ParamError::TooLarge(n) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &format!("parameter too large: {n}"))
        }
    }
}

/// `client_id:client_secret` from HTTP Basic, when given.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    Some((unescape(id), unescape(secret)))
}

/// `POST /oauth2/access_token`: parameters in the body, the query string, or HTTP Basic.
pub async fn token(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_FORM {
        return oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "request body too large");
    }
    let query = uri.query().unwrap_or("").as_bytes().to_vec();
    let params = match Params::parse(&[&query, &body]) {
        Ok(p) => p,
        Err(e) => return param_error(e),
    };
    let basic = basic_credentials(&headers);
    if basic.is_some() && (params.get("client_id").is_some() || params.get("client_secret").is_some()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client credentials given both in Authorization and in parameters",
        );
    }
    let client_id =
        basic.as_ref().map(|b| b.0.clone()).or_else(|| params.get("client_id").map(str::to_string));
    let client_secret =
        basic.as_ref().map(|b| b.1.clone()).or_else(|| params.get("client_secret").map(str::to_string));
    let mut missing = Vec::new();
    if client_id.is_none() {
        missing.push("client_id");
    }
    if params.get("code").is_none() {
        missing.push("code");
    }
    if params.get("grant_type").is_none() {
        missing.push("grant_type");
    }
    if !missing.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("missing required parameters: {}", missing.join(", ")),
        );
    }
    if params.get("grant_type") != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code",
        );
    }
    let client_id = client_id.unwrap_or_default();
    let Ok(product) = app.store.product(&client_id).await else {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "service unavailable",
        );
    };
    // Unknown client and wrong secret answer alike.
    let bad_client = || oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client secret not found");
    let Some(product) = product else { return bad_client() };
    match (&product.secret_hash, client_secret) {
        (Some(hash), Some(secret)) => {
            if !verify_secret(secret, hash.clone()).await {
                return bad_client();
            }
        }
        (Some(_), None) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "missing required parameters: client_secret",
            );
        }
        (None, _) => {} // public client: PKCE below is the proof
    }
    let code = params.get("code").unwrap_or_default();
    let code_hash = hash_token(code);
    let not_found = || oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "authorization code not found");
    let record = match app.store.code(&code_hash).await {
        Ok(Some(r)) if r.product_id == product.id => r,
        Ok(_) => return not_found(),
        Err(_) => {
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "service unavailable",
            );
        }
    };
    if record.expires_at < unix_now() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "authorization code expired");
    }
    if let Some(uri) = params.get("redirect_uri")
        && uri != record.redirect_uri
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match the authorization request",
        );
    }
    match (&record.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if pkce_s256_matches(verifier, challenge) => {}
        (Some(_), _) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "code_verifier does not match the code_challenge",
            );
        }
        (None, _) if product.secret_hash.is_none() => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE is required for this client");
        }
        (None, _) => {}
    }
    let access_token = ids::access_token();
    let record_token = TokenRecord {
        hash: hash_token(&access_token),
        user_id: record.user_id.clone(),
        product_id: Some(product.id.clone()),
        permissions: record.permissions,
        structures: record.structures.clone(),
        client_version: record.client_version,
        created_at: roost_model::units::format_time(chrono::Utc::now()),
        label: product.name.clone(),
        revoked: false,
        device_id: None,
    };
    match app.store.exchange_code(&code_hash, record_token).await {
        Ok(Ok(_)) => {
            let mut r = (
                StatusCode::OK,
                json!({"access_token": access_token, "expires_in": TOKEN_EXPIRES_IN}).to_string(),
            )
                .into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Ok(Err(used)) => {
            // A code used twice: someone replayed it. The store revoked what the first use
            // produced in the same transaction; its streams end here (other nodes learn of
            // it from the store's revocation feed).
            if let Some(h) = used.token_hash {
                app.revoke(&h);
            }
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "authorization code already used; the tokens it produced were revoked",
            )
        }
        Err(roost_store::StoreError::NotFound(_)) => not_found(),
        Err(_) => {
            oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "service unavailable")
        }
    }
}

// ---------- revocation and metadata ----------

/// `DELETE /oauth2/access_tokens/{token}` (the original): 204 when it was active, 404 if not.
pub async fn revoke_original(State(app): State<App>, Path(token): Path<String>) -> Response {
    let hash = hash_token(&token);
    match app.store.revoke_token(&hash).await {
        Ok(true) => {
            app.revoke(&hash);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => oauth_error(StatusCode::NOT_FOUND, "invalid_token", "access token not found"),
        Err(_) => {
            oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "service unavailable")
        }
    }
}

/// `POST /oauth2/revoke` (RFC 7009): `token=…`; 200 whether or not it was active. Holding
/// the token is the proof, as with the original endpoint.
pub async fn revoke_rfc7009(State(app): State<App>, body: Bytes) -> Response {
    let params = match Params::parse(&[&body]) {
        Ok(p) => p,
        Err(e) => return param_error(e),
    };
    let Some(token) = params.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "missing required parameters: token");
    };
    let hash = hash_token(token);
    match app.store.revoke_token(&hash).await {
        Ok(_) => {
            app.revoke(&hash);
            StatusCode::OK.into_response()
        }
        Err(_) => {
            oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "service unavailable")
        }
    }
}

/// RFC 8414 authorization server metadata.
pub async fn metadata(State(app): State<App>) -> Response {
    let base = app.public_url.trim_end_matches('/');
    crate::http::json_response(
        StatusCode::OK,
        &json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/login/oauth2"),
            "token_endpoint": format!("{base}/oauth2/access_token"),
            "revocation_endpoint": format!("{base}/oauth2/revoke"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": Permission::ALL.iter().map(|p| p.id()).collect::<Vec<_>>(),
        }),
    )
}

// ---------- authorization pages ----------

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{t} · Roost</title><style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}li{{margin:.3rem 0}}button{{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}}\
.pin{{font-size:2.4rem;letter-spacing:.3rem;font-family:monospace}}.error{{color:#a00}}label{{display:block;margin:.5rem 0}}</style></head>\
<body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        // No form-action: the consent form is answered with a redirect to the product's own
        // registered redirect URI, which form-action would block.
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    r
}

fn error_page(status: StatusCode, text: &str) -> Response {
    page(status, "Roost", &format!("<p class=\"error\">{}</p>", esc(text)))
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
    let oops = || error_page(StatusCode::BAD_REQUEST, "Oops! We've encountered an error. Please try again.");
    let product = match app.store.product(client_id).await {
        Ok(Some(p)) => p,
        _ => return Err(oops()),
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if product.redirect_uris.iter().any(|r| r == uri) => uri.to_string(),
        Some(_) => return Err(error_page(StatusCode::BAD_REQUEST, "redirect_uri not pre-registered")),
        None => product.redirect_uris.first().cloned().unwrap_or_default(),
    };
    let code_challenge = params.get("code_challenge").map(str::to_string);
    match (params.get("code_challenge_method"), &code_challenge) {
        (Some("S256") | None, Some(c)) if (43..=128).contains(&c.len()) => {}
        (_, Some(_)) => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "code_challenge must be an S256 challenge (43 to 128 characters)",
            ));
        }
        (Some(_), None) => {
            return Err(error_page(StatusCode::BAD_REQUEST, "code_challenge_method without code_challenge"));
        }
        (None, None) if product.secret_hash.is_none() => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "This product must use PKCE (code_challenge with S256).",
            ));
        }
        (None, None) => {}
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

async fn session_of(app: &App, headers: &HeaderMap) -> Option<Session> {
    let raw = cookie(headers, SESSION_COOKIE)?;
    let s = app.store.session(&hash_token(&raw)).await.ok()??;
    (s.expires_at > unix_now()).then_some(s)
}

/// The session of a form post whose CSRF token matches it; otherwise the page to answer.
async fn form_session(app: &App, headers: &HeaderMap, form: &Params) -> Result<Session, Response> {
    let Some(session) = session_of(app, headers).await else {
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

fn login_form(app: &App, query: &str, message: Option<&str>) -> Response {
    let csrf = ids::random_b64(24);
    let msg = message.map(|m| format!("<p class=\"error\">{}</p>", esc(m))).unwrap_or_default();
    let body = format!(
        "{msg}<form method=\"post\" action=\"/login\">\
<label>Login <input name=\"login\" autocomplete=\"username\" required></label>\
<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
<button type=\"submit\">Sign in</button></form>",
        next = esc(query)
    );
    let status = if message.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let mut r = page(status, "Sign in to Roost", &body);
    r.headers_mut().append(header::SET_COOKIE, set_cookie(app, LOGIN_CSRF_COOKIE, &csrf, 3600));
    r
}

/// `GET /login/oauth2`: validates the request, then the login form or the consent page.
pub async fn authorize_page(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    let query = uri.query().unwrap_or("").to_string();
    let params = match Params::parse(&[query.as_bytes()]) {
        Ok(p) => p,
        Err(ParamError::Repeated(n)) => {
            return error_page(StatusCode::BAD_REQUEST, &format!("Repeated parameter: {n}"));
        }
        Err(ParamError::TooLarge(n)) => {
            return error_page(StatusCode::BAD_REQUEST, &format!("Parameter too large: {n}"));
        }
    };
    let req = match validate(&app, &params, query).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let Some(session) = session_of(&app, &headers).await else {
        return login_form(&app, &req.query, None);
    };
    consent_page(&app, &req, &session).await
}

async fn consent_page(app: &App, req: &AuthRequest, session: &Session) -> Response {
    let perms = PermissionSet::from_bits(req.product.permissions);
    let items: String = perms.iter().map(|p| format!("<li>{}</li>", esc(p.plain_words()))).collect();
    let mut homes = String::new();
    for sid in app.store.structures_of(&session.user_id).await.unwrap_or_default() {
        let name = app
            .hub
            .slot(&sid)
            .and_then(|s| {
                s.current().home.structure().get("name").and_then(|n| n.as_str()).map(str::to_string)
            })
            .unwrap_or_else(|| sid.clone());
        homes.push_str(&format!(
            "<label><input type=\"checkbox\" name=\"home\" value=\"{}\" checked> {}</label>",
            esc(&sid),
            esc(&name)
        ));
    }
    let flow = if req.redirect_uri.is_empty() { "You will get a PIN to type into the product." } else { "" };
    let body = format!(
        "<p><strong>{name}</strong> would like to connect to your Roost account.</p><p>{desc}</p>\
<p>It will be able to:</p><ul>{items}</ul><form method=\"post\" action=\"/login/oauth2\">\
<p>For these homes:</p>{homes}<p>{flow}</p>\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"request\" value=\"{query}\">\
<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        name = esc(&req.product.name),
        desc = esc(&req.product.description),
        csrf = esc(&session.csrf),
        query = esc(&req.query),
    );
    page(StatusCode::OK, &format!("Connect {}", req.product.name), &body)
}

/// Login attempts per login name and per peer, in a sliding minute.
#[derive(Default)]
pub struct LoginLimiter {
    attempts: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Login attempts allowed per login name per minute.
const LOGIN_ATTEMPTS_PER_MINUTE: u32 = 10;

impl LoginLimiter {
    fn allow(&self, key: &str) -> bool {
        let Ok(mut m) = self.attempts.lock() else { return false };
        if m.len() > 100_000 {
            m.retain(|_, (_, t)| t.elapsed() < Duration::from_secs(60));
        }
        let e = m.entry(key.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() > Duration::from_secs(60) {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        e.0 <= LOGIN_ATTEMPTS_PER_MINUTE
    }
}

/// `POST /login`: the login form (with its CSRF cookie).
pub async fn login_submit(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(params) = Params::parse(&[&body]) else {
        return error_page(StatusCode::BAD_REQUEST, "The form was not valid.");
    };
    let next = params.get("next").unwrap_or("").to_string();
    let csrf_ok = match (cookie(&headers, LOGIN_CSRF_COOKIE), params.get("csrf")) {
        (Some(c), Some(f)) => bool::from(c.as_bytes().ct_eq(f.as_bytes())),
        _ => false,
    };
    if !csrf_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this site. Please try again.",
        );
    }
    let (Some(login), Some(password)) = (params.get("login"), params.get("password")) else {
        return login_form(&app, &next, Some("Enter your login and password."));
    };
    if !app.logins.allow(login) {
        let mut r = error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts. Wait a minute and try again.",
        );
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let user = app.store.user_by_login(login).await.ok().flatten();
    let ok = match user.as_ref().and_then(|u| u.password_hash.clone()) {
        Some(hash) => verify_secret(password.to_string(), hash).await,
        None => {
            // Same work for unknown logins, so timing does not tell which logins exist.
            let _ = verify_secret(password.to_string(), DUMMY_HASH.clone()).await;
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        return login_form(&app, &next, Some("Wrong login or password."));
    };
    let raw = ids::random_b64(32);
    let session = Session {
        hash: hash_token(&raw),
        user_id: user.id,
        csrf: ids::random_b64(24),
        expires_at: unix_now() + SESSION_SECONDS,
    };
    if app.store.insert_session(session).await.is_err() {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Oops! We've encountered an error. Please try again.",
        );
    }
    // Only ever back to one of our own pages, whatever `next` says.
    let target = if next == "/connections" || next == "/developer" {
        next.clone()
    } else {
        format!("/login/oauth2?{}", next.trim_start_matches("/login/oauth2?").trim_start_matches('?'))
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&target) {
        h.insert(header::LOCATION, v);
    }
    h.append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, &raw, SESSION_SECONDS));
    h.append(header::SET_COOKIE, set_cookie(&app, LOGIN_CSRF_COOKIE, "", 0));
    r
}

/// An Argon2id hash of a random string, verified against for unknown logins.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::admin::hash_password(&ids::random_b64(16)).unwrap_or_default());

/// `POST /login/oauth2`: the consent decision.
pub async fn authorize_decision(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = parse_form_with_lists(&body, &["home"]) else {
        return error_page(StatusCode::BAD_REQUEST, "The form was not valid.");
    };
    let session = match form_session(&app, &headers, &form).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let query = form.get("request").unwrap_or("").to_string();
    let Ok(params) = Params::parse(&[query.as_bytes()]) else {
        return error_page(StatusCode::BAD_REQUEST, "Oops! We've encountered an error. Please try again.");
    };
    let req = match validate(&app, &params, query).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let sep = if req.redirect_uri.contains('?') { '&' } else { '?' };
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    if form.get("decision") != Some("allow") {
        if req.redirect_uri.is_empty() {
            return page(
                StatusCode::OK,
                "Not connected",
                "<p>You did not connect the product. You can close this page.</p>",
            );
        }
        return redirect_to(&format!(
            "{}{sep}error=access_denied&state={}",
            req.redirect_uri,
            enc(&req.state)
        ));
    }
    let owned = app.store.structures_of(&session.user_id).await.unwrap_or_default();
    let chosen: Vec<String> =
        form.all("home").filter(|h| owned.iter().any(|o| o == h)).map(str::to_string).collect();
    if chosen.is_empty() {
        return error_page(StatusCode::BAD_REQUEST, "Choose at least one home to connect.");
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
    if app.store.insert_code(record).await.is_err() {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Oops! We've encountered an error. Please try again.",
        );
    }
    if pin {
        return page(
            StatusCode::OK,
            &format!("Connect {}", req.product.name),
            &format!(
                "<p>Type this PIN into {}:</p><p class=\"pin\" id=\"pin\">{code}</p><p>It works once, within 48 hours.</p>",
                esc(&req.product.name)
            ),
        );
    }
    redirect_to(&format!("{}{sep}code={code}&state={}", req.redirect_uri, enc(&req.state)))
}

// ---------- developer page ----------

/// `GET /developer`: the signed-in user's products, and a form to register one.
pub async fn developer_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&app, &headers).await else {
        return login_form(&app, "/developer", None);
    };
    developer_view(&app, &session, None).await
}

async fn developer_view(
    app: &App,
    session: &Session,
    created: Option<&crate::admin::NewProduct>,
) -> Response {
    let mut body = String::new();
    if let Some(p) = created {
        body.push_str(&format!(
            "<p class=\"error\">Registered. Copy the secret now: it is shown only once.</p>\
<p>Client id: <code id=\"client_id\">{}</code><br>Client secret: <code id=\"client_secret\">{}</code></p>",
            esc(&p.client_id),
            esc(p.client_secret.as_deref().unwrap_or("(public product: none, use PKCE)"))
        ));
    }
    let mine: Vec<Product> = app
        .store
        .products()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.owner.as_deref() == Some(session.user_id.as_str()))
        .collect();
    body.push_str("<h2>Your products</h2>");
    if mine.is_empty() {
        body.push_str("<p>None yet.</p>");
    }
    for p in &mine {
        let perms: Vec<&str> = PermissionSet::from_bits(p.permissions).iter().map(|x| x.title()).collect();
        body.push_str(&format!(
            "<section><strong>{}</strong> — client id <code>{}</code>, version {}<br>{}<br>Redirect URIs: {}</section>",
            esc(&p.name),
            esc(&p.id),
            p.client_version,
            esc(&perms.join(", ")),
            esc(&if p.redirect_uris.is_empty() { "none (PIN flow)".to_string() } else { p.redirect_uris.join(", ") })
        ));
    }
    let boxes: String = Permission::ALL
        .iter()
        .map(|p| {
            format!(
                "<label><input type=\"checkbox\" name=\"permission\" value=\"{}\"> {}</label>",
                p.id(),
                esc(p.title())
            )
        })
        .collect();
    body.push_str(&format!(
        "<h2>Register a product</h2><form method=\"post\" action=\"/developer\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<label>Name <input name=\"name\" required maxlength=\"100\"></label>\
<label>Description <input name=\"description\" maxlength=\"500\"></label>\
<label>Redirect URIs, one per line (none: PIN flow) <textarea name=\"redirect_uris\"></textarea></label>\
{boxes}<label><input type=\"checkbox\" name=\"public\" value=\"1\"> Public (no secret; PKCE)</label>\
<button type=\"submit\">Register</button></form>",
        esc(&session.csrf)
    ));
    page(StatusCode::OK, "Developer", &body)
}

/// `POST /developer`: registers a product owned by the signed-in user.
pub async fn developer_create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = parse_form_with_lists(&body, &["permission"]) else {
        return error_page(StatusCode::BAD_REQUEST, "The form was not valid.");
    };
    let session = match form_session(&app, &headers, &form).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let mut perms = PermissionSet::EMPTY;
    for p in form.all("permission") {
        match Permission::parse(p) {
            Some(p) => perms = perms.union(PermissionSet::of(&[p])),
            None => return error_page(StatusCode::BAD_REQUEST, &format!("Unknown permission: {p}")),
        }
    }
    let uris: Vec<String> = form
        .get("redirect_uris")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let name = form.get("name").unwrap_or("");
    let created = crate::admin::create_product(
        app.store.as_ref(),
        name,
        form.get("description").unwrap_or(""),
        &uris,
        perms,
        form.get("public").is_some(),
        Some(&session.user_id),
    )
    .await;
    match created {
        Ok(p) => developer_view(&app, &session, Some(&p)).await,
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

// ---------- connected products ----------

/// `GET /connections`: the products a user connected, with a button to disconnect each.
pub async fn connections_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&app, &headers).await else {
        return login_form(&app, "/connections", None);
    };
    let tokens = app.store.tokens_of(&session.user_id).await.unwrap_or_default();
    let mut rows = String::new();
    for t in tokens.iter().filter(|t| t.product_id.is_some() && !t.revoked) {
        let perms: String = PermissionSet::from_bits(t.permissions)
            .iter()
            .map(|p| format!("<li>{}</li>", esc(p.plain_words())))
            .collect();
        let homes: Vec<String> = t
            .structures
            .iter()
            .map(|sid| {
                app.hub
                    .slot(sid)
                    .and_then(|s| {
                        s.current().home.structure().get("name").and_then(|n| n.as_str()).map(str::to_string)
                    })
                    .unwrap_or_else(|| sid.clone())
            })
            .collect();
        rows.push_str(&format!(
            "<section><h2>{name}</h2><p>Connected {at}, to {homes}.</p><ul>{perms}</ul><form method=\"post\" action=\"/connections/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"grant\" value=\"{id}\"><button type=\"submit\">Disconnect</button></form></section>",
            name = esc(&t.label),
            at = esc(&t.created_at),
            homes = esc(&homes.join(", ")),
            csrf = esc(&session.csrf),
            id = crate::ids::hex(&t.hash),
        ));
    }
    if rows.is_empty() {
        rows = "<p>No products are connected to your account.</p>".into();
    }
    page(StatusCode::OK, "Connected products", &rows)
}

/// `POST /connections/revoke`: disconnects one product (its token stops working at once).
pub async fn connections_revoke(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = Params::parse(&[&body]) else {
        return error_page(StatusCode::BAD_REQUEST, "The form was not valid.");
    };
    let session = match form_session(&app, &headers, &form).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let wanted = form.get("grant").unwrap_or("");
    let tokens = app.store.tokens_of(&session.user_id).await.unwrap_or_default();
    // Only the user's own grants can be disconnected here.
    let Some(t) = tokens.iter().find(|t| crate::ids::hex(&t.hash) == wanted) else {
        return error_page(StatusCode::NOT_FOUND, "That connection does not exist.");
    };
    if app.store.revoke_token(&t.hash).await.is_err() {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Oops! We've encountered an error. Please try again.",
        );
    }
    app.revoke(&t.hash);
    redirect_to("/connections")
}

fn redirect_to(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_the_rfc_7636_vector() {
        // RFC 7636 Appendix B.
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }

    #[test]
    fn params_refuse_repeats_and_oversize() {
        assert!(matches!(Params::parse(&[b"a=1&a=2"]), Err(ParamError::Repeated(n)) if n == "a"));
        assert!(matches!(Params::parse(&[b"a=1", b"a=2"]), Err(ParamError::Repeated(_))));
        let big = format!("a={}", "x".repeat(MAX_PARAM + 1));
        assert!(matches!(Params::parse(&[big.as_bytes()]), Err(ParamError::TooLarge(_))));
        let p = Params::parse(&[b"a=1&b=", b"c=x%20y"]).unwrap();
        assert_eq!((p.get("a"), p.get("b"), p.get("c")), (Some("1"), None, Some("x y")));
    }

    #[test]
    fn codes_use_the_unambiguous_alphabet() {
        let c = random_code(16);
        assert_eq!(c.len(), 16);
        assert!(c.chars().all(|ch| "ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(ch)));
    }
}
