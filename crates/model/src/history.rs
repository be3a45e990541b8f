//! Rebuilding earlier revisions from the change log: what a stream resuming from an event id
//! needs (the states the client missed, in order).
//!
//! Every log entry carries the merge patch forward (previous revision → this one) and back
//! (this one → previous). A [`Replay`] starts from each structure's current document, applies
//! the backward patches newest first to reach the revision the client last saw, then steps
//! forward one entry at a time; at each step [`Replay::snapshots`] is the set of structures as
//! they were then.

use std::sync::Arc;

use serde_json::Value;

use crate::diff::json_merge;
use crate::home::Home;
use crate::view::Snapshot;

/// One change log entry, as far as history needs it.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub revision: u64,
    pub patch: &'a Value,
    pub inverse: &'a Value,
}

/// One structure's stretch of history: its state now, the revision to go back to, and every
/// log entry after that revision, oldest first.
pub struct Stretch<'a> {
    pub now: &'a Snapshot,
    pub from: u64,
    pub steps: Vec<Step<'a>>,
}

/// Why a replay cannot be done exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryError {
    /// The revision to go back to is newer than the structure's current one.
    Ahead,
    /// The log entries do not run exactly from `from + 1` to the current revision.
    Incomplete,
    /// A rebuilt document is not a home.
    Damaged,
}

impl HistoryError {
    /// A short reason, for the client.
    pub fn reason(self) -> &'static str {
        match self {
            HistoryError::Ahead => "the event id is ahead of this server",
            HistoryError::Incomplete => "the change log no longer reaches back to the event id",
            HistoryError::Damaged => "the change log could not be replayed",
        }
    }
}

/// A walk forward through the history of one or more structures.
pub struct Replay {
    /// Each structure's id, revision and document at the current point of the walk.
    docs: Vec<(String, u64, Value)>,
    /// The entries still to apply: `(structure index, revision, patch)`, in order.
    forward: std::vec::IntoIter<(usize, u64, Value)>,
}

impl Replay {
    /// Goes back to each stretch's `from` revision.
    pub fn rewind(stretches: &[Stretch<'_>]) -> Result<Replay, HistoryError> {
        let mut docs = Vec::with_capacity(stretches.len());
        let mut forward = Vec::new();
        for (i, s) in stretches.iter().enumerate() {
            let current = s.now.revision;
            if s.from > current {
                return Err(HistoryError::Ahead);
            }
            let whole = s.steps.len() as u64 == current - s.from
                && s.steps.iter().zip(s.from + 1..).all(|(step, expected)| step.revision == expected);
            if !whole {
                return Err(HistoryError::Incomplete);
            }
            let mut doc = s.now.home.to_json();
            for step in s.steps.iter().rev() {
                json_merge(&mut doc, step.inverse);
            }
            forward.extend(s.steps.iter().map(|step| (i, step.revision, step.patch.clone())));
            docs.push((s.now.home.id().to_string(), s.from, doc));
        }
        Ok(Replay { docs, forward: forward.into_iter() })
    }

    /// The structures as they are at this point of the walk.
    pub fn snapshots(&self) -> Result<Vec<Arc<Snapshot>>, HistoryError> {
        self.docs
            .iter()
            .map(|(id, revision, doc)| {
                let home = Home::from_json(id, doc.clone()).ok_or(HistoryError::Damaged)?;
                Ok(Arc::new(Snapshot { revision: *revision, home }))
            })
            .collect()
    }

    /// Applies the next log entry; false when none is left.
    pub fn step(&mut self) -> bool {
        let Some((i, revision, patch)) = self.forward.next() else { return false };
        let doc = &mut self.docs[i];
        json_merge(&mut doc.2, &patch);
        doc.1 = revision;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::diff_homes;
    use serde_json::{Map, json};

    fn home(name: &str) -> Home {
        let mut fields = Map::new();
        fields.insert("name".into(), json!(name));
        Home::new_structure("s1", fields)
    }

    #[test]
    fn a_replay_goes_back_then_forward_through_every_revision() {
        let names = ["a", "b", "c", "d"];
        let homes: Vec<Home> = names.iter().map(|n| home(n)).collect();
        let diffs: Vec<_> = homes.windows(2).map(|w| diff_homes(&w[0], &w[1])).collect();
        let now = Snapshot { revision: 4, home: homes[3].clone() };
        let steps: Vec<Step<'_>> = diffs
            .iter()
            .zip(2..)
            .map(|(d, revision)| Step { revision, patch: &d.patch, inverse: &d.inverse })
            .collect();
        // From revision 2 ("b"): c and d follow.
        let mut replay =
            Replay::rewind(&[Stretch { now: &now, from: 2, steps: steps[1..].to_vec() }]).unwrap();
        let name = |r: &Replay| {
            let s = r.snapshots().unwrap();
            (s[0].revision, s[0].home.structure().get("name").cloned())
        };
        assert_eq!(name(&replay), (2, Some(json!("b"))));
        assert!(replay.step());
        assert_eq!(name(&replay), (3, Some(json!("c"))));
        assert!(replay.step());
        assert_eq!(name(&replay), (4, Some(json!("d"))));
        assert!(!replay.step());
    }

    #[test]
    fn a_replay_refuses_a_log_with_gaps_or_an_id_from_the_future() {
        let (a, b) = (home("a"), home("b"));
        let d = diff_homes(&a, &b);
        let now = Snapshot { revision: 3, home: b };
        let step = Step { revision: 3, patch: &d.patch, inverse: &d.inverse };
        let gap = Replay::rewind(&[Stretch { now: &now, from: 1, steps: vec![step] }]);
        assert_eq!(gap.err(), Some(HistoryError::Incomplete));
        let ahead = Replay::rewind(&[Stretch { now: &now, from: 4, steps: vec![] }]);
        assert_eq!(ahead.err(), Some(HistoryError::Ahead));
        let exact = Replay::rewind(&[Stretch { now: &now, from: 2, steps: vec![step] }]).unwrap();
        assert_eq!(exact.snapshots().unwrap()[0].home.structure().get("name"), Some(&json!("a")));
    }
}
