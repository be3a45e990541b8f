//! Rate limits for products' tokens: calls per minute with visible budget, writes per device
//! shared by all products, 429 `blocked` with Retry-After; operator tokens are exempt.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

/// A token of one of the demo's products for the demo user, as if the user had consented.
pub(crate) fn product_token(app: &TestApp, product: usize) -> String {
    let id = app.demo["products"][product]["client_id"].as_str().unwrap();
    let v = app.admin(&["token", "issue", "--user", app.demo["login"].as_str().unwrap(), "--product", id]);
    v["access_token"].as_str().unwrap().to_string()
}

/// Waits until at least `margin` remains of the current wall-clock minute: call budgets
/// count in windows aligned to the minute, and a test counting calls must not straddle two.
pub(crate) async fn clear_of_minute_boundary(margin: std::time::Duration) {
    let into_minute = || {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        std::time::Duration::from_millis((since.as_millis() % 60_000) as u64)
    };
    let room = std::time::Duration::from_secs(60) - margin;
    if into_minute() > room {
        tokio::time::sleep(
            std::time::Duration::from_secs(60) - into_minute() + std::time::Duration::from_millis(50),
        )
        .await;
    }
}

#[tokio::test]
async fn products_see_their_budget_and_get_429_blocked_past_it() {
    let app = TestApp::spawn_with(Options {
        extra: vec![
            "--calls-per-token-per-minute".into(),
            "3".into(),
            "--writes-per-device-per-hour".into(),
            "2".into(),
        ],
        ..Options::default()
    })
    .await;
    let token = product_token(&app, 0);
    clear_of_minute_boundary(std::time::Duration::from_secs(10)).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = app.client.get(format!("{}/metadata", app.url)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "3");
        remaining.push(r.headers()["ratelimit-remaining"].to_str().unwrap().to_string());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = app.client.get(format!("{}/metadata", app.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], json!("blocked"));
    // Writes per device are shared by every product: two products, one thermostat.
    let t = app.thermostat_path();
    let (a, b) = (product_token(&app, 0), product_token(&app, 1));
    for (token, f) in [(&a, 70), (&b, 71)] {
        let r = app
            .client
            .put(format!("{}{t}", app.url))
            .bearer_auth(token)
            .body(json!({"target_temperature_f": f}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = app
        .client
        .put(format!("{}{t}", app.url))
        .bearer_auth(&b)
        .body(r#"{"target_temperature_f":72}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let (_, v) = app.get_json(&format!("{t}/target_temperature_f")).await;
    assert_eq!(v, json!(71), "the refused write changed nothing");
    // The operator's own token is not limited.
    for _ in 0..10 {
        assert_eq!(app.get("/metadata").send().await.unwrap().status(), 200);
    }
}

/// At the connection bound a new connection waits to be accepted, and is served once another
/// closes.
#[tokio::test]
async fn a_connection_past_the_bound_waits_until_another_closes() {
    use crate::streams::Events;
    let app = TestApp::spawn_with(Options {
        extra: vec!["--max-connections".into(), "2".into()],
        ..Options::default()
    })
    .await;
    let open = |client: reqwest::Client| {
        let req = client
            .get(format!("{}{}", app.url, app.thermostat_path()))
            .bearer_auth(&app.token)
            .header("accept", "text/event-stream");
        async move { Events::from_response(req.send().await.unwrap()) }
    };
    let mut first = open(crate::helpers::client_for(&app.dir, true)).await;
    first.next_put().await;
    let mut second = open(crate::helpers::client_for(&app.dir, true)).await;
    second.next_put().await;

    let third = crate::helpers::client_for(&app.dir, true);
    let metadata = || third.get(format!("{}/metadata", app.url)).bearer_auth(&app.token);
    let waiting = metadata().timeout(std::time::Duration::from_secs(1)).send().await;
    assert!(waiting.is_err_and(|e| e.is_timeout()), "a third connection was served past the bound of 2");

    drop(first);
    let served = metadata().send().await.unwrap();
    assert_eq!(served.status(), 200);
    drop(second);
}
