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

mod browser;
mod pages;
mod protocol;
mod token;

pub use browser::{
    authorize_decision, authorize_page, connections_page, connections_revoke, developer_create,
    developer_page, login_submit, logout,
};
pub(crate) use browser::{connection_rows, sign_in_form, signed_in};
pub(crate) use pages::{connections as connections_markup, error_page, page, site_nav};
pub use protocol::{ParamError, Params, pkce_s256_matches, verify_secret};
pub use token::{metadata, revoke_original, revoke_rfc7009, token};

/// Access tokens effectively never expire (as the original: ten years).
pub const TOKEN_EXPIRES_IN: u64 = 315_360_000;
/// Largest form body accepted by the OAuth endpoints.
const MAX_FORM: usize = 16 * 1024;

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
