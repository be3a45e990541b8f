//! The conformance suite every [`Store`] backend must pass: one function per behaviour, each
//! given a fresh, empty store. A backend runs all of them, unchanged, with
//! [`conformance_tests!`](crate::conformance_tests) and a function that opens a fresh store.
// Test support: a failed expectation must stop the suite with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::{Change, CodeRecord, Commit, Product, Session, Store, StoreError, TokenRecord, User};

/// A commit setting `v`; its patch is exactly the change, as the trait requires.
fn commit(sid: &str, base: u64, v: u64) -> Commit {
    Commit {
        structure_id: sid.into(),
        base_revision: base,
        doc: Box::new(move || json!({"v": v}).to_string()),
        change: Change {
            structure_id: sid.into(),
            revision: base + 1,
            at: "2026-11-27T12:00:00.000Z".into(),
            actor: "test".into(),
            paths: vec!["/v".into()],
            patch: json!({"v": v}),
            inverse: json!({"v": "previous"}),
        },
        idempotency: None,
        due_at: None,
    }
}

fn user(id: &str) -> User {
    User {
        id: id.into(),
        login: format!("{id}@example.com"),
        password_hash: None,
        created_at: "2026-11-27T12:00:00.000Z".into(),
    }
}

/// A user `u1` and a structure `s1` at revision 1 (`{"v": 0}`).
async fn seed(store: &dyn Store) {
    store.create_user(user("u1")).await.expect("create user");
    assert_eq!(store.create_structure("u1", "s1", json!({"v": 0}), "t").await.unwrap(), 1);
}

fn token_of_u1() -> TokenRecord {
    TokenRecord {
        hash: [7; 32],
        user_id: "u1".into(),
        product_id: None,
        permissions: 3,
        structures: vec!["s1".into()],
        client_version: 1,
        created_at: "t".into(),
        label: "test".into(),
        revoked: false,
        device_id: None,
    }
}

/// Users: unique logins, lookups by id and login, passwords.
pub async fn users(store: &dyn Store) {
    // Users.
    store.create_user(user("u1")).await.expect("create user");
    assert!(
        matches!(store.create_user(user("u1")).await, Err(StoreError::AlreadyExists(_))),
        "duplicate login refused"
    );
    assert_eq!(store.user("u1").await.unwrap().unwrap().login, "u1@example.com");
    assert_eq!(store.user_by_login("u1@example.com").await.unwrap().unwrap().id, "u1");
    assert!(store.user("nobody").await.unwrap().is_none());
    store.set_password("u1", "$argon2id$x").await.unwrap();
    assert_eq!(store.user("u1").await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$x"));
    assert!(matches!(store.set_password("nobody", "x").await, Err(StoreError::NotFound(_))));
}

/// A commit records when the home next has a timed change due; the clock finds the homes due
/// by then.
pub async fn due_homes_are_found(store: &dyn Store) {
    seed(store).await;
    store.create_structure("u1", "s2", json!({"v": 0}), "t").await.unwrap();
    assert!(store.due_structures(i64::MAX, 10).await.unwrap().is_empty(), "nothing due after creation");
    store.commit(Commit { due_at: Some(1_000), ..commit("s1", 1, 1) }).await.unwrap();
    store.commit(Commit { due_at: Some(2_000), ..commit("s2", 1, 1) }).await.unwrap();
    assert!(store.due_structures(999, 10).await.unwrap().is_empty());
    assert_eq!(store.due_structures(1_000, 10).await.unwrap(), vec!["s1".to_string()]);
    assert_eq!(store.due_structures(5_000, 10).await.unwrap(), vec!["s1".to_string(), "s2".to_string()]);
    assert_eq!(store.due_structures(5_000, 1).await.unwrap(), vec!["s1".to_string()], "the earliest first");
    store.commit(commit("s1", 2, 2)).await.unwrap();
    assert_eq!(
        store.due_structures(5_000, 10).await.unwrap(),
        vec!["s2".to_string()],
        "a commit with nothing due"
    );
    // Recording due times for homes written before they were recorded: only where none is
    // recorded and the revision is still the one looked at.
    let stale_or_recorded = vec![("s1".to_string(), 2, 3_000), ("s2".to_string(), 2, 100)];
    assert_eq!(store.record_due(stale_or_recorded).await.unwrap(), 0, "s1 moved on; s2 has its own");
    assert_eq!(store.record_due(vec![("s1".into(), 3, 3_000)]).await.unwrap(), 1);
    assert_eq!(store.due_structures(5_000, 10).await.unwrap(), vec!["s2".to_string(), "s1".to_string()]);
}

/// Structures start at revision 1; a commit is a compare-and-set on the revision.
pub async fn commits_are_compare_and_set(store: &dyn Store) {
    store.create_user(user("u1")).await.expect("create user");
    // Structures and revisions.
    assert_eq!(store.create_structure("u1", "s1", json!({"v": 0}), "t").await.unwrap(), 1);
    assert!(matches!(
        store.create_structure("u1", "s1", json!({}), "t").await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.structures_of("u1").await.unwrap(), vec!["s1".to_string()]);
    let s = store.structure("s1").await.unwrap().unwrap();
    assert_eq!((s.revision, s.doc.clone(), s.owner.as_str()), (1, json!({"v": 0}), "u1"));

    // Commit is a compare-and-set on the revision.
    assert_eq!(store.commit(commit("s1", 1, 1)).await.unwrap(), 2);
    match store.commit(commit("s1", 1, 99)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, 2),
        other => panic!("stale commit must conflict, got {other:?}"),
    }
    assert!(matches!(store.commit(commit("nope", 1, 1)).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.structure("s1").await.unwrap().unwrap().doc, json!({"v": 1}));
    assert_eq!(store.revision("s1").await.unwrap(), Some(2), "the revision alone");
    assert_eq!(store.revision("nope").await.unwrap(), None);
}

/// Concurrent commits to different structures all land (group commit), each once.
pub async fn concurrent_commits_all_land(store: &dyn Store) {
    seed(store).await;
    store.commit(commit("s1", 1, 1)).await.unwrap();
    store.create_structure("u1", "s2", json!({"v": 0}), "t").await.unwrap();
    let mut handles = Vec::new();
    for sid in ["s1", "s2"] {
        let base = store.structure(sid).await.unwrap().unwrap().revision;
        handles.push((sid, base, store.commit(commit(sid, base, base + 1))));
    }
    for (sid, base, fut) in handles {
        assert_eq!(fut.await.unwrap(), base + 1, "{sid}");
    }
}

/// The change log is ordered, complete and bounded by `changelog_keep` (the backend's window),
/// and the document is current whatever is stored between checkpoints.
pub async fn the_change_log_is_ordered_complete_and_bounded(store: &dyn Store, changelog_keep: u64) {
    seed(store).await;
    store.commit(commit("s1", 1, 1)).await.unwrap();
    store.commit(commit("s1", 2, 2)).await.unwrap();
    // The change log: ordered, complete, bounded.
    let changes = store.changes_after("s1", 0, 100).await.unwrap();
    let revs: Vec<u64> = changes.iter().map(|c| c.revision).collect();
    assert_eq!(revs, vec![1, 2, 3]);
    assert_eq!(changes[1].paths, vec!["/v".to_string()]);
    let mut base = 3;
    // Enough commits to trim the log (where the backend's checkpoints allow it).
    for i in 0..changelog_keep + 40 {
        base = store.commit(commit("s1", base, 100 + i)).await.unwrap();
    }
    let oldest = store.oldest_change("s1").await.unwrap().unwrap();
    assert!(oldest <= base - changelog_keep + 1, "log keeps at least the window");
    let kept = store.changes_after("s1", 0, 1_000_000).await.unwrap().len() as u64;
    assert!(kept <= changelog_keep + 64, "log is bounded: {kept} entries");
    assert_eq!(store.changes_after("s1", base - 2, 10).await.unwrap().len(), 2);
    // Any start and limit: the entries after it that are still there, in order, no gaps.
    for after in oldest.saturating_sub(3)..=base {
        for limit in [1, 5, 17, 1_000] {
            let got: Vec<u64> =
                store.changes_after("s1", after, limit).await.unwrap().iter().map(|c| c.revision).collect();
            let first = after.max(oldest - 1) + 1;
            let want: Vec<u64> = (first..=base).take(limit).collect();
            assert_eq!(got, want, "changes after {after}, at most {limit}");
        }
    }
    // The document is current whatever the backend stores between checkpoints.
    assert_eq!(store.structure("s1").await.unwrap().unwrap().doc, json!({"v": 100 + changelog_keep + 39}));
    let all = store.all_structures().await.unwrap();
    assert_eq!(all.iter().find(|s| s.id == "s1").unwrap().doc, json!({"v": 100 + changelog_keep + 39}));
}

/// Ids in order, and ranges of them (cold start loads in ranges).
pub async fn structure_ids_come_in_order_and_ranges(store: &dyn Store) {
    seed(store).await;
    store.create_structure("u1", "s0", json!({"v": 0}), "t").await.unwrap();
    store.create_structure("u1", "s2", json!({"v": 0}), "t").await.unwrap();
    // Ids in order, and ranges of them (cold start loads in ranges).
    let ids = store.structure_ids().await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids.contains(&"s1".to_string()), "{ids:?}");
    let between = |first: &str, last: &str| {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        let read = store.structures_between(first, last, Box::new(move |s| sink.lock().unwrap().push(s)));
        async move {
            read.await.unwrap();
            std::mem::take(&mut *got.lock().unwrap())
        }
    };
    let all_by_range = between(&ids[0], &ids[ids.len() - 1]).await;
    assert_eq!(all_by_range, store.all_structures().await.unwrap());
    let one = between("s1", "s1").await;
    assert_eq!((one.len(), one[0].id.as_str()), (1, "s1"));
    assert!(between("zz", "zzz").await.is_empty());
}

/// Other writers' commits are visible through the sequence feed.
pub async fn other_writers_commits_show_in_the_feed(store: &dyn Store) {
    seed(store).await;
    store.create_structure("u1", "s2", json!({"v": 0}), "t").await.unwrap();
    store.commit(commit("s2", 1, 1)).await.unwrap();
    // Other writers' commits are visible through the sequence feed.
    let (_, seq) = store.changed_since(0).await.unwrap();
    store.commit(commit("s2", 2, 7)).await.unwrap();
    let (changed, seq2) = store.changed_since(seq).await.unwrap();
    assert_eq!(changed, vec![("s2".to_string(), 3)]);
    assert!(seq2 > seq);
    // The head, taken without reading the feed, is where the next commit shows.
    let head = store.feed_head().await.unwrap();
    store.commit(commit("s2", 3, 8)).await.unwrap();
    let (changed, _) = store.changed_since(head).await.unwrap();
    assert_eq!(changed, vec![("s2".to_string(), 4)]);
}

/// Tokens: stored by hash, revocable once, revocations visible through their feed.
pub async fn tokens_are_revoked_once_and_fed(store: &dyn Store) {
    seed(store).await;
    let token = token_of_u1();
    store.insert_token(token.clone()).await.unwrap();
    assert_eq!(store.token(&[7; 32]).await.unwrap(), Some(token.clone()));
    assert!(store.token(&[8; 32]).await.unwrap().is_none());
    let (_, rseq) = store.revoked_since(0).await.unwrap();
    assert!(store.revoke_token(&[7; 32]).await.unwrap());
    assert!(!store.revoke_token(&[7; 32]).await.unwrap(), "second revoke is a no-op");
    assert!(store.token(&[7; 32]).await.unwrap().is_none(), "revoked token no longer resolves");
    let (revoked, _) = store.revoked_since(rseq).await.unwrap();
    assert_eq!(revoked, vec![[7; 32]]);
    assert!(store.tokens_of("u1").await.unwrap()[0].revoked);
}

/// Device credentials: revoked together, through the same feed.
pub async fn device_credentials_are_revoked_together(store: &dyn Store) {
    seed(store).await;
    let token = token_of_u1();
    let device_token = |h: u8| TokenRecord {
        hash: [h; 32],
        product_id: None,
        permissions: 0,
        label: "device".into(),
        device_id: Some("d1".into()),
        ..token.clone()
    };
    store.insert_token(device_token(20)).await.unwrap();
    store.insert_token(device_token(21)).await.unwrap();
    assert_eq!(store.token(&[20; 32]).await.unwrap().unwrap().device_id.as_deref(), Some("d1"));
    assert_eq!(store.device_tokens().await.unwrap().len(), 2);
    let (_, rseq) = store.revoked_since(0).await.unwrap();
    assert_eq!(store.revoke_device_tokens("d1").await.unwrap(), 2);
    assert_eq!(store.revoke_device_tokens("d1").await.unwrap(), 0);
    let (mut revoked, _) = store.revoked_since(rseq).await.unwrap();
    revoked.sort();
    assert_eq!(revoked, vec![[20; 32], [21; 32]]);
    assert!(store.device_tokens().await.unwrap().is_empty());
}

/// Idempotency keys: recorded with the commit; a second commit with the key is refused and
/// changes nothing; a key of a conflicting commit is not kept.
pub async fn idempotency_keys_hold(store: &dyn Store) {
    seed(store).await;
    store.create_structure("u1", "s2", json!({"v": 0}), "t").await.unwrap();
    store.commit(commit("s2", 1, 1)).await.unwrap();
    // Idempotency keys: recorded with the commit; a second commit with the key is refused
    // and changes nothing; a key of a conflicting commit is not kept.
    let key = crate::IdempotencyKey { scope: "device:d1".into(), key: "k1".into() };
    let rev = store.structure("s2").await.unwrap().unwrap().revision;
    let keyed = |base, v| Commit { idempotency: Some(key.clone()), ..commit("s2", base, v) };
    assert!(matches!(store.commit(keyed(rev - 1, 1)).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.idempotency(&key).await.unwrap(), None, "a refused commit keeps no key");
    assert_eq!(store.commit(keyed(rev, 41)).await.unwrap(), rev + 1);
    assert_eq!(store.idempotency(&key).await.unwrap(), Some(rev + 1));
    assert!(matches!(
        store.commit(keyed(rev + 1, 42)).await,
        Err(StoreError::Duplicate { revision }) if revision == rev + 1
    ));
    assert_eq!(store.structure("s2").await.unwrap().unwrap().revision, rev + 1, "the retry changed nothing");
    let other = crate::IdempotencyKey { scope: "device:d2".into(), key: "k1".into() };
    assert_eq!(store.idempotency(&other).await.unwrap(), None, "keys are scoped to their sender");
    store.remember_idempotency(other.clone(), 9).await.unwrap();
    assert_eq!(store.idempotency(&other).await.unwrap(), Some(9));
}

/// Products, single-use codes (a replayed code revokes its first token) and sessions.
pub async fn products_codes_and_sessions(store: &dyn Store) {
    seed(store).await;
    // Products, single-use codes and sessions.
    let product = Product {
        id: "p1".into(),
        owner: Some("u1".into()),
        name: "Acme".into(),
        description: "d".into(),
        secret_hash: Some("$argon2id$x".into()),
        redirect_uris: vec!["https://acme.example/cb".into()],
        permissions: 5,
        client_version: 1,
        created_at: "t".into(),
    };
    store.create_product(product.clone()).await.unwrap();
    assert_eq!(store.product("p1").await.unwrap(), Some(product.clone()));
    assert_eq!(store.products().await.unwrap(), vec![product]);
    assert_eq!(store.update_product_permissions("p1", 7).await.unwrap(), 2);
    let updated = store.product("p1").await.unwrap().unwrap();
    assert_eq!((updated.permissions, updated.client_version), (7, 2));
    assert_eq!(store.update_product_permissions("p1", 5).await.unwrap(), 3);
    assert!(matches!(store.update_product_permissions("nope", 1).await, Err(StoreError::NotFound(_))));
    let code = CodeRecord {
        hash: [9; 32],
        product_id: "p1".into(),
        user_id: "u1".into(),
        permissions: 5,
        structures: vec!["s1".into()],
        client_version: 1,
        redirect_uri: "https://acme.example/cb".into(),
        code_challenge: None,
        expires_at: 4_000_000_000,
        token_hash: None,
    };
    store.insert_code(code.clone()).await.unwrap();
    let minted = |h: u8| TokenRecord {
        hash: [h; 32],
        user_id: "u1".into(),
        product_id: Some("p1".into()),
        permissions: 5,
        structures: vec!["s1".into()],
        client_version: 1,
        created_at: "t".into(),
        label: "oauth".into(),
        revoked: false,
        device_id: None,
    };
    assert_eq!(store.exchange_code(&[9; 32], minted(10)).await.unwrap(), Ok(code.clone()));
    assert!(store.token(&[10; 32]).await.unwrap().is_some(), "the exchange stored the token");
    match store.exchange_code(&[9; 32], minted(11)).await.unwrap() {
        Err(used) => assert_eq!(used.token_hash, Some([10; 32]), "a reused code names its token"),
        Ok(_) => panic!("a code must be single use"),
    }
    assert!(store.token(&[11; 32]).await.unwrap().is_none(), "no token from a reused code");
    assert!(store.token(&[10; 32]).await.unwrap().is_none(), "a reused code revoked its first token");
    assert!(matches!(store.exchange_code(&[8; 32], minted(12)).await, Err(StoreError::NotFound(_))));
    let session = Session { hash: [3; 32], user_id: "u1".into(), csrf: "c".into(), expires_at: 5 };
    store.insert_session(session.clone()).await.unwrap();
    assert_eq!(store.session(&[3; 32]).await.unwrap(), Some(session));
    store.delete_session(&[3; 32]).await.unwrap();
    assert!(store.session(&[3; 32]).await.unwrap().is_none());
}

/// Commits sent at once (which a backend may put in one transaction) are answered each on its
/// own: a stale one conflicts, one for a missing structure is not found, and neither keeps
/// the others from landing.
pub async fn commits_sent_together_are_answered_each(store: &dyn Store) {
    seed(store).await;
    let ids: Vec<String> = (0..24).map(|i| format!("b{i:02}")).collect();
    for id in &ids {
        store.create_structure("u1", id, json!({"v": 0}), "t").await.unwrap();
    }
    let mut sent = Vec::new();
    for id in &ids {
        sent.push(store.commit(commit(id, 1, 1)));
        sent.push(store.commit(commit(id, 7, 9)));
    }
    sent.push(store.commit(commit("nowhere", 1, 1)));
    let answers = futures_util::future::join_all(sent).await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(answers[2 * i].as_ref().ok(), Some(&2), "{id}: {:?}", answers[2 * i]);
        match &answers[2 * i + 1] {
            Err(StoreError::Conflict { current, .. }) => assert!(*current == 1 || *current == 2, "{id}"),
            other => panic!("{id}: a stale commit must conflict, got {other:?}"),
        }
        assert_eq!(store.structure(id).await.unwrap().unwrap().doc, json!({"v": 1}), "{id}");
    }
    assert!(matches!(answers.last(), Some(Err(StoreError::NotFound(_)))), "{:?}", answers.last());
}

/// A database created today has no upkeep to do; marking a task done is harmless.
pub async fn a_new_database_has_no_upkeep(store: &dyn Store) {
    seed(store).await;
    assert!(!store.upkeep_pending(crate::DUE_TIMES_BACKFILL).await.unwrap());
    store.upkeep_done(crate::DUE_TIMES_BACKFILL).await.unwrap();
    assert!(!store.upkeep_pending(crate::DUE_TIMES_BACKFILL).await.unwrap());
}

/// A node's own counts never come back to it as another node's (on the embedded store
/// there is no other node, so nothing comes back at all); reporting twice is harmless.
pub async fn own_counts_are_not_anothers(store: &dyn Store) {
    let count = |n| crate::SharedCount { key: "calls:t1".into(), window_start: 60_000, count: n };
    let exchange = |n| crate::CountExchange {
        now_ms: 61_000,
        mine: vec![(count(n), 120_000)],
        ask: vec![("calls:t1".into(), 60_000)],
        alive_ms: 5_000,
    };
    assert_eq!(store.share_counts(exchange(3)).await.unwrap(), vec![]);
    assert_eq!(store.share_counts(exchange(4)).await.unwrap(), vec![]);
}

/// One test per behaviour of the suite, for a backend: `$open` is an async function returning a
/// fresh store, its change log window, and whatever must live as long as the store (a
/// temporary directory).
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        #[tokio::test]
        async fn users() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::users(store.as_ref()).await;
        }
        #[tokio::test]
        async fn due_homes_are_found() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::due_homes_are_found(store.as_ref()).await;
        }
        #[tokio::test]
        async fn commits_are_compare_and_set() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::commits_are_compare_and_set(store.as_ref()).await;
        }
        #[tokio::test]
        async fn concurrent_commits_all_land() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::concurrent_commits_all_land(store.as_ref()).await;
        }
        #[tokio::test]
        async fn the_change_log_is_ordered_complete_and_bounded() {
            let (store, keep, _guard) = $open().await;
            $crate::conformance::the_change_log_is_ordered_complete_and_bounded(store.as_ref(), keep).await;
        }
        #[tokio::test]
        async fn structure_ids_come_in_order_and_ranges() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::structure_ids_come_in_order_and_ranges(store.as_ref()).await;
        }
        #[tokio::test]
        async fn other_writers_commits_show_in_the_feed() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::other_writers_commits_show_in_the_feed(store.as_ref()).await;
        }
        #[tokio::test]
        async fn tokens_are_revoked_once_and_fed() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::tokens_are_revoked_once_and_fed(store.as_ref()).await;
        }
        #[tokio::test]
        async fn device_credentials_are_revoked_together() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::device_credentials_are_revoked_together(store.as_ref()).await;
        }
        #[tokio::test]
        async fn idempotency_keys_hold() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::idempotency_keys_hold(store.as_ref()).await;
        }
        #[tokio::test]
        async fn products_codes_and_sessions() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::products_codes_and_sessions(store.as_ref()).await;
        }
        #[tokio::test]
        async fn commits_sent_together_are_answered_each() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::commits_sent_together_are_answered_each(store.as_ref()).await;
        }
        #[tokio::test]
        async fn a_new_database_has_no_upkeep() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::a_new_database_has_no_upkeep(store.as_ref()).await;
        }
        #[tokio::test]
        async fn own_counts_are_not_anothers() {
            let (store, _, _guard) = $open().await;
            $crate::conformance::own_counts_are_not_anothers(store.as_ref()).await;
        }
    };
}
