//! The one path every change of a home takes, whoever makes it: a product or a device through
//! the data API, the clock's timed writes and connectivity, presence, and the operator's
//! `roost admin` (another process, with a hub of its own). Under the structure's writer lock:
//! the edit judged by the rules and settled by home logic (`roost_model`), the diff, a durable
//! compare-and-set commit, then the hub (and so every stream). On a conflict (another process
//! or node committed first) the newer revision is loaded and the edit judged again. A change
//! is visible only after it is durable.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use roost_model::diff::{HomeDiff, diff_homes};
use roost_model::write::drop_stale_reports;
use roost_model::{Actor, ApiError, Home, RuleConfig, WriteContext, WritePlan, apply_write};
use roost_store::{Change, Commit, IdempotencyKey, Store, StoreError};

use crate::error::Error;
use crate::hub::{Hub, Slot, Snapshot};

/// A check of the current revision before the change is judged (`If-Match`).
pub type Precondition<'a> = &'a (dyn Fn(&Arc<Snapshot>) -> Result<(), ApiError> + Sync);

/// An operator's direct edit of a home (add a device, set Rush Hour Rewards): not judged by
/// the rules a product's write is, but settled by home logic like every change.
pub type DirectEdit<'a> = &'a (dyn Fn(&mut Home) -> Result<(), ApiError> + Sync);

/// What is changed.
pub enum Edit<'a> {
    /// A request's element writes (of the plan's structure), judged by the rules as its actor.
    Plan(&'a WritePlan),
    Direct {
        structure_id: &'a str,
        edit: DirectEdit<'a>,
    },
}

impl Edit<'_> {
    /// The structure it changes.
    pub fn structure_id(&self) -> &str {
        match self {
            Edit::Plan(plan) => &plan.structure_id,
            Edit::Direct { structure_id, .. } => structure_id,
        }
    }
}

/// Where changes are made: the store, the hub caching it, and the operator's rule settings.
/// The server has one (`App::ground`); `roost admin` makes its own with the same settings.
#[derive(Clone, Copy)]
pub struct Ground<'a> {
    pub store: &'a dyn Store,
    pub hub: &'a Hub,
    pub rules: &'a RuleConfig,
}

/// How a change is made, besides what and by whom.
#[derive(Default)]
pub struct Options<'a> {
    /// When a device measured what it reports.
    pub measured_at: Option<DateTime<Utc>>,
    /// The sender's key for this request: a retry answers as the first try did.
    pub idempotency: Option<IdempotencyKey>,
    pub precondition: Option<Precondition<'a>>,
}

/// What came of a change.
pub struct Outcome {
    /// The structure after it (current, if nothing changed).
    pub snapshot: Arc<Snapshot>,
    /// Reported fields left out because the device had reported them later already.
    pub stale: Vec<String>,
    /// The request's idempotency key was used before: nothing was applied this time.
    pub replayed: bool,
}

/// Attempts at a change before giving up with 503 (each lost one compare-and-set).
const ATTEMPTS: usize = 5;

/// Judges and commits `edit` as `actor` (recorded in the change log as `actor_name`). Errors
/// are in the API's shape.
pub async fn make(
    ground: Ground<'_>,
    edit: Edit<'_>,
    actor: &Actor,
    actor_name: &str,
    options: Options<'_>,
) -> Result<Outcome, Error> {
    let structure_id = edit.structure_id();
    let slot = slot(ground, structure_id).await?;
    let replay = |slot: &Slot| Outcome { snapshot: slot.current(), stale: Vec::new(), replayed: true };
    if let Some(key) = &options.idempotency
        && ground.store.idempotency(key).await?.is_some()
    {
        return Ok(replay(&slot));
    }
    let _writer = slot.writer.lock().await;
    for _attempt in 0..ATTEMPTS {
        let current = slot.current();
        let now = Utc::now();
        let ctx = WriteContext { actor, now, config: ground.rules, measured_at: options.measured_at };
        let (next, stale) = match judge(&edit, &current, &options, &ctx) {
            Ok(judged) => judged,
            Err(refusal) => {
                if newer_elsewhere(ground, structure_id, current.revision).await? {
                    continue;
                }
                return Err(refusal.into());
            }
        };
        let HomeDiff { paths, patch, inverse } = diff_homes(&current.home, &next);
        if paths.is_empty() {
            if newer_elsewhere(ground, structure_id, current.revision).await? {
                continue;
            }
            if let Some(key) = options.idempotency {
                ground.store.remember_idempotency(key, current.revision).await?;
            }
            return Ok(Outcome { snapshot: current, stale, replayed: false });
        }
        let snap = Arc::new(Snapshot { revision: current.revision + 1, home: next });
        let for_store = snap.clone();
        let commit = Commit {
            structure_id: structure_id.to_string(),
            base_revision: current.revision,
            doc: Box::new(move || for_store.home.to_json_text()),
            change: Change {
                structure_id: structure_id.to_string(),
                revision: current.revision + 1,
                at: roost_model::units::format_time(now),
                actor: actor_name.to_string(),
                paths,
                patch,
                inverse,
            },
            idempotency: options.idempotency.clone(),
            due_at: roost_model::assist::next_due_secs(&snap.home, ground.rules),
        };
        match ground.store.commit(commit).await {
            Ok(revision) => {
                debug_assert_eq!(revision, snap.revision);
                ground.hub.index_devices(&snap.home);
                slot.install(snap.clone());
                metrics::counter!("roost_writes_total").increment(1);
                return Ok(Outcome { snapshot: snap, stale, replayed: false });
            }
            Err(StoreError::Duplicate { .. }) => return Ok(replay(&slot)),
            Err(StoreError::Conflict { .. }) => {
                // Another process or node committed first: load its revision and judge the
                // change again.
                ground.hub.reload(ground.store, structure_id).await?;
            }
            Err(e) => return Err(Error::store(&e)),
        }
    }
    Err(ApiError::service_unavailable().into())
}

/// Whether the store holds a newer revision than `revision`, the one a change was just
/// judged on; if so it is loaded. A node's copy can lag behind commits of other nodes and of
/// `roost admin` (they reach the hub within a poll), so a refusal or a "nothing to change"
/// is answered only once the newest revision says so.
async fn newer_elsewhere(ground: Ground<'_>, structure_id: &str, revision: u64) -> Result<bool, Error> {
    match ground.store.revision(structure_id).await? {
        Some(latest) if latest > revision => {
            ground.hub.reload(ground.store, structure_id).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The home after `edit`, judged (a plan) or settled (a direct edit) on `current`, and the
/// reported fields left out as stale.
fn judge(
    edit: &Edit<'_>,
    current: &Arc<Snapshot>,
    options: &Options<'_>,
    ctx: &WriteContext<'_>,
) -> Result<(Home, Vec<String>), ApiError> {
    if let Some(check) = options.precondition {
        check(current)?;
    }
    match edit {
        // Only a device's report can hold stale fields; other writes skip the copy.
        Edit::Plan(plan) if matches!(ctx.actor, Actor::Device { .. }) => {
            let mut reported = (*plan).clone();
            let stale = drop_stale_reports(&mut reported, &current.home, ctx);
            Ok((apply_write(&current.home, &reported, ctx)?, stale))
        }
        Edit::Plan(plan) => Ok((apply_write(&current.home, plan, ctx)?, Vec::new())),
        Edit::Direct { edit, .. } => {
            let mut next = current.home.clone();
            edit(&mut next)?;
            roost_model::logic::settle_all(&current.home, &mut next, ctx);
            Ok((next, Vec::new()))
        }
    }
}

/// The structure's slot, loaded from the store when the hub does not hold it yet.
async fn slot(ground: Ground<'_>, structure_id: &str) -> Result<Arc<Slot>, Error> {
    if let Some(slot) = ground.hub.slot(structure_id)
        && !slot.is_stale()
    {
        slot.touch();
        return Ok(slot);
    }
    ground.hub.reload(ground.store, structure_id).await?;
    ground
        .hub
        .slot(structure_id)
        .ok_or_else(|| ApiError::not_found(&format!("/structures/{structure_id}")).into())
}
