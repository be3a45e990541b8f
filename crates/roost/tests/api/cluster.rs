//! Several `roost serve` nodes on one PostgreSQL database: what one node commits, the
//! others' streams show; rules hold when nodes write at once; revocation reaches every node.

use serde_json::json;

use crate::helpers::{Options, TestApp, fresh_database};
use crate::streams::Events;

/// `n` nodes on a fresh database, started one after another (the first seeds the demo home;
/// the others find it and write their own demo.json).
async fn cluster(n: usize) -> Vec<TestApp> {
    let store = fresh_database().await;
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(TestApp::spawn_with(Options { store: Some(store.clone()), ..Options::default() }).await);
    }
    nodes
}

#[tokio::test]
async fn a_write_on_one_node_reaches_streams_on_the_others() {
    let nodes = cluster(3).await;
    let t = nodes[0].thermostat_path();
    let mut on_b = Events::open(&nodes[1], &t).await;
    let mut on_c = Events::open(&nodes[2], &t).await;
    assert_eq!(on_b.next_put().await["target_temperature_f"], json!(68));
    assert_eq!(on_c.next_put().await["target_temperature_f"], json!(68));
    let (status, _) = nodes[0].put_json(&t, json!({"target_temperature_f": 72})).await;
    assert_eq!(status, 200);
    assert_eq!(on_b.next_put().await["target_temperature_f"], json!(72));
    assert_eq!(on_c.next_put().await["target_temperature_f"], json!(72));
    // And a read on any node answers the committed value.
    assert_eq!(nodes[2].get_json(&t).await.1["target_temperature_f"], json!(72));
}

/// Two nodes move the two ends of the heat-cool range at once, each move fine alone and the
/// pair too close together: whatever the interleaving, the stored range keeps the minimum
/// spread, because a node that loses the compare-and-set checks the rules again on the
/// newer state.
#[tokio::test]
async fn a_rule_holds_when_two_nodes_write_at_once() {
    let nodes = cluster(2).await;
    // A thermostat that can heat and cool (the demo's heat pump is on emergency heat).
    let sid = nodes[0].id("structure_id");
    let added =
        nodes[0].admin(&["device", "add", "--structure", &sid, "--kind", "thermostat", "--where", "Office"]);
    let t = format!("/devices/thermostats/{}", added["device_id"].as_str().unwrap());
    for node in &nodes {
        for _ in 0..50 {
            if node.get(&t).send().await.unwrap().status() == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let mut refused = 0;
    for _ in 0..12 {
        let (status, e) = nodes[0]
            .put_json(
                &t,
                json!({"hvac_mode": "heat-cool", "target_temperature_low_f": 66, "target_temperature_high_f": 74}),
            )
            .await;
        assert_eq!(status, 200, "{e}");
        let (a, b) = tokio::join!(
            nodes[0].put_json(&t, json!({"target_temperature_low_f": 71})),
            nodes[1].put_json(&t, json!({"target_temperature_high_f": 72})),
        );
        for (status, body) in [&a, &b] {
            assert!(*status == 200 || *status == 400, "{status} {body}");
        }
        refused += [a.0, b.0].iter().filter(|s| **s == 400).count();
        let (_, now) = nodes[1].get_json(&t).await;
        let (low, high) = (
            now["target_temperature_low_f"].as_f64().unwrap(),
            now["target_temperature_high_f"].as_f64().unwrap(),
        );
        assert!(high - low >= 3.0, "the spread rule was bypassed: {low}..{high}");
    }
    assert!(refused >= 12, "each round one of the two writes must be refused ({refused} refusals)");
}

#[tokio::test]
async fn revoking_on_one_node_ends_the_tokens_streams_on_every_node() {
    let nodes = cluster(3).await;
    // The same token on every node: node A's.
    let token = nodes[0].token.clone();
    let mut streams = Vec::new();
    for node in &nodes {
        let mut events = Events::open_as(node, &token, "/metadata").await;
        events.next_put().await;
        streams.push(events);
    }
    let r = nodes[0].admin(&["token", "revoke", &token]);
    assert_eq!(r["revoked"], json!(true), "{r}");
    for (i, events) in streams.iter_mut().enumerate() {
        loop {
            let e =
                events.next().await.unwrap_or_else(|| panic!("node {i}: stream ended without auth_revoked"));
            if e.name == "auth_revoked" {
                break;
            }
        }
    }
    let (status, _) = {
        let r = nodes[2]
            .client
            .get(format!("{}/metadata", nodes[2].url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 401, "the revoked token is refused on another node");
}
