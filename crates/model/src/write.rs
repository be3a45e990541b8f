//! Writes: from `(location, body)` to a new, consistent [`Home`], or one error.
//!
//! 1. [`plan_write`] places the body at its location and splits it into per-element field
//!    maps ([`EntityWrite`]), and finds the one structure they all belong to. A write that
//!    spans structures is refused: one request is one atomic commit of one structure.
//! 2. [`apply_write`] checks, in the order of the issue (docs/compatibility.md §2 with the
//!    emergency-heat rule added): write permission of every field for the actor, value types
//!    and enums, then the per-element safety rules ([`crate::rules`]); applies the fields
//!    (merge: named fields change, others stay); and runs home logic to a fixed point
//!    ([`crate::logic`]). Any failure leaves the home untouched.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::context::{Actor, WriteContext};
use crate::diff::json_merge;
use crate::error::{ApiError, ErrorKind};
use crate::fields::FieldMap;
use crate::fields::merge_fields;
use crate::home::Home;
use crate::location::Location;
use crate::schema::{self, Entity, FieldType, PRODUCT_DATA};
use crate::units;
use crate::{logic, rules};

/// The element of a home that a set of fields is written to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Device(Entity, String),
    Structure,
    ProductData { company: String, product_type: String, id: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntityWrite {
    pub target: Target,
    pub fields: FieldMap,
}

/// A request split into element writes, all in one structure.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePlan {
    pub structure_id: String,
    pub writes: Vec<EntityWrite>,
}

/// Splits a request into element writes and finds its structure among `homes` (the homes
/// the writer can see). Errors: `Invalid content sent` for a body of the wrong shape, 404 for
/// an element that does not exist, 400 when the write spans structures.
pub fn plan_write<'h>(
    location: &Location,
    body: &Value,
    homes: impl IntoIterator<Item = &'h Home> + Clone,
) -> Result<WritePlan, ApiError> {
    let tree = location.wrap(body.clone());
    let Value::Object(root) = tree else {
        return Err(ApiError::invalid_content_because("expected a JSON object"));
    };
    let mut placed: Vec<(String, EntityWrite)> = Vec::new();
    let mut refused_fields = Vec::new();
    for (top, v) in root {
        match top.as_str() {
            "devices" => {
                for (coll, items) in as_object(v, "devices")? {
                    match Entity::from_collection(&coll) {
                        Some(kind) => {
                            for (id, fields) in as_object(items, &coll)? {
                                let home = homes
                                    .clone()
                                    .into_iter()
                                    .find(|h| h.device(kind, &id).is_some())
                                    .ok_or_else(|| ApiError::not_found(&format!("/devices/{coll}/{id}")))?;
                                let fields = as_object(fields, &id)?;
                                placed.push((
                                    home.id().to_string(),
                                    EntityWrite { target: Target::Device(kind, id), fields: fields.into() },
                                ));
                            }
                        }
                        None => {
                            for (product_type, ids) in as_object(items, &coll)? {
                                for (id, fields) in as_object(ids, &product_type)? {
                                    let fields = as_object(fields, &id)?;
                                    let sid = product_data_home(&homes, &coll, &product_type, &id, &fields)?;
                                    let target = Target::ProductData {
                                        company: coll.clone(),
                                        product_type: product_type.clone(),
                                        id,
                                    };
                                    placed.push((sid, EntityWrite { target, fields: fields.into() }));
                                }
                            }
                        }
                    }
                }
            }
            "structures" => {
                for (sid, fields) in as_object(v, "structures")? {
                    if !homes.clone().into_iter().any(|h| h.id() == sid) {
                        return Err(ApiError::not_found(&format!("/structures/{sid}")));
                    }
                    let fields = as_object(fields, &sid)?;
                    placed.push((sid, EntityWrite { target: Target::Structure, fields: fields.into() }));
                }
            }
            "metadata" => {
                for (k, _) in as_object(v, "metadata")? {
                    refused_fields.push(k);
                }
            }
            _ => return Err(ApiError::not_found(&format!("/{top}"))),
        }
    }
    if !refused_fields.is_empty() {
        return Err(ApiError::no_write_permission(&refused_fields));
    }
    let mut structure_id = None;
    for (sid, _) in &placed {
        match &structure_id {
            None => structure_id = Some(sid.clone()),
            Some(s) if s == sid => {}
            Some(_) => {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    "multiple-structures",
                    "A write may change only one structure at a time",
                ));
            }
        }
    }
    let structure_id = match structure_id {
        Some(s) => s,
        // An empty write: resolve the location's structure so the caller can still answer.
        None => homes
            .clone()
            .into_iter()
            .next()
            .map(|h| h.id().to_string())
            .ok_or_else(|| ApiError::not_found(&location.to_string()))?,
    };
    Ok(WritePlan { structure_id, writes: placed.into_iter().map(|(_, w)| w).collect() })
}

fn as_object(v: Value, what: &str) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::invalid_content_because(format!("expected an object at '{what}'"))),
    }
}

/// Product data lives in the structure that already holds it, or for a new entry in the one
/// its `location.structure_id` names.
fn product_data_home<'h>(
    homes: &(impl IntoIterator<Item = &'h Home> + Clone),
    company: &str,
    ty: &str,
    id: &str,
    fields: &Map<String, Value>,
) -> Result<String, ApiError> {
    for h in homes.clone() {
        if h.has_product_data(company, ty, id) {
            return Ok(h.id().to_string());
        }
    }
    let sid = fields.get("location").and_then(|l| l.get("structure_id")).and_then(Value::as_str).ok_or_else(
        || {
            ApiError::invalid_content_because(
                "new product data needs location.structure_id naming one of your structures",
            )
        },
    )?;
    if homes.clone().into_iter().any(|h| h.id() == sid) {
        Ok(sid.to_string())
    } else {
        Err(ApiError::not_found(&format!("/structures/{sid}")))
    }
}

/// Checks and applies a plan to `home`, returning the new home (after home logic).
pub fn apply_write(home: &Home, plan: &WritePlan, ctx: &WriteContext<'_>) -> Result<Home, ApiError> {
    check_permissions(plan, ctx.actor)?;
    let mut normalized = Vec::with_capacity(plan.writes.len());
    for w in &plan.writes {
        normalized
            .push(EntityWrite { target: w.target.clone(), fields: normalize_fields(&w.target, &w.fields)? });
    }
    let mut next = home.clone();
    for w in &normalized {
        match &w.target {
            Target::Device(kind, id) => {
                let current = home.device(*kind, id).ok_or_else(|| {
                    ApiError::not_found(&format!("/devices/{}/{id}", kind.collection().unwrap_or_default()))
                })?;
                let mut updated = match kind {
                    Entity::Thermostat => rules::thermostat(current, &w.fields, home, ctx)?,
                    _ => merge_fields(current, &w.fields),
                };
                if matches!(ctx.actor, Actor::Device { .. }) {
                    rules::device_report(current, &mut updated, *kind, &w.fields, ctx)?;
                }
                if let Some(d) = next.device_fields_mut(*kind, id) {
                    *d = Arc::new(updated);
                }
            }
            Target::Structure => {
                let updated = rules::structure(home.structure(), &w.fields, home, ctx)?;
                next.set_structure(updated);
            }
            Target::ProductData { company, product_type, id } => {
                rules::product_data(&w.fields, home.id())?;
                let coll = next.product_data_mut(company, product_type);
                let entry = coll.entry(id.clone()).or_insert_with(|| Value::Object(Map::new()));
                json_merge(entry, &w.fields.to_value());
            }
        }
    }
    logic::settle(home, &mut next, ctx);
    Ok(next)
}

/// Takes out of a device's report every reported field that the device already reported
/// with a later measurement time (a late report never overwrites a newer one). Returns the
/// locations left out. Only device writes are affected.
pub fn drop_stale_reports(plan: &mut WritePlan, home: &Home, ctx: &WriteContext<'_>) -> Vec<String> {
    let mut dropped = Vec::new();
    if !matches!(ctx.actor, Actor::Device { .. }) {
        return dropped;
    }
    let measured = ctx.measured();
    for w in &mut plan.writes {
        let Target::Device(kind, id) = &w.target else {
            continue;
        };
        let Some(reported_at) =
            home.device(*kind, id).and_then(|d| d.get("reported_at")).and_then(Value::as_object)
        else {
            continue;
        };
        let stale: Vec<String> = w
            .fields
            .keys()
            .filter(|f| schema::is_reported(*kind, f))
            .filter(|f| {
                reported_at.get(f.as_str()).and_then(Value::as_str).is_some_and(|at| at > measured.as_str())
            })
            .map(|f| f.to_string())
            .collect();
        for f in stale {
            w.fields.remove(&f);
            dropped.push(format!("/devices/{}/{id}/{f}", kind.collection().unwrap_or_default()));
        }
    }
    dropped
}

/// Step 1–2 of the rules: every field must be writable by the actor; the error names them all.
fn check_permissions(plan: &WritePlan, actor: &Actor) -> Result<(), ApiError> {
    check_known(plan)?;
    let mut refused: Vec<String> = Vec::new();
    for w in &plan.writes {
        match &w.target {
            Target::ProductData { .. } => {
                let ok = match actor {
                    Actor::Product { permissions } => permissions.intersects(PRODUCT_DATA),
                    Actor::Device { .. } => false,
                    Actor::Service => true,
                };
                if !ok {
                    refused.extend(w.fields.keys().map(|k| k.to_string()));
                }
            }
            Target::Device(kind, id) => {
                for k in w.fields.keys() {
                    if !may_write(*kind, k, actor, Some(id)) {
                        refused.push(k.to_string());
                    }
                }
            }
            Target::Structure => {
                for k in w.fields.keys() {
                    if !may_write(Entity::Structure, k, actor, None) {
                        refused.push(k.to_string());
                    }
                }
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        refused.dedup();
        Err(ApiError::no_write_permission(&refused))
    }
}

/// May `actor` write `field` of an element of kind `entity` (device `device_id`)?
/// Every field written to a device or the structure has a row in the schema; otherwise the
/// error names the unknown ones (product data is free-form).
fn check_known(plan: &WritePlan) -> Result<(), ApiError> {
    for w in &plan.writes {
        let entity = match &w.target {
            Target::Device(kind, _) => *kind,
            Target::Structure => Entity::Structure,
            Target::ProductData { .. } => continue,
        };
        let unknown: Vec<String> =
            w.fields.keys().filter(|k| schema::field(entity, k).is_none()).map(|k| k.to_string()).collect();
        if let Some(first) = unknown.first() {
            let element = entity.collection().unwrap_or("structures");
            return Err(ApiError::unknown_fields(element, &unknown, schema::closest_field(entity, first)));
        }
    }
    Ok(())
}

pub fn may_write(entity: Entity, field: &str, actor: &Actor, device_id: Option<&str>) -> bool {
    let Some(spec) = schema::field(entity, field) else {
        return false;
    };
    match actor {
        Actor::Service => true,
        Actor::Product { permissions } => spec.write.products.intersects(*permissions),
        Actor::Device { device_id: me } => spec.write.device && device_id == Some(me.as_str()),
    }
}

/// Step 3: value types and enum values, with values normalized (°C rounded to 0.5,
/// timestamps in the API's format).
fn normalize_fields(target: &Target, fields: &FieldMap) -> Result<FieldMap, ApiError> {
    let entity = match target {
        Target::Device(kind, _) => *kind,
        Target::Structure => Entity::Structure,
        Target::ProductData { .. } => return Ok(fields.clone()),
    };
    let mut out = FieldMap::new();
    for (k, v) in fields {
        let Some(spec) = schema::field(entity, k) else {
            return Err(ApiError::no_write_permission(&[k.to_string()]));
        };
        let v = normalize_value(entity, k, spec.ty, v)?;
        out.insert(k.clone(), v);
    }
    Ok(out)
}

fn normalize_value(entity: Entity, name: &str, ty: FieldType, v: &Value) -> Result<Value, ApiError> {
    let bad = |expected: &str| Err(ApiError::invalid_value(name, expected));
    match ty {
        FieldType::Bool => match v {
            Value::Bool(_) => Ok(v.clone()),
            _ => bad("true or false"),
        },
        FieldType::Text { max } => match v.as_str() {
            Some(s) if s.chars().count() <= max && !s.chars().any(char::is_control) => Ok(v.clone()),
            Some(_) => bad(&format!("a string of at most {max} characters")),
            None => bad("a string"),
        },
        FieldType::Enum(allowed) => {
            let allowed: &[&str] =
                if entity == Entity::Structure && name == "away" { schema::AWAY_WRITABLE } else { allowed };
            match v.as_str() {
                Some(s) if allowed.contains(&s) => Ok(v.clone()),
                _ => bad(&format!(
                    "one of {}",
                    allowed.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ")
                )),
            }
        }
        FieldType::TempF => match v.as_f64() {
            Some(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1000.0 => Ok(units::f_json(x)),
            _ => Err(ApiError::temperature_format(name)),
        },
        FieldType::TempC => match v.as_f64() {
            Some(x) if x.is_finite() && x.abs() < 1000.0 => Ok(units::c_json(x)),
            _ => Err(ApiError::temperature_format(name)),
        },
        FieldType::Int { min, max } => match v.as_f64() {
            Some(x) if x.fract() == 0.0 && x >= min as f64 && x <= max as f64 => Ok(Value::from(x as i64)),
            _ => bad(&format!("an integer from {min} to {max}")),
        },
        FieldType::IntChoice(_) => match v.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e9 => Ok(Value::from(x as i64)),
            _ => bad("an integer"),
        },
        FieldType::Timestamp => match v.as_str().and_then(units::parse_time) {
            Some(t) => Ok(Value::from(units::format_time(t))),
            None => bad("an ISO 8601 time"),
        },
        FieldType::TimeToTarget => match v.as_str() {
            Some(s) if is_time_to_target(s) => Ok(v.clone()),
            _ => bad("'~N', '<N' or '>N' minutes"),
        },
        FieldType::IdList => match v.as_array() {
            Some(a) if a.iter().all(Value::is_string) => Ok(v.clone()),
            _ => bad("an array of ids"),
        },
        FieldType::Object => match v {
            // Nulls are dropped: a stored document never holds null (a merge patch uses null
            // to mean "removed").
            Value::Object(_) => Ok(without_nulls(v)),
            _ => bad("an object"),
        },
        FieldType::Array => match v {
            Value::Array(_) => Ok(v.clone()),
            _ => bad("an array"),
        },
    }
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn is_time_to_target(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('~' | '<' | '>'))
        && s.len() > 1
        && s.len() <= 8
        && chars.all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_target_forms() {
        for ok in ["~0", "<5", "~15", ">120"] {
            assert!(is_time_to_target(ok), "{ok}");
        }
        for bad in ["", "~", "15", "~1.5", "~-1", "=5"] {
            assert!(!is_time_to_target(bad), "{bad}");
        }
    }
}
