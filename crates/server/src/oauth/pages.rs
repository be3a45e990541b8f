//! The HTML of the sign-in, consent, PIN, developer and connections pages, as maud templates:
//! every value put into a page is escaped by the template engine, none by hand.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// A whole page: the layout around `body`, with headers that keep it out of frames and caches.
pub fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Roost" }
                link rel="stylesheet" href="/assets/roost.css";
                link rel="icon" href="/assets/roost.svg" type="image/svg+xml";
            }
            body {
                h1 { (title) }
                (body)
            }
        }
    };
    let mut r = (status, Html(html.into_string())).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        // No form-action: the consent form is answered with a redirect to the product's own
        // registered redirect URI, which form-action would block.
        // Scripts, styles and connections only from this origin: no inline script or style.
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    r
}

/// Links between the user's pages; with the session's CSRF token, a sign-out button too.
pub fn site_nav(csrf: Option<&str>) -> Markup {
    html! {
        nav.site aria-label="Roost" {
            a href="/home" { "Homes" }
            a href="/connections" { "Connected products" }
            a href="/developer" { "Developer" }
            a href="/reference" { "API reference" }
            @if let Some(csrf) = csrf {
                form.inline method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Sign out" }
                }
            }
        }
    }
}

/// A page with one message.
pub fn error_page(status: StatusCode, text: &str) -> Response {
    page(status, "Roost", html! { p.error { (text) } })
}

/// The sign-in form; `next` is where to go after it.
pub fn login(message: Option<&str>, csrf: &str, next: &str) -> Markup {
    html! {
        @if let Some(m) = message { p.error { (m) } }
        form method="post" action="/login" {
            label { "Login " input name="login" autocomplete="username" required; }
            label { "Password " input name="password" type="password" autocomplete="current-password" required; }
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            button type="submit" { "Sign in" }
        }
    }
}

/// What the consent page shows.
pub struct Consent<'a> {
    pub product: &'a str,
    pub description: &'a str,
    /// The permissions in plain words.
    pub permissions: Vec<&'a str>,
    /// `(structure id, name)` of each of the user's homes.
    pub homes: Vec<(String, String)>,
    pub pin_flow: bool,
    pub csrf: &'a str,
    /// The authorization request's query string, carried to the decision.
    pub request: &'a str,
}

pub fn consent(c: &Consent<'_>) -> Markup {
    html! {
        p { strong { (c.product) } " would like to connect to your Roost account." }
        p { (c.description) }
        p { "It will be able to:" }
        ul { @for p in &c.permissions { li { (p) } } }
        form method="post" action="/login/oauth2" {
            p { "For these homes:" }
            @for (id, name) in &c.homes {
                label { input type="checkbox" name="home" value=(id) checked; " " (name) }
            }
            p { @if c.pin_flow { "You will get a PIN to type into the product." } }
            input type="hidden" name="csrf" value=(c.csrf);
            input type="hidden" name="request" value=(c.request);
            button type="submit" name="decision" value="allow" { "Allow" }
            button type="submit" name="decision" value="deny" { "Deny" }
        }
    }
}

pub fn pin(product: &str, code: &str) -> Markup {
    html! {
        p { "Type this PIN into " (product) ":" }
        p.pin #pin { (code) }
        p { "It works once, within 48 hours." }
    }
}

pub fn not_connected() -> Markup {
    html! { p { "You did not connect the product. You can close this page." } }
}

/// A registered product as the developer page lists it.
pub struct ProductRow {
    pub name: String,
    pub client_id: String,
    pub client_version: u64,
    pub permissions: Vec<&'static str>,
    pub redirect_uris: Vec<String>,
}

/// The developer page: a just-registered product's credentials (shown once), the user's
/// products, and the registration form.
pub fn developer(
    created: Option<(&str, Option<&str>)>,
    mine: &[ProductRow],
    permissions: &[(&str, &str)],
    csrf: &str,
) -> Markup {
    html! {
        @if let Some((client_id, secret)) = created {
            p.error { "Registered. Copy the secret now: it is shown only once." }
            p {
                "Client id: " code #client_id { (client_id) } br;
                "Client secret: " code #client_secret { (secret.unwrap_or("(public product: none, use PKCE)")) }
            }
        }
        h2 { "Your products" }
        @if mine.is_empty() { p { "None yet." } }
        @for p in mine {
            section {
                strong { (p.name) } " — client id " code { (p.client_id) } ", version " (p.client_version) br;
                (p.permissions.join(", ")) br;
                "Redirect URIs: "
                @if p.redirect_uris.is_empty() { "none (PIN flow)" } @else { (p.redirect_uris.join(", ")) }
            }
        }
        h2 { "Register a product" }
        form method="post" action="/developer" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Name " input name="name" required maxlength="100"; }
            label { "Description " input name="description" maxlength="500"; }
            label { "Redirect URIs, one per line (none: PIN flow) " textarea name="redirect_uris" {} }
            @for (id, title) in permissions {
                label { input type="checkbox" name="permission" value=(id); " " (title) }
            }
            label { input type="checkbox" name="public" value="1"; " Public (no secret; PKCE)" }
            button type="submit" { "Register" }
        }
    }
}

/// A connected product as the connections page lists it.
pub struct ConnectionRow {
    pub product: String,
    pub connected_at: String,
    pub homes: Vec<String>,
    pub permissions: Vec<&'static str>,
    /// The grant's id on this page (its token hash in hex).
    pub grant: String,
}

pub fn connections(rows: &[ConnectionRow], csrf: &str) -> Markup {
    html! {
        @if rows.is_empty() { p { "No products are connected to your account." } }
        @for r in rows {
            section {
                h2 { (r.product) }
                p { "Connected " (r.connected_at) ", to " (r.homes.join(", ")) "." }
                ul { @for p in &r.permissions { li { (p) } } }
                form method="post" action="/connections/revoke" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="grant" value=(r.grant);
                    button type="submit" { "Disconnect" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_put_into_a_page_are_escaped() {
        let c = Consent {
            product: "<script>alert(1)</script>",
            description: "a \"quoted\" & 'odd' one",
            permissions: vec!["<b>"],
            homes: vec![("s\"1".into(), "<Cabin>".into())],
            pin_flow: false,
            csrf: "x\"><script>",
            request: "client_id=a&state=<b>",
        };
        let html = consent(&c).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("value=\"x&quot;&gt;&lt;script&gt;\""), "{html}");
        assert!(html.contains("&lt;Cabin&gt;"), "{html}");
    }
}
