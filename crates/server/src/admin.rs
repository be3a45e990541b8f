//! Administration on the store: users, structures, devices, tokens, and the demo home. Used
//! by the `roost admin` commands (on the data dir) and by `serve --demo`. No HTTP here.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use roost_model::demo::{DemoIds, demo_home};
use roost_model::{Actor, RuleConfig, WriteContext};
use roost_model::{Entity, Home, PermissionSet};
use roost_store::{Store, TokenRecord, User};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::hash_token;
use crate::change;
use crate::hub::Hub;
use crate::ids;

fn now() -> String {
    roost_model::units::format_time(chrono::Utc::now())
}

pub async fn create_user(store: &dyn Store, login: &str, password: Option<&str>) -> anyhow::Result<User> {
    if login.trim().is_empty() || login.len() > 254 {
        bail!("login must be 1 to 254 characters");
    }
    let password_hash = match password {
        Some(p) => Some(hash_password(p)?),
        None => None,
    };
    let user = User { id: ids::user_id(), login: login.to_string(), password_hash, created_at: now() };
    store.create_user(user.clone()).await.with_context(|| format!("creating user {login}"))?;
    Ok(user)
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::PasswordHasher;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow!("random source: {e}"))?;
    Ok(argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("hashing: {e}"))?
        .to_string())
}

/// Finds a user by id or login.
pub async fn find_user(store: &dyn Store, who: &str) -> anyhow::Result<User> {
    if let Some(u) = store.user(who).await? {
        return Ok(u);
    }
    store.user_by_login(who).await?.ok_or_else(|| anyhow!("no user with id or login '{who}'"))
}

/// Creates a home owned by `owner` (user id or login), settled by home logic under `rules`.
pub async fn create_structure(
    store: &dyn Store,
    rules: &RuleConfig,
    owner: &str,
    name: &str,
) -> anyhow::Result<String> {
    let user = find_user(store, owner).await?;
    let id = ids::element_id();
    let mut fields = Map::new();
    fields.insert("name".into(), Value::from(name));
    let mut home = Home::new_structure(&id, fields);
    let before = home.clone();
    let ctx =
        WriteContext { actor: &Actor::Service, now: chrono::Utc::now(), config: rules, measured_at: None };
    roost_model::logic::settle_all(&before, &mut home, &ctx);
    let due = roost_model::assist::next_due_secs(&home, rules);
    store.create_structure(&user.id, &id, home.into_json(), &now()).await?;
    record_first_due(store, &id, due).await?;
    Ok(id)
}

/// Records when a new home (revision 1) first has a timed change due, so that a clock that
/// does not hold it finds it (`Store::due_structures`).
async fn record_first_due(store: &dyn Store, id: &str, due: Option<i64>) -> anyhow::Result<()> {
    if let Some(due) = due {
        store.record_due(vec![(id.to_string(), 1, due)]).await?;
    }
    Ok(())
}

/// Commits the operator's change of a structure through the one change path
/// ([`change::make`]) with the operator's rule settings, as the service: what the rules and
/// home logic do is what they would do in the server. Returns the new revision.
pub async fn change_structure(
    store: &dyn Store,
    rules: &RuleConfig,
    edit: change::Edit<'_>,
) -> anyhow::Result<u64> {
    let hub = Hub::default();
    let ground = change::Ground { store, hub: &hub, rules };
    let outcome = change::make(ground, edit, &Actor::Service, "admin", Default::default())
        .await
        .map_err(|e| anyhow!("{}", e.message))?;
    Ok(outcome.snapshot.revision)
}

pub fn parse_kind(kind: &str) -> anyhow::Result<Entity> {
    match kind {
        "thermostat" | "thermostats" => Ok(Entity::Thermostat),
        "smoke_co_alarm" | "protect" | "smoke_co_alarms" => Ok(Entity::SmokeCoAlarm),
        "camera" | "cameras" => Ok(Entity::Camera),
        _ => bail!("unknown device kind '{kind}'; use thermostat, protect or camera"),
    }
}

/// Adds a device with sensible defaults in a where (created when new).
pub async fn add_device(
    store: &dyn Store,
    rules: &RuleConfig,
    structure_id: &str,
    kind: Entity,
    where_name: &str,
    label: &str,
) -> anyhow::Result<String> {
    let id = ids::element_id();
    let where_id = roost_model::rules::where_id_for(where_name);
    let t = now();
    let fields = match kind {
        Entity::Thermostat => json!({
            "locale": "en-US", "software_version": "5.9.3", "can_heat": true, "can_cool": true, "has_fan": true,
            "is_using_emergency_heat": false, "fan_timer_active": false, "fan_timer_duration": 15,
            "has_leaf": false, "temperature_scale": "F", "target_temperature_f": 68,
            "target_temperature_low_f": 66, "target_temperature_high_f": 76,
            "eco_temperature_low_f": 62, "eco_temperature_high_f": 80, "ambient_temperature_f": 68, "humidity": 40,
            "hvac_mode": "heat", "hvac_state": "off", "is_locked": false, "locked_temp_min_f": 65, "locked_temp_max_f": 75,
            "sunlight_correction_enabled": true, "sunlight_correction_active": false,
            "time_to_target": "~0", "time_to_target_training": "ready",
        }),
        Entity::SmokeCoAlarm => json!({
            "locale": "en-US", "software_version": "3.1.4", "battery_health": "ok", "co_alarm_state": "ok",
            "smoke_alarm_state": "ok", "is_manual_test_active": false, "last_manual_test_time": "1970-01-01T00:00:00.000Z",
        }),
        Entity::Camera => json!({
            "software_version": "205-600052", "is_streaming": true, "is_audio_input_enabled": true,
            "last_is_online_change": t, "is_video_history_enabled": false, "web_url": "", "app_url": "",
            "is_public_share_enabled": false, "public_share_url": "", "snapshot_url": "", "activity_zones": [],
        }),
        _ => bail!("not a device kind"),
    };
    let Value::Object(mut fields) = fields else { bail!("device defaults are not an object") };
    fields.insert("where_id".into(), Value::from(where_id.as_str()));
    fields.insert("label".into(), Value::from(label));
    fields.insert("is_online".into(), Value::from(true));
    if kind != Entity::Camera {
        fields.insert("last_connection".into(), Value::from(t.as_str()));
    }
    let new_id = id.clone();
    let edit = |home: &mut Home| {
        let wheres = home.structure_mut().object_mut("wheres");
        if !wheres.contains_key(&where_id) {
            wheres.insert(where_id.clone(), json!({"where_id": where_id, "name": where_name}));
        }
        home.insert_device(kind, &new_id, fields.clone());
        Ok(())
    };
    change_structure(store, rules, change::Edit::Direct { structure_id, edit: &edit }).await?;
    Ok(id)
}

/// Issues a token for a user over the given structures (all of theirs when empty). Returns the
/// token; only its hash is stored.
pub async fn issue_token(
    store: &dyn Store,
    user: &str,
    permissions: PermissionSet,
    structures: &[String],
    label: &str,
) -> anyhow::Result<String> {
    mint_token(store, user, structures, None, permissions.bits(), 1, label).await
}

/// Mints and stores a token (operator-issued when `product` is `None`).
async fn mint_token(
    store: &dyn Store,
    user: &str,
    structures: &[String],
    product: Option<String>,
    permissions: u32,
    client_version: u64,
    label: &str,
) -> anyhow::Result<String> {
    let user = find_user(store, user).await?;
    let owned = store.structures_of(&user.id).await?;
    let structures = if structures.is_empty() { owned.clone() } else { structures.to_vec() };
    let owned: std::collections::HashSet<&String> = owned.iter().collect();
    if let Some(s) = structures.iter().find(|s| !owned.contains(s)) {
        bail!("structure '{s}' is not one of {}'s", user.login);
    }
    let token = ids::access_token();
    store
        .insert_token(TokenRecord {
            hash: hash_token(&token),
            user_id: user.id,
            product_id: product,
            permissions,
            structures,
            client_version,
            created_at: now(),
            label: label.to_string(),
            revoked: false,
            device_id: None,
        })
        .await?;
    Ok(token)
}

/// A product as created: the client id and, for confidential products, the secret (shown
/// once; only its hash is stored).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NewProduct {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub permissions: Vec<String>,
}

pub async fn create_product(
    store: &dyn Store,
    name: &str,
    description: &str,
    redirect_uris: &[String],
    permissions: PermissionSet,
    public: bool,
    owner: Option<&str>,
) -> anyhow::Result<NewProduct> {
    if name.trim().is_empty() || name.len() > 100 {
        bail!("--name must be 1 to 100 characters");
    }
    for uri in redirect_uris {
        let ok = (uri.starts_with("https://")
            || uri.starts_with("http://127.0.0.1")
            || uri.starts_with("http://localhost"))
            && !uri.contains('#')
            && uri.len() <= 512;
        if !ok {
            bail!("redirect URI '{uri}' must be https (or http on loopback), without a fragment");
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let secret = (!public).then(|| ids::random_b64(18));
    let secret_hash = match &secret {
        Some(s) => Some(hash_password(s)?),
        None => None,
    };
    store
        .create_product(roost_store::Product {
            id: id.clone(),
            owner: owner.map(str::to_string),
            name: name.to_string(),
            description: description.to_string(),
            secret_hash,
            redirect_uris: redirect_uris.to_vec(),
            permissions: permissions.bits(),
            client_version: 1,
            created_at: now(),
        })
        .await?;
    Ok(NewProduct {
        client_id: id,
        client_secret: secret,
        name: name.to_string(),
        redirect_uris: redirect_uris.to_vec(),
        permissions: permissions.to_list().into_iter().map(str::to_string).collect(),
    })
}

/// Issues a token to a product for a user, with the product's permissions (as a consent
/// would).
pub async fn issue_product_token(
    store: &dyn Store,
    user: &str,
    product_id: &str,
    structures: &[String],
) -> anyhow::Result<String> {
    let p = store
        .product(product_id)
        .await?
        .ok_or_else(|| anyhow!("no product with client id '{product_id}'"))?;
    mint_token(store, user, structures, Some(p.id), p.permissions, p.client_version, &p.name).await
}

pub async fn revoke_token(store: &dyn Store, token: &str) -> anyhow::Result<bool> {
    Ok(store.revoke_token(&hash_token(token)).await?)
}

/// A token's id for operators: the first 16 hex digits of its hash (the token itself is
/// never stored, so it cannot be shown).
pub fn token_id(token: &TokenRecord) -> String {
    ids::hex(&token.hash[..8])
}

/// Revokes one of a user's tokens by its id (or a prefix of it, at least 8 digits, naming
/// exactly one token); true if it was active.
pub async fn revoke_token_by_id(store: &dyn Store, user: &str, id: &str) -> anyhow::Result<bool> {
    if id.len() < 8 {
        bail!("a token id has at least 8 hex digits (`token list` shows them)");
    }
    let user = find_user(store, user).await?;
    let tokens = store.tokens_of(&user.id).await?;
    let matching: Vec<&TokenRecord> = tokens.iter().filter(|t| token_id(t).starts_with(id)).collect();
    match matching.as_slice() {
        [one] => Ok(store.revoke_token(&one.hash).await?),
        [] => Ok(false),
        _ => bail!("token id {id} names {} tokens of {}; give more digits", matching.len(), user.login),
    }
}

/// A paired device's credential: what a device (or `roost sim`) needs to connect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceCredential {
    pub device_id: String,
    /// `thermostats`, `smoke_co_alarms` or `cameras`.
    pub kind: String,
    pub structure_id: String,
    /// Shown once; only its hash is stored.
    pub device_token: String,
}

/// Issues a device its own credential (pairing). It reads and reports only that device.
/// With its structure named the lookup is one read; without, every structure is searched.
pub async fn pair_device(
    store: &dyn Store,
    device_id: &str,
    structure_id: Option<&str>,
) -> anyhow::Result<DeviceCredential> {
    let locate = |s: roost_store::StoredStructure| {
        let home = Home::from_json(&s.id, s.doc)?;
        let kind = home.device_kind(device_id)?;
        Some((s.id, s.owner, kind))
    };
    let found = match structure_id {
        Some(id) => store.structure(id).await?.and_then(locate),
        None => {
            // One structure at a time: a large store is never held in memory at once.
            let mut found = None;
            for id in store.structure_ids().await? {
                found = store.structure(&id).await?.and_then(locate);
                if found.is_some() {
                    break;
                }
            }
            found
        }
    };
    let (structure, owner, kind) = found.ok_or_else(|| anyhow!("no device '{device_id}'"))?;
    let token = ids::access_token();
    store
        .insert_token(TokenRecord {
            hash: hash_token(&token),
            user_id: owner,
            product_id: None,
            permissions: 0,
            structures: vec![structure.clone()],
            client_version: 1,
            created_at: now(),
            label: format!("device {device_id}"),
            revoked: false,
            device_id: Some(device_id.to_string()),
        })
        .await?;
    Ok(DeviceCredential {
        device_id: device_id.to_string(),
        kind: kind.collection().unwrap_or_default().to_string(),
        structure_id: structure,
        device_token: token,
    })
}

/// Revokes every credential of a device (its open streams end at once).
pub async fn unpair_device(store: &dyn Store, device_id: &str) -> anyhow::Result<usize> {
    Ok(store.revoke_device_tokens(device_id).await?)
}

/// Rush Hour Rewards settings of a structure (set by the operator, read with `energy:read`).
pub async fn set_rush_hour(
    store: &dyn Store,
    rules: &RuleConfig,
    structure_id: &str,
    start: Option<&str>,
    end: Option<&str>,
    enrolled: Option<bool>,
) -> anyhow::Result<u64> {
    let mut fields = Map::new();
    for (name, flag, value) in
        [("peak_period_start_time", "--start", start), ("peak_period_end_time", "--end", end)]
    {
        if let Some(v) = value {
            let t = roost_model::units::parse_time(v)
                .ok_or_else(|| anyhow!("{flag} ({name}): '{v}' is not an ISO 8601 UTC time"))?;
            fields.insert(name.into(), Value::from(roost_model::units::format_time(t)));
        }
    }
    if let Some(e) = enrolled {
        fields.insert("rhr_enrollment".into(), Value::from(e));
    }
    let edit = |home: &mut Home| {
        home.structure_mut().extend(fields.clone());
        Ok(())
    };
    change_structure(store, rules, change::Edit::Direct { structure_id, edit: &edit }).await
}

/// Sets a structure's Home/Away as the service would (judged by the rules, then home logic:
/// with `eco_on_away`, thermostats go to eco). Returns the new revision.
pub async fn set_away(
    store: &dyn Store,
    rules: &RuleConfig,
    structure_id: &str,
    away: &str,
) -> anyhow::Result<u64> {
    let mut fields = Map::new();
    fields.insert("away".into(), Value::from(away));
    let plan = roost_model::WritePlan {
        structure_id: structure_id.to_string(),
        writes: vec![roost_model::write::EntityWrite {
            target: roost_model::write::Target::Structure,
            fields: fields.into(),
        }],
    };
    change_structure(store, rules, change::Edit::Plan(&plan)).await
}

/// Fresh random ids for a demo-shaped home (the demo, and the bench's seeded homes).
pub fn random_demo_ids() -> DemoIds {
    DemoIds {
        structure_id: ids::element_id(),
        heat_pump_thermostat: ids::element_id(),
        heat_only_thermostat: ids::element_id(),
        kitchen_protect: ids::element_id(),
        hallway_protect: ids::element_id(),
        camera: ids::element_id(),
    }
}

/// What `serve --demo` writes to `DIR/demo.json` for scripts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DemoInfo {
    pub url: String,
    pub ca: Option<String>,
    pub access_token: String,
    pub user_id: String,
    pub login: String,
    pub structure_id: String,
    pub devices: DemoIds,
    /// The demo user's password (for the OAuth login page).
    #[serde(default)]
    pub password: String,
    /// Two demo products: a web-flow one and a PIN-flow one.
    #[serde(default)]
    pub products: Vec<NewProduct>,
    /// The demo devices' own credentials, issued afresh at every start for the built-in
    /// simulator (earlier ones are revoked).
    #[serde(default)]
    pub device_credentials: Vec<DeviceCredential>,
}

/// The web-flow demo product's redirect URI (a loopback listener of your own).
pub const DEMO_REDIRECT_URI: &str = "http://127.0.0.1:8765/callback";

/// Creates the demo products and the demo password when missing.
async fn ensure_demo_access(store: &dyn Store, info: &mut DemoInfo) -> anyhow::Result<()> {
    if info.password.is_empty() {
        info.password = ids::random_b64(12);
        let hash = hash_password(&info.password)?;
        store.set_password(&info.user_id, &hash).await?;
    }
    if info.products.is_empty() {
        let web = PermissionSet::parse_list("thermostat:write,away:write,smoke_co:read,camera:read")
            .map_err(|e| anyhow!(e))?;
        info.products.push(
            create_product(
                store,
                "Demo web app",
                "A web app that controls your thermostats and Home/Away (web flow).",
                &[DEMO_REDIRECT_URI.to_string()],
                web,
                false,
                None,
            )
            .await?,
        );
        let pin = PermissionSet::parse_list(
            "thermostat:write,smoke_co:read,camera:write+images,away:write,eta:write,postal_code:read,energy:read,security_state:read,structure:write",
        )
        .map_err(|e| anyhow!(e))?;
        info.products.push(
            create_product(
                store,
                "Demo device",
                "A device without a browser that connects with a PIN (PIN flow).",
                &[],
                pin,
                false,
                None,
            )
            .await?,
        );
    }
    Ok(())
}

/// Creates the demo user, home and token once; later starts reuse them (the URL and CA are
/// refreshed).
pub async fn ensure_demo(
    store: &dyn Store,
    dir: &Path,
    url: &str,
    ca: Option<&Path>,
    rules: &RuleConfig,
) -> anyhow::Result<DemoInfo> {
    let path = dir.join("demo.json");
    let ca = ca.map(|p| p.display().to_string());
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut info: DemoInfo = serde_json::from_str(&text).context("reading demo.json")?;
        info.url = url.to_string();
        info.ca = ca;
        ensure_demo_access(store, &mut info).await?;
        pair_demo_devices(store, &mut info).await?;
        write_demo(&path, &info)?;
        return Ok(info);
    }
    let login = "demo@roost.local";
    let user = match store.user_by_login(login).await? {
        Some(u) => u,
        None => create_user(store, login, None).await?,
    };
    let devices = random_demo_ids();
    let home = demo_home(&devices, chrono::Utc::now());
    let due = roost_model::assist::next_due_secs(&home, rules);
    store.create_structure(&user.id, &devices.structure_id, home.into_json(), &now()).await?;
    record_first_due(store, &devices.structure_id, due).await?;
    let token = issue_token(store, &user.id, PermissionSet::all(), &[], "demo").await?;
    let mut info = DemoInfo {
        url: url.to_string(),
        ca,
        access_token: token,
        user_id: user.id,
        login: login.to_string(),
        structure_id: devices.structure_id.clone(),
        devices,
        password: String::new(),
        products: Vec::new(),
        device_credentials: Vec::new(),
    };
    ensure_demo_access(store, &mut info).await?;
    pair_demo_devices(store, &mut info).await?;
    write_demo(&path, &info)?;
    Ok(info)
}

/// Fresh credentials for the demo's devices (the built-in simulator's), revoking older ones.
async fn pair_demo_devices(store: &dyn Store, info: &mut DemoInfo) -> anyhow::Result<()> {
    let d = &info.devices;
    let ids =
        [&d.heat_pump_thermostat, &d.heat_only_thermostat, &d.kitchen_protect, &d.hallway_protect, &d.camera];
    let mut credentials = Vec::new();
    for id in ids {
        unpair_device(store, id).await?;
        credentials.push(pair_device(store, id, Some(&d.structure_id)).await?);
    }
    info.device_credentials = credentials;
    Ok(())
}

fn write_demo(path: &Path, info: &DemoInfo) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(info)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
