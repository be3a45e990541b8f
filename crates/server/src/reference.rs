//! `GET /reference`: the interactive API reference, generated from the schema table
//! (`roost_model::schema::FIELDS`) and the error catalogue (`roost_model::catalogue`), so it
//! says what the code does. Each field has an anchor `#field-<entity>-<path>`, each error
//! `#error-<anchor>` (the target of every error's `type` link). Below the tables, with a
//! token the developer pastes (or the demo's), `reference.js` reads the live document as a
//! tree, GETs and PUTs any location and opens a stream.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use roost_model::catalogue::{self, ERRORS};
use roost_model::schema::{Entity, FIELDS, FieldSpec, FieldType, Unit};

use crate::oauth::{page, site_nav};

const ENTITIES: &[(Entity, &str, &str, &str)] = &[
    (Entity::Thermostat, "thermostat", "Thermostat", "/devices/thermostats/<device_id>"),
    (
        Entity::SmokeCoAlarm,
        "smoke_co_alarm",
        "Smoke and CO alarm (Protect)",
        "/devices/smoke_co_alarms/<device_id>",
    ),
    (Entity::Camera, "camera", "Camera", "/devices/cameras/<device_id>"),
    (Entity::Structure, "structure", "Structure (a home)", "/structures/<structure_id>"),
    (Entity::Metadata, "metadata", "Metadata", "/metadata"),
];

/// The anchor of a field's row.
pub fn field_anchor(entity_key: &str, path: &str) -> String {
    format!("field-{entity_key}-{}", path.replace('/', "-"))
}

fn type_of(ty: &FieldType) -> String {
    match ty {
        FieldType::Bool => "boolean".into(),
        FieldType::Text { max } => format!("string, at most {max} characters"),
        FieldType::Enum(values) => {
            format!("one of {}", values.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", "))
        }
        FieldType::TempF => "whole degrees F (targets 50–90)".into(),
        FieldType::TempC => "degrees C in steps of 0.5 (targets 9–32)".into(),
        FieldType::Int { min, max } => format!("integer {min}–{max}"),
        FieldType::IntChoice(values) => {
            format!("one of {}", values.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
        }
        FieldType::Timestamp => "ISO 8601 time (UTC, milliseconds, Z)".into(),
        FieldType::TimeToTarget => "\"~N\", \"<N\" or \">N\" minutes".into(),
        FieldType::IdList => "array of ids".into(),
        FieldType::Object => "object".into(),
        FieldType::Array => "array".into(),
    }
}

fn unit_of(unit: Unit) -> &'static str {
    match unit {
        Unit::None => "",
        Unit::Fahrenheit => "°F",
        Unit::Celsius => "°C",
        Unit::Percent => "%",
        Unit::Minutes => "minutes",
    }
}

fn written_by(f: &FieldSpec) -> String {
    let mut who: Vec<String> = f.write.products.iter().map(|p| format!("products with {}", p.id())).collect();
    if f.write.device {
        who.push("the device".into());
    }
    if who.is_empty() { "the service only".into() } else { who.join("; ") }
}

fn field_row(key: &str, f: &FieldSpec) -> Markup {
    let shown: Vec<&str> = f.read.iter().map(|p| p.id()).collect();
    let refused: Vec<_> = catalogue::refusing(&format!("{key}/{}", f.path)).collect();
    html! {
        tr id=(field_anchor(key, f.path)) data-field=(format!("{key}/{}", f.path)) {
            th scope="row" { code { (f.path) } }
            td { (type_of(&f.ty)) @if !unit_of(f.unit).is_empty() { " (" (unit_of(f.unit)) ")" } }
            td { (f.doc) }
            td { @if shown.is_empty() { "nobody (stored only)" } @else { (shown.join(", ")) } }
            td { (written_by(f)) }
            td {
                @for (i, e) in refused.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href=(format!("#error-{}", e.anchor)) { (e.anchor) }
                }
            }
        }
    }
}

/// `GET /reference`.
pub async fn reference_page() -> Response {
    page(StatusCode::OK, "API reference", maud::PreEscaped(BODY.clone()))
}

/// The page's body: built once, it depends on nothing but the build.
static BODY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| body().into_string());

fn body() -> Markup {
    html! {
        (site_nav(None))
        p { "Every field of every element, who may see and write it, and the rules that refuse a write, as this server checks them. "
            a href="#try" { "Try the API" } " with your token below; the machine-readable form is "
            a href="/openapi.json" { "OpenAPI 3.1" } "." }
        nav aria-label="Contents" {
            ul {
                @for (_, key, title, _) in ENTITIES { li { a href=(format!("#{key}")) { (title) } } }
                li { a href="#errors" { "Errors" } }
                li { a href="#try" { "Try it" } }
            }
        }
        @for (entity, key, title, location) in ENTITIES {
            section id=(key) {
                h2 { (title) }
                p { "At " code { (location) } "." }
                div.scroll tabindex="0" role="region" aria-label=(format!("Fields of {title}")) {
                    table {
                        thead { tr {
                            th scope="col" { "Field" } th scope="col" { "Type" } th scope="col" { "Meaning" }
                            th scope="col" { "Shown with" } th scope="col" { "Written by" } th scope="col" { "Refused by" }
                        } }
                        tbody {
                            @for f in FIELDS.iter().filter(|f| f.entity == *entity && !f.is_internal()) {
                                (field_row(key, f))
                            }
                        }
                    }
                }
            }
        }
        section #errors {
            h2 { "Errors" }
            p { "Every error answers " code { r#"{"error","type","message","instance"[,"details"]}"# }
                "; its " code { "type" } " links here." }
            dl {
                @for e in ERRORS {
                    dt id=(format!("error-{}", e.anchor)) { code { (e.anchor) } " — " (crate::error::status_of(e.kind).as_u16()) }
                    dd { q { (e.text) } " " (e.when) }
                }
            }
        }
        section #try {
            h2 { "Try it" }
            label { "Access token " input #token type="password" autocomplete="off" spellcheck="false"; }
            label { "Location " input #location value="/" spellcheck="false"; }
            label { "Body for PUT " textarea #body rows="3" { r#"{"target_temperature_f": 70}"# } }
            div {
                button #get type="button" { "GET" }
                button #put type="button" { "PUT" }
                button #stream type="button" { "Open a stream" }
                button #tree type="button" { "Browse the document" }
            }
            p #answer-status .status aria-live="polite" {}
            pre #answer tabindex="0" role="region" aria-label="Answer" {}
            div #tree-view {}
        }
        script type="module" src="/assets/reference.js" {}
    }
}
