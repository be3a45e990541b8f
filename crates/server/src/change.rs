//! The one path every change of a home takes, whoever makes it (a product or a device through
//! the data API, home logic's timed writes, connectivity): under the structure's writer lock,
//! rules and home logic (`roost_model`), then a durable commit, then the hub (and so every
//! stream). A change is visible only after it is durable.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use roost_model::diff::{HomeDiff, diff_homes};
use roost_model::write::drop_stale_reports;
use roost_model::{Actor, ApiError, WriteContext, WritePlan, apply_write};
use roost_store::{Change, Commit, IdempotencyKey, StoreError};

use crate::App;
use crate::error::Error;
use crate::hub::Snapshot;

/// A check of the current revision before the change is judged (`If-Match`).
pub type Precondition<'a> = &'a (dyn Fn(&Arc<Snapshot>) -> Result<(), ApiError> + Sync);

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

/// Judges and commits `plan` as `actor`. Errors are in the API's shape.
pub async fn make(
    app: &App,
    plan: WritePlan,
    actor: &Actor,
    actor_name: &str,
    options: Options<'_>,
) -> Result<Outcome, Error> {
    let slot = app.hub.slot(&plan.structure_id).ok_or_else(|| ApiError::not_found(&plan.structure_id))?;
    let replay =
        |slot: &crate::hub::Slot| Outcome { snapshot: slot.current(), stale: Vec::new(), replayed: true };
    if let Some(key) = &options.idempotency
        && app.store.idempotency(key).await?.is_some()
    {
        return Ok(replay(&slot));
    }
    let _writer = slot.writer.lock().await;
    for _attempt in 0..3 {
        let current = slot.current();
        if let Some(check) = options.precondition {
            check(&current)?;
        }
        let now = Utc::now();
        let ctx = WriteContext { actor, now, config: &app.config.rules, measured_at: options.measured_at };
        // Only a device's report can hold stale fields; other writes skip the copy.
        let mut stale = Vec::new();
        let reported;
        let plan = match actor {
            Actor::Device { .. } => {
                let mut p = plan.clone();
                stale = drop_stale_reports(&mut p, &current.home, &ctx);
                reported = p;
                &reported
            }
            _ => &plan,
        };
        let next = apply_write(&current.home, plan, &ctx)?;
        let HomeDiff { paths, patch, inverse } = diff_homes(&current.home, &next);
        if paths.is_empty() {
            if let Some(key) = options.idempotency {
                app.store.remember_idempotency(key, current.revision).await?;
            }
            return Ok(Outcome { snapshot: current, stale, replayed: false });
        }
        let snap = Arc::new(Snapshot { revision: current.revision + 1, home: next });
        let for_store = snap.clone();
        let commit = Commit {
            structure_id: plan.structure_id.clone(),
            base_revision: current.revision,
            doc: Box::new(move || for_store.home.to_json_text()),
            change: Change {
                structure_id: plan.structure_id.clone(),
                revision: current.revision + 1,
                at: roost_model::units::format_time(now),
                actor: actor_name.to_string(),
                paths,
                patch,
                inverse,
            },
            idempotency: options.idempotency.clone(),
        };
        match app.store.commit(commit).await {
            Ok(revision) => {
                debug_assert_eq!(revision, snap.revision);
                slot.install(snap.clone());
                metrics::counter!("roost_writes_total").increment(1);
                return Ok(Outcome { snapshot: snap, stale, replayed: false });
            }
            Err(StoreError::Duplicate { .. }) => return Ok(replay(&slot)),
            Err(StoreError::Conflict { .. }) => {
                // Another node committed first: load its revision and judge the change again.
                app.hub.reload(app.store.as_ref(), &plan.structure_id).await?;
            }
            Err(e) => return Err(Error::store(&e)),
        }
    }
    Err(ApiError::service_unavailable().into())
}
