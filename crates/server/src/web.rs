//! The web face beyond OAuth's pages: the home app (`/home`) and the assets every page uses
//! (one stylesheet, the app's script), built into the binary so that `roost serve` is all it
//! takes. The app talks to the data API like any client, with a token of the signed-in user's.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use roost_model::PermissionSet;
use roost_store::TokenRecord;

use crate::App;
use crate::auth::hash_token;
use crate::oauth::{error_page, page, sign_in_form, signed_in};

/// `(name, content type, bytes)` of each asset.
const ASSETS: &[(&str, &str, &str)] = &[
    ("roost.css", "text/css; charset=utf-8", include_str!("../assets/roost.css")),
    ("home.js", "text/javascript; charset=utf-8", include_str!("../assets/home.js")),
    ("roost.svg", "image/svg+xml", include_str!("../assets/roost.svg")),
    ("reference.js", "text/javascript; charset=utf-8", include_str!("../assets/reference.js")),
];

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, kind, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return error_page(StatusCode::NOT_FOUND, "No such file.");
    };
    let mut r = (StatusCode::OK, *body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Short: a new release's assets are seen within minutes without names that change.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

/// `GET /home`: the signed-in user's homes, live (the sign-in form first when needed).
pub async fn home_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let (session, raw) = match signed_in(&app, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return sign_in_form(&app, "/home"),
        Err(page) => return page,
    };
    let token = match app_token(&app, &session.user_id, &raw).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "minting the home app's token failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Roost could not reach its storage. Please try again.",
            );
        }
    };
    let connections = match crate::oauth::connection_rows(&app, &session.user_id).await {
        Ok(rows) => rows,
        Err(page) => return page,
    };
    let body = html! {
        (crate::oauth::site_nav(Some(&session.csrf)))
        main #home data-token=(token) {
            p #status .status aria-live="polite" { "Connecting…" }
            div #homes {}
        }
        section #products aria-labelledby="products-title" {
            h2 #products-title { "Connected products" }
            (crate::oauth::connections_markup(&connections, &session.csrf))
        }
        script type="module" src="/assets/home.js" {}
    };
    page(StatusCode::OK, "Your homes", body)
}

/// The home app's token for a session: derived from the session's secret, so each page load
/// of the session finds the same token instead of minting another, and signing out (which
/// knows the secret) revokes it.
pub(crate) fn session_app_token(session_secret: &str) -> String {
    let derived = hash_token(&format!("roost home app\0{session_secret}"));
    format!("c.h{}", crate::ids::hex(&derived))
}

/// The session's token, stored (hashed, like every token) on first use: it covers the user's
/// homes with every permission (it is the user's own app), for as long as the session lasts
/// (`auth::Grant::expires_at`).
async fn app_token(
    app: &App,
    user_id: &str,
    session_secret: &str,
) -> Result<String, roost_store::StoreError> {
    let token = session_app_token(session_secret);
    // The label names the session: the token is live only while the session is.
    let label =
        format!("{}{}", crate::auth::SESSION_TOKEN_LABEL, crate::ids::hex(&hash_token(session_secret)));
    let hash = hash_token(&token);
    if app.store.token(&hash).await?.is_none() {
        let homes = app.store.structures_of(user_id).await?;
        app.store
            .insert_token(TokenRecord {
                hash,
                user_id: user_id.to_string(),
                product_id: None,
                permissions: PermissionSet::all().bits(),
                structures: homes,
                client_version: 1,
                created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                label,
                revoked: false,
                device_id: None,
            })
            .await?;
    }
    Ok(token)
}
