//! The token endpoint (code or PIN for an access token), revocation (the original's
//! `DELETE` and RFC 7009) and the RFC 8414 metadata.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use roost_model::Permission;
use roost_store::TokenRecord;
use serde_json::json;

use super::protocol::{
    Params, basic_credentials, oauth_error, param_error, pkce_s256_matches, verify_secret,
};
use super::{MAX_FORM, TOKEN_EXPIRES_IN, unix_now};
use crate::App;
use crate::auth::hash_token;
use crate::ids;

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
