//! `GET /history/<structure_id>?before=<revision>&limit=<n>`: what changed in a home, newest
//! first, from the change log (it keeps the last `--changelog-keep` revisions of each home).
//! Each entry: the revision, when, who (the user, a product, a device, the service's own
//! logic, the operator) and the fields it set, with their new values.
//!
//! Only the home's own people may read it: a token of the user (or the operator's, or the
//! home app's), not a product's or a device's. Who did what in a home is not a product's
//! business, and a product's grant would have to filter every entry field by field.
//!
//! Paging: the answer's `next_before` is the `before` of the next (older) page; `null` when
//! the log reaches no further.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use roost_model::ApiError;
use serde_json::{Value, json};

use crate::App;
use crate::api::authenticate;
use crate::error::Error;
use crate::http::{json_response, query_param};

/// Entries per page unless `limit` says otherwise, and at most.
const PAGE: usize = 50;
const MAX_PAGE: usize = 200;

pub async fn history(
    State(app): State<App>,
    Path(structure_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (_, grant) = authenticate(&app, &headers, &uri).await?;
    let location = format!("/history/{structure_id}");
    let own = grant.product_id.is_none() && grant.device_id.is_none();
    if !own || !grant.covers(&structure_id) {
        return Err(ApiError::not_found(&location).into());
    }
    let limit = match query_param(&uri, "limit") {
        None => PAGE,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid_value("limit", "a whole number from 1 to 200"))?,
    };
    let store = app.store.as_ref();
    let newest = store.revision(&structure_id).await?.ok_or_else(|| ApiError::not_found(&location))?;
    let before = match query_param(&uri, "before") {
        None => newest + 1,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| ApiError::invalid_value("before", "a revision number"))?
            .min(newest + 1),
    };
    let oldest = store.oldest_change(&structure_id).await?.unwrap_or(before);
    let from = before.saturating_sub(limit as u64).max(oldest);
    let mut changes = if from < before {
        store.changes_after(&structure_id, from.saturating_sub(1), (before - from) as usize).await?
    } else {
        Vec::new()
    };
    changes.retain(|c| c.revision < before);
    changes.reverse();
    let mut products = std::collections::HashMap::new();
    let mut entries = Vec::with_capacity(changes.len());
    for c in &changes {
        let by = who(&c.actor, &app, &mut products).await;
        entries.push(json!({
            "revision": c.revision,
            "at": c.at,
            "by": by,
            "paths": c.paths,
            "set": c.patch,
        }));
    }
    let next_before = changes.last().map(|c| c.revision).filter(|r| *r > oldest);
    let body = json!({
        "structure_id": structure_id,
        "revision": newest,
        "entries": entries,
        "next_before": next_before,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// Who a change-log actor is, for people: `{"kind", "id"?, "name"?}`.
async fn who(actor: &str, app: &App, products: &mut std::collections::HashMap<String, String>) -> Value {
    // An idempotency key is recorded after the actor; it says nothing about who.
    let actor = actor.split(" key:").next().unwrap_or(actor);
    let (via, actor) = match actor.strip_prefix("presence:") {
        Some(rest) => (Some("presence"), rest),
        None => (None, actor),
    };
    let mut who = match actor.split_once(':') {
        Some(("product", id)) => {
            let name = match products.get(id) {
                Some(n) => n.clone(),
                None => {
                    let n = app.store.product(id).await.ok().flatten().map(|p| p.name).unwrap_or_default();
                    products.insert(id.to_string(), n.clone());
                    n
                }
            };
            json!({"kind": "product", "id": id, "name": name})
        }
        Some(("device", id)) => json!({"kind": "device", "id": id}),
        Some(("token", _)) => json!({"kind": "user"}),
        Some(("service", what)) => json!({"kind": "service", "name": service_name(what)}),
        _ if actor == "admin" => json!({"kind": "operator"}),
        _ => json!({"kind": "other", "name": actor}),
    };
    if let (Some(via), Some(o)) = (via, who.as_object_mut()) {
        o.insert("via".into(), json!(via));
    }
    who
}

fn service_name(what: &str) -> &str {
    match what {
        "assist" => "Home/Away Assist",
        "connectivity" => "device connectivity",
        other => other,
    }
}
