//! `roost admin`: operations on a data dir.

use anyhow::anyhow;
use clap::ArgMatches;
use roost_model::PermissionSet;
use roost_server::admin;

use crate::cli::{
    AdminArgs, AdminCommand, DeviceCommand, ProductCommand, StructureCommand, TokenCommand, UserCommand,
};
use crate::config;

/// Runs one admin command with the operator's settings (read as `roost serve` reads them).
pub async fn run(args: AdminArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let AdminArgs { json, init, file, store, rules, command } = args;
    let settings = config::admin(&file, store, rules, matches)?;
    let data = &settings.store.data;
    let database = settings.store.database()?;
    if database.is_none() && !init && !data.join("roost.db").exists() {
        anyhow::bail!(
            "no Roost data dir at {} (give --data, or --init to create one here; `roost serve` creates one too)",
            data.display()
        );
    }
    let rules = &settings.rules;
    // One command at a time: two connections are plenty.
    let store =
        roost_server::connect_store(data, database.as_deref(), 2, settings.store.changelog_keep, true)
            .await?;
    let s = store.as_ref();
    let out = |human: String, value: serde_json::Value| {
        if json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    };
    match command {
        AdminCommand::User { command: UserCommand::Create { login, password } } => {
            let u = admin::create_user(s, &login, password.as_deref()).await?;
            out(
                format!("created user {} ({})", u.login, u.id),
                serde_json::json!({"user_id": u.id, "login": u.login}),
            );
        }
        AdminCommand::User { command: UserCommand::List } => {
            let users = roost_store::Store::users(s).await?;
            let v: Vec<_> =
                users.iter().map(|u| serde_json::json!({"user_id": u.id, "login": u.login})).collect();
            out(
                users.iter().map(|u| format!("{}  {}", u.id, u.login)).collect::<Vec<_>>().join("\n"),
                v.into(),
            );
        }
        AdminCommand::Structure { command: StructureCommand::Create { owner, name } } => {
            let id = admin::create_structure(s, rules, &owner, &name).await?;
            out(format!("created structure {id}"), serde_json::json!({"structure_id": id}));
        }
        AdminCommand::Structure { command: StructureCommand::List } => {
            let all = roost_store::Store::all_structures(s).await?;
            let v: Vec<_> = all
                .iter()
                .map(|st| {
                    let name = st.doc.pointer(&format!("/structures/{}/name", st.id)).cloned().unwrap_or_default();
                    serde_json::json!({"structure_id": st.id, "owner": st.owner, "revision": st.revision, "name": name})
                })
                .collect();
            out(
                v.iter()
                    .map(|x| format!("{}  rev {}  {}", x["structure_id"], x["revision"], x["name"]))
                    .collect::<Vec<_>>()
                    .join("\n"),
                v.into(),
            );
        }
        AdminCommand::Device { command: DeviceCommand::Add { structure, kind, where_name, label } } => {
            let kind = admin::parse_kind(&kind)?;
            let id = admin::add_device(s, rules, &structure, kind, &where_name, &label).await?;
            out(format!("added device {id}"), serde_json::json!({"device_id": id}));
        }
        AdminCommand::Device { command: DeviceCommand::Pair { device, structure } } => {
            let c = admin::pair_device(s, &device, structure.as_deref()).await?;
            out(
                format!(
                    "device {} ({} in {}): token {}",
                    c.device_id, c.kind, c.structure_id, c.device_token
                ),
                serde_json::to_value(&c)?,
            );
        }
        AdminCommand::Device { command: DeviceCommand::Unpair { device } } => {
            let n = admin::unpair_device(s, &device).await?;
            out(format!("revoked {n} credential(s) of {device}"), serde_json::json!({"revoked": n}));
        }
        AdminCommand::Structure {
            command: StructureCommand::RushHour { structure, start, end, enrolled },
        } => {
            let rev = admin::set_rush_hour(s, rules, &structure, start.as_deref(), end.as_deref(), enrolled)
                .await?;
            out(format!("structure {structure} at revision {rev}"), serde_json::json!({"revision": rev}));
        }
        AdminCommand::Structure { command: StructureCommand::Away { structure, state } } => {
            let rev = admin::set_away(s, rules, &structure, &state).await?;
            out(
                format!("structure {structure} is {state} at revision {rev}"),
                serde_json::json!({"revision": rev}),
            );
        }
        AdminCommand::Device { command: DeviceCommand::List { structure } } => {
            let st = roost_store::Store::structure(s, &structure)
                .await?
                .ok_or_else(|| anyhow!("no structure '{structure}'"))?;
            let home = roost_model::Home::from_json(&st.id, st.doc)
                .ok_or_else(|| anyhow!("structure is damaged"))?;
            let v: Vec<_> = home
                .device_ids()
                .into_iter()
                .map(|(k, id)| serde_json::json!({"device_id": id, "kind": k.collection()}))
                .collect();
            out(
                v.iter().map(|x| format!("{}  {}", x["device_id"], x["kind"])).collect::<Vec<_>>().join("\n"),
                v.into(),
            );
        }
        AdminCommand::Token {
            command: TokenCommand::Issue { user, permissions, structures, label, product },
        } => {
            let perms = PermissionSet::parse_list(&permissions).map_err(|e| anyhow!("--permissions: {e}"))?;
            let token = match product {
                Some(p) => admin::issue_product_token(s, &user, &p, &structures).await?,
                None => admin::issue_token(s, &user, perms, &structures, &label).await?,
            };
            out(token.clone(), serde_json::json!({"access_token": token, "permissions": perms.to_list()}));
        }
        AdminCommand::Product {
            command: ProductCommand::Create { name, description, redirect_uris, permissions, public },
        } => {
            let perms = PermissionSet::parse_list(&permissions).map_err(|e| anyhow!("--permissions: {e}"))?;
            let p =
                admin::create_product(s, &name, &description, &redirect_uris, perms, public, None).await?;
            out(
                format!(
                    "created product {} (client id {}){}",
                    p.name,
                    p.client_id,
                    p.client_secret
                        .as_ref()
                        .map(|s| format!("\nclient secret (shown once): {s}"))
                        .unwrap_or_default()
                ),
                serde_json::to_value(&p)?,
            );
        }
        AdminCommand::Product { command: ProductCommand::Update { client_id, permissions } } => {
            let perms = PermissionSet::parse_list(&permissions).map_err(|e| anyhow!("--permissions: {e}"))?;
            let v = roost_store::Store::update_product_permissions(s, &client_id, perms.bits()).await?;
            out(
                format!("product {client_id} is now at client version {v}"),
                serde_json::json!({"client_id": client_id, "client_version": v}),
            );
        }
        AdminCommand::Product { command: ProductCommand::List } => {
            let products = roost_store::Store::products(s).await?;
            let v: Vec<_> = products
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "client_id": p.id, "name": p.name, "redirect_uris": p.redirect_uris,
                        "permissions": PermissionSet::from_bits(p.permissions).to_list(),
                        "client_version": p.client_version, "public": p.secret_hash.is_none(),
                    })
                })
                .collect();
            out(
                v.iter().map(|x| format!("{}  {}", x["client_id"], x["name"])).collect::<Vec<_>>().join("\n"),
                v.into(),
            );
        }
        AdminCommand::Token { command: TokenCommand::Revoke { token, user } } => {
            let was = match &user {
                Some(user) => admin::revoke_token_by_id(s, user, &token).await?,
                None => admin::revoke_token(s, &token).await?,
            };
            if !was {
                // The store closes when dropped, on this path as on every error.
                anyhow::bail!("no active token matched (unknown, or revoked already)");
            }
            out(
                format!(
                    "revoked; a running server refuses the token within {} ms",
                    roost_server::POLL_INTERVAL.as_millis()
                ),
                serde_json::json!({"revoked": true}),
            );
        }
        AdminCommand::Token { command: TokenCommand::List { user } } => {
            let u = admin::find_user(s, &user).await?;
            let tokens = roost_store::Store::tokens_of(s, &u.id).await?;
            let v: Vec<_> = tokens
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "id": admin::token_id(t), "label": t.label, "created_at": t.created_at, "revoked": t.revoked,
                        "permissions": PermissionSet::from_bits(t.permissions).to_list(), "structures": t.structures,
                    })
                })
                .collect();
            out(
                v.iter()
                    .map(|x| {
                        let id = x["id"].as_str().unwrap_or_default();
                        format!("{id}  {}  {}  revoked={}", x["created_at"], x["label"], x["revoked"])
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                v.into(),
            );
        }
    }
    store.close();
    Ok(())
}
