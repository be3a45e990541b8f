//! The clock: what the service does when time passes rather than when a request comes.
//! Every tick it writes connectivity transitions ([`crate::connectivity`]) and the changes
//! home logic says are due ([`roost_model::assist::due`]: Home/Away Assist, security
//! relaxing, fan timers running out), each through the normal change path as the service:
//! for the homes it holds, and for those the store says are due (`Store::due_structures`).

use std::sync::Arc;
use std::time::Duration;

use roost_model::{Actor, Entity, WritePlan};
use serde_json::{Map, Value};

use crate::App;
use crate::change::{self, Edit};
use crate::connectivity::{Documented, Transition};

/// Runs until the task is dropped.
pub async fn run(app: App) {
    let mut tick = tokio::time::interval(app.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        connectivity(&app).await;
        timed(&app).await;
    }
}

async fn connectivity(app: &App) {
    let refresh = app.config.offline_timeout.max(LAST_CONNECTION_REFRESH);
    let transitions = app.connectivity.transitions(app.config.offline_timeout, refresh, |sid, id| {
        let Some(slot) = app.hub.slot(sid) else { return Documented::Unknown };
        let snap = slot.current();
        let Some(device) = snap.home.device_kind(id).and_then(|kind| snap.home.device(kind, id)) else {
            return Documented::Gone;
        };
        Documented::Online(device.get("is_online").and_then(Value::as_bool).unwrap_or(false))
    });
    for (sid, id, t) in transitions {
        // A home the node did not hold is loaded for the write (homes load on first use);
        // its document may already agree (a transition asked for without it), and then there
        // is nothing to write.
        if app.hub.slot(&sid).is_none()
            && let Err(e) = app.hub.reload(app.store.as_ref(), &sid).await
        {
            tracing::warn!(structure = %sid, error = %e, "loading a home for a connectivity change failed");
            continue;
        }
        let documented = app.hub.slot(&sid).and_then(|s| {
            let snap = s.current();
            let kind = snap.home.device_kind(&id)?;
            snap.home.device(kind, &id)?.get("is_online").and_then(Value::as_bool)
        });
        let agrees = match t {
            Transition::Online => documented == Some(true),
            Transition::Offline => documented == Some(false),
            Transition::StillOnline => false,
        };
        if agrees {
            continue;
        }
        let Some(kind) = app.hub.slot(&sid).and_then(|s| s.current().home.device_kind(&id)) else {
            continue;
        };
        let now = Value::from(roost_model::units::format_time(chrono::Utc::now()));
        let mut fields = Map::new();
        match t {
            Transition::Online | Transition::Offline => {
                fields.insert("is_online".into(), Value::from(t == Transition::Online));
                fields.insert("last_is_online_change".into(), now.clone());
                if t == Transition::Online {
                    fields.insert("last_connection".into(), now);
                }
            }
            Transition::StillOnline => {
                fields.insert("last_connection".into(), now);
            }
        }
        tracing::info!(device = %id, transition = ?t, "connectivity");
        let plan = device_plan(&sid, kind, &id, fields);
        if let Err(e) = change::make(
            app.ground(),
            Edit::Plan(&plan),
            &Actor::Service,
            "service:connectivity",
            Default::default(),
        )
        .await
        {
            tracing::warn!(device = %id, error = %e.error, "connectivity write failed");
        }
    }
}

/// Homes due that one tick takes from the store (the rest wait for the next tick).
const DUE_PER_TICK: usize = 1_000;

async fn timed(app: &App) {
    let now = chrono::Utc::now();
    // The homes this node holds, and those the store says are due that it does not hold
    // (their last commit said when: `Commit::due_at`).
    let mut slots = app.hub.slots();
    match app.store.due_structures(now.timestamp(), DUE_PER_TICK).await {
        Ok(ids) => {
            for id in ids {
                // Held and current: among `slots` already. Held but stale (another node
                // committed it): reloaded into its slot, which `slots` has. Not held: loaded.
                let held = app.hub.slot(&id);
                if held.as_ref().is_some_and(|s| !s.is_stale()) {
                    continue;
                }
                match app.hub.reload(app.store.as_ref(), &id).await {
                    Ok(_) => {
                        if held.is_none() {
                            slots.extend(app.hub.slot(&id));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(structure = %id, error = %e, "loading a home that is due failed")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the homes that are due failed"),
    }
    for slot in slots {
        let current = slot.current();
        let writes = roost_model::assist::due(&current.home, now, &app.config.rules);
        if writes.is_empty() {
            continue;
        }
        let sid = current.home.id().to_string();
        let plan = WritePlan { structure_id: sid.clone(), writes };
        if let Err(e) = change::make(
            app.ground(),
            Edit::Plan(&plan),
            &Actor::Service,
            "service:assist",
            Default::default(),
        )
        .await
        {
            tracing::warn!(structure = %sid, error = %e.error, "timed write failed");
        }
    }
}

fn device_plan(sid: &str, kind: Entity, id: &str, fields: Map<String, Value>) -> WritePlan {
    WritePlan {
        structure_id: sid.to_string(),
        writes: vec![roost_model::write::EntityWrite {
            target: roost_model::write::Target::Device(kind, id.to_string()),
            fields: fields.into(),
        }],
    }
}

/// How often `last_connection` is rewritten while a device stays online (at least the offline
/// timeout): precise on every transition, coarse in between, so a node with many connected
/// devices does not spend its writes on it.
pub const LAST_CONNECTION_REFRESH: Duration = Duration::from_secs(15 * 60);

/// Default tick: fine enough for timers counted in minutes.
pub const TICK_DEFAULT: Duration = Duration::from_secs(2);

/// Records when each home is next due, for homes last written before due times were
/// recorded (their `due_at` is empty), so that the clock finds them without this node
/// holding them. Only while the store has this upkeep pending (set by the migration, for a
/// database that held such homes), which it then marks done: a node start does not read
/// every home. Runs in the background after start, a range of ids at a time, holding no
/// home: each is read, judged and dropped. A home written meanwhile records its own.
pub(crate) async fn record_due_times(app: App) {
    const RANGE: usize = 2_000;
    match app.store.upkeep_pending(roost_store::DUE_TIMES_BACKFILL).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, "asking whether due times need recording failed");
            return;
        }
    }
    let ids = match app.store.structure_ids().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "listing homes to record their due times failed");
            return;
        }
    };
    let mut recorded = 0;
    for run in ids.chunks(RANGE) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else { continue };
        let found = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (out, rules) = (found.clone(), app.config.rules.clone());
        let each = Box::new(move |s: roost_store::StoredStructure| {
            let due = roost_model::Home::from_json(&s.id, s.doc)
                .and_then(|home| roost_model::assist::next_due_secs(&home, &rules));
            if let Some(due) = due {
                out.lock().push((s.id, s.revision, due));
            }
        });
        let entries = match app.store.structures_between(first, last, each).await {
            Ok(()) => std::mem::take(&mut *found.lock()),
            Err(e) => {
                tracing::warn!(error = %e, "reading homes to record their due times failed");
                return;
            }
        };
        match app.store.record_due(entries).await {
            Ok(n) => recorded += n,
            Err(e) => {
                tracing::warn!(error = %e, "recording due times failed");
                return;
            }
        }
    }
    if recorded > 0 {
        tracing::info!(homes = recorded, "recorded when homes are next due");
    }
    if let Err(e) = app.store.upkeep_done(roost_store::DUE_TIMES_BACKFILL).await {
        tracing::warn!(error = %e, "marking the due times recorded failed; the next start does it again");
    }
}
