//! `GET /openapi.json`: an OpenAPI 3.1 document of every endpoint, generated from the schema
//! table (each element's properties, their types, units and allowed values) so that it says
//! what the server does. The reference page links to it; the test command validates it and
//! runs schemathesis against a live server with it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use roost_model::catalogue::ERRORS;
use roost_model::schema::{Entity, FIELDS, FieldSpec, FieldType, Unit};
use serde_json::{Map, Value, json};

/// `(entity, collection path, id parameter, schema name)` of the data API's elements.
const ELEMENTS: &[(Entity, &str, &str, &str)] = &[
    (Entity::Thermostat, "/devices/thermostats", "device_id", "Thermostat"),
    (Entity::SmokeCoAlarm, "/devices/smoke_co_alarms", "device_id", "SmokeCoAlarm"),
    (Entity::Camera, "/devices/cameras", "device_id", "Camera"),
    (Entity::Structure, "/structures", "structure_id", "Structure"),
];

fn field_schema(f: &FieldSpec) -> Value {
    let mut s = match f.ty {
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Text { max } => json!({"type": "string", "maxLength": max}),
        FieldType::Enum(values) => json!({"type": "string", "enum": values}),
        FieldType::TempF => json!({"type": "number"}),
        FieldType::TempC => json!({"type": "number"}),
        FieldType::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        FieldType::IntChoice(values) => json!({"type": "integer", "enum": values}),
        FieldType::Timestamp => json!({"type": "string", "format": "date-time"}),
        FieldType::TimeToTarget => json!({"type": "string"}),
        FieldType::IdList => json!({"type": "array", "items": {"type": "string"}}),
        FieldType::Object => json!({"type": "object"}),
        FieldType::Array => json!({"type": "array"}),
    };
    let unit = match f.unit {
        Unit::Fahrenheit => " (°F)",
        Unit::Celsius => " (°C)",
        Unit::Percent => " (%)",
        Unit::Minutes => " (minutes)",
        Unit::None => "",
    };
    s["description"] = json!(format!("{}{unit}", f.doc));
    if f.write.products.is_empty() && !f.write.device {
        s["readOnly"] = json!(true);
    }
    s
}

/// An element's JSON Schema: the fields the schema shows, nested along `a/b` paths. Other
/// members are allowed (a grant shows a subset; an object field may carry more).
fn element_schema(entity: Entity) -> Value {
    let mut root = json!({"type": "object", "properties": {}});
    for f in FIELDS.iter().filter(|f| f.entity == entity && !f.is_internal()) {
        let mut at = &mut root;
        let mut parts = f.path.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                let existing = at["properties"][part].clone();
                let mut s = field_schema(f);
                if existing.get("properties").is_some() {
                    s["properties"] = existing["properties"].clone();
                }
                at["properties"][part] = s;
            } else {
                if at["properties"][part].get("properties").is_none() {
                    let mut o = at["properties"][part].clone();
                    if !o.is_object() {
                        o = json!({"type": "object"});
                    }
                    o["properties"] = json!({});
                    at["properties"][part] = o;
                }
                at = &mut at["properties"][part];
            }
        }
    }
    root
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The answers every data API call may give besides its success.
fn failures() -> Map<String, Value> {
    let mut m = Map::new();
    for (code, what) in [
        ("400", "The request is malformed, or a rule of the home refused it."),
        ("401", "No valid token."),
        ("404", "Nothing at that location the token may see."),
        ("412", "If-Match named another revision."),
        ("413", "The body is too large."),
        ("429", "A rate or stream limit was reached (Retry-After)."),
        ("503", "Storage is unreachable or the server is closing; nothing was changed."),
    ] {
        m.insert(code.into(), error_response(what));
    }
    m
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {
        "application/json": {"schema": schema},
        "text/event-stream": {"schema": {"type": "string",
            "description": "With Accept: text/event-stream: put events with {path, data}, keep-alive, auth_revoked."}}
    }})
}

fn read_op(summary: &str, schema: Value, params: Value) -> Value {
    let mut responses = failures();
    responses.insert("200".into(), json_ok("The location's value (or, as a stream, its changes).", schema));
    json!({"summary": summary, "parameters": params, "responses": responses})
}

fn write_op(summary: &str, schema: Value, params: Value, method: &str) -> Value {
    let mut responses = failures();
    responses.insert(
        "200".into(),
        json!({"description": "What was written (the echo).", "content": {"application/json": {"schema": {}}}}),
    );
    json!({
        "summary": format!("{summary} ({method}: a merge write; one request is all or nothing)"),
        "parameters": params,
        "requestBody": {"required": true, "content": {"application/json": {"schema": schema}}},
        "responses": responses
    })
}

fn path_param(name: &str) -> Value {
    // Ids are URL-safe base64 (`ids::element_id`); a location with a control character, a
    // `.` segment or too long a path is refused with 400 `invalid-location`.
    json!({"name": name, "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}})
}

/// GET, and the merge writes (a write may name any location: several devices at once from
/// `/devices`, say; the rules and permissions decide).
fn data_ops(summary: &str, schema: Value, params: Value) -> Value {
    let mut ops = Map::new();
    ops.insert("get".into(), read_op(summary, schema.clone(), params.clone()));
    for method in ["put", "patch"] {
        ops.insert(method.into(), write_op(summary, schema.clone(), params.clone(), method));
    }
    Value::Object(ops)
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error", "type", "message", "instance"],
            "properties": {
                "error": {"type": "string"},
                "type": {"type": "string", "description": "Its entry in /reference."},
                "message": {"type": "string"},
                "instance": {"type": "string"},
                "details": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "x-anchors": ERRORS.iter().map(|e| e.anchor).collect::<Vec<_>>()
        }),
    );
    for (entity, collection, id, name) in ELEMENTS {
        schemas.insert((*name).into(), element_schema(*entity));
        let element = json!({"$ref": format!("#/components/schemas/{name}")});
        let id_param = json!([path_param(id)]);
        let item = format!("{collection}/{{{id}}}");
        paths.insert(item.clone(), data_ops(&format!("One {name}"), element.clone(), id_param));
        let field_params = json!([path_param(id), {"name": "field", "in": "path", "required": true,
            "schema": {"type": "string", "enum": FIELDS.iter()
                .filter(|f| f.entity == *entity && !f.is_internal() && !f.path.contains('/'))
                .map(|f| f.path).collect::<Vec<_>>()}}]);
        paths.insert(
            format!("{item}/{{field}}"),
            data_ops(&format!("One field of a {name}"), json!({}), field_params),
        );
        paths.insert(
            (*collection).into(),
            data_ops(
                &format!("Every {name} the token sees, by id"),
                json!({"type": "object", "additionalProperties": element}),
                json!([]),
            ),
        );
    }
    schemas.insert("Metadata".into(), element_schema(Entity::Metadata));
    paths.insert(
        "/".into(),
        data_ops(
            "The whole document the token sees",
            json!({"type": "object", "properties": {
            "devices": {"type": "object"}, "structures": {"type": "object"},
            "metadata": {"$ref": "#/components/schemas/Metadata"}}}),
            json!([]),
        ),
    );
    paths.insert(
        "/devices".into(),
        data_ops("Every device the token sees", json!({"type": "object"}), json!([])),
    );
    paths.insert(
        "/metadata".into(),
        data_ops("The token's metadata", json!({"$ref": "#/components/schemas/Metadata"}), json!([])),
    );

    let mut history_responses = failures();
    history_responses.insert(
        "200".into(),
        json!({"description": "Newest first.", "content": {"application/json": {"schema": {
        "type": "object", "required": ["structure_id", "revision", "entries", "next_before"],
        "properties": {
            "structure_id": {"type": "string"}, "revision": {"type": "integer"},
            "next_before": {"type": ["integer", "null"]},
            "entries": {"type": "array", "items": {"type": "object",
                "required": ["revision", "at", "by", "paths", "set"],
                "properties": {"revision": {"type": "integer"}, "at": {"type": "string"},
                    "by": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string",
                        "enum": ["user", "product", "device", "service", "operator", "other"]}}},
                    "paths": {"type": "array", "items": {"type": "string"}}, "set": {}}}}}}}}}),
    );
    paths.insert(
        "/history/{structure_id}".into(),
        json!({"get": {
        "summary": "Who changed what in a home, newest first (the home's own people only)",
        "parameters": [path_param("structure_id"),
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
            {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
        "responses": history_responses}}),
    );

    let mut presence_responses = failures();
    presence_responses.insert(
        "200".into(),
        json!({"description": "The structure's away state after it.",
        "content": {"application/json": {"schema": {"type": "object"}}}}),
    );
    let presence = json!({
        "summary": "A phone says someone is home (Home/Away Assist)",
        "parameters": [path_param("structure_id")],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object", "required": ["present"], "properties": {"present": {"type": "boolean"}}}}}},
        "responses": presence_responses});
    paths.insert("/presence/{structure_id}".into(), json!({"put": presence.clone(), "post": presence}));

    let oauth_error = json!({"description": "RFC 6749 error", "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {"error": {"type": "string"},
            "error_description": {"type": "string"}}}}}});
    paths.insert(
        "/oauth2/access_token".into(),
        json!({"post": {
        "summary": "Exchange an authorization code or PIN for an access token",
        "security": [],
        "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["client_id", "code", "grant_type"],
            "properties": {"client_id": {"type": "string"}, "client_secret": {"type": "string"},
                "code": {"type": "string"}, "grant_type": {"type": "string", "enum": ["authorization_code"]},
                "code_verifier": {"type": "string"}, "redirect_uri": {"type": "string"}}}}}},
        "responses": {
            "200": {"description": "The token", "content": {"application/json": {"schema": {
                "type": "object", "required": ["access_token", "expires_in"],
                "properties": {"access_token": {"type": "string"}, "expires_in": {"type": "integer"}}}}}},
            "400": oauth_error.clone(), "401": oauth_error.clone(), "413": oauth_error.clone(),
            "429": oauth_error.clone(), "503": oauth_error.clone()}}}),
    );
    paths.insert(
        "/oauth2/revoke".into(),
        json!({"post": {
        "summary": "Revoke a token (RFC 7009)", "security": [],
        "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["token"], "properties": {"token": {"type": "string"},
                "client_id": {"type": "string"}, "client_secret": {"type": "string"}}}}}},
        "responses": {"200": {"description": "Revoked, or it was not a live token"},
            "400": oauth_error.clone(), "401": oauth_error.clone(), "413": oauth_error.clone(),
            "503": oauth_error.clone()}}}),
    );
    paths.insert(
        "/oauth2/access_tokens/{token}".into(),
        json!({"delete": {
        "summary": "Revoke a token (the original's form)", "security": [],
        "parameters": [path_param("token")],
        "responses": {"204": {"description": "Revoked"}, "400": oauth_error.clone(),
            "401": oauth_error.clone(), "404": oauth_error.clone(), "503": oauth_error}}}),
    );
    paths.insert("/.well-known/oauth-authorization-server".into(), json!({"get": {
        "summary": "OAuth server metadata (RFC 8414)", "security": [],
        "responses": {"200": {"description": "Metadata", "content": {"application/json": {"schema": {"type": "object"}}}}}}}));
    paths.insert("/healthz".into(), json!({"get": {"summary": "The process answers", "security": [],
        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}}}));
    paths.insert("/readyz".into(), json!({"get": {"summary": "Storage answers", "security": [],
        "responses": {"200": {"description": "ready", "content": {"application/json": {"schema": {"type": "object"}}}},
            "503": error_response("Storage unreachable")}}}));
    paths.insert("/metrics".into(), json!({"get": {"summary": "Prometheus metrics", "security": [],
        "responses": {"200": {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}));

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Roost",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A home data service with the Nest API's data model. Every field, permission and rule: /reference."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"auth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "auth": {"type": "apiKey", "in": "query", "name": "auth"}
            }
        }
    })
}

/// The document as served: built once, it depends on nothing but the build.
static SERVED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| document().to_string());

/// `GET /openapi.json`.
pub async fn openapi_json() -> Response {
    let mut r = (StatusCode::OK, SERVED.as_str()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
