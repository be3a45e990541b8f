//! Measures the CPU cost of one thermostat write through the model (plan, rules, logic, diff).
//! `cargo run --release -p roost-model --example write_cost`. Timings on a shared VM drift;
//! for exact comparisons count instructions: `valgrind --tool=callgrind
//! target/release/examples/write_cost`, then `callgrind_annotate --inclusive=yes`.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use roost_model::demo::{DemoIds, demo_home};
use roost_model::{Actor, Location, PermissionSet, RuleConfig, WriteContext, apply_write, plan_write};
use serde_json::json;

fn main() {
    let ids = DemoIds {
        structure_id: "s".into(),
        heat_pump_thermostat: "t1".into(),
        heat_only_thermostat: "t2".into(),
        kitchen_protect: "p1".into(),
        hallway_protect: "p2".into(),
        camera: "c".into(),
    };
    let now = chrono::Utc::now();
    let mut home = demo_home(&ids, now);
    let loc = Location::parse("/devices/thermostats/t1").unwrap();
    let actor = Actor::Product { permissions: PermissionSet::all() };
    let config = RuleConfig::default();
    let ctx = WriteContext { actor: &actor, now, config: &config, measured_at: None };
    let n = 20_000;
    let (mut t_plan, mut t_apply, mut t_diff, mut t_ser, mut t_clone) = (0u128, 0u128, 0u128, 0u128, 0u128);
    for i in 0..n {
        let body = json!({"target_temperature_f": 70 + (i % 2)});
        let a = Instant::now();
        let plan = plan_write(&loc, &body, [&home]).unwrap();
        let b = Instant::now();
        let next = apply_write(&home, &plan, &ctx).unwrap();
        let c = Instant::now();
        let paths = roost_model::diff::diff_homes(&home, &next).paths;
        let d = Instant::now();
        // As the store's checkpoints and the API's responses write it.
        if std::env::var_os("SKIP_SERIALIZE").is_none() {
            let _ = next.to_json_text();
        }
        let e = Instant::now();
        let _ = home.clone();
        let f = Instant::now();
        assert!(!paths.is_empty());
        home = next;
        t_plan += (b - a).as_nanos();
        t_apply += (c - b).as_nanos();
        t_diff += (d - c).as_nanos();
        t_ser += (e - d).as_nanos();
        t_clone += (f - e).as_nanos();
    }
    let us = |t: u128| t as f64 / n as f64 / 1000.0;
    println!(
        "per write: plan {:.1} µs, apply (rules + logic) {:.1} µs, diff {:.1} µs, serialize {:.1} µs, clone {:.1} µs; document {} bytes",
        us(t_plan),
        us(t_apply),
        us(t_diff),
        us(t_ser),
        us(t_clone),
        roost_model::json_text(&home.to_json()).len()
    );
}
