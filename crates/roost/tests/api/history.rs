//! `GET /history/<structure_id>`: who changed what in a home, newest first, paged; only for
//! the home's own people.

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::limits::product_token;

#[tokio::test]
async fn history_says_who_changed_what_newest_first_and_pages() {
    let app = TestApp::spawn().await;
    let sid = app.id("structure_id");
    let t = app.thermostat_path();
    let tid = app.id("heat_pump_thermostat");
    assert_eq!(app.put_json(&t, json!({"target_temperature_f": 70})).await.0, 200);
    let product = product_token(&app, 0);
    let r = app
        .client
        .put(format!("{}{t}", app.url))
        .bearer_auth(&product)
        .body(json!({"target_temperature_f": 71}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let get = |query: String, token: String| {
        let url = format!("{}/history/{sid}{query}", app.url);
        let client = app.client.clone();
        async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, page) = get(String::new(), app.token.clone()).await;
    assert_eq!(status, 200, "{page}");
    let entries = page["entries"].as_array().unwrap();
    let newest = &entries[0];
    assert_eq!(newest["by"]["kind"], json!("product"), "{newest}");
    assert_eq!(newest["by"]["name"], app.demo["products"][0]["name"], "{newest}");
    assert_eq!(newest["set"]["devices"]["thermostats"][&tid]["target_temperature_f"], json!(71), "{newest}");
    assert!(
        newest["paths"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("/devices/thermostats/{tid}/target_temperature_f"))),
        "{newest}"
    );
    assert_eq!(entries[1]["by"]["kind"], json!("user"), "the demo's own token: {}", entries[1]);
    assert_eq!(entries[1]["set"]["devices"]["thermostats"][&tid]["target_temperature_f"], json!(70));
    let revisions: Vec<u64> = entries.iter().map(|e| e["revision"].as_u64().unwrap()).collect();
    assert!(revisions.windows(2).all(|w| w[0] == w[1] + 1), "newest first, none missing: {revisions:?}");
    assert_eq!(page["revision"], json!(revisions[0]));

    // One at a time: each page's next_before leads to the next older entry.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_string();
    loop {
        let (status, page) = get(query.clone(), app.token.clone()).await;
        assert_eq!(status, 200, "{page}");
        let e = page["entries"].as_array().unwrap();
        assert_eq!(e.len(), 1, "{page}");
        seen.push(e[0]["revision"].as_u64().unwrap());
        match page["next_before"].as_u64() {
            Some(before) => query = format!("?limit=1&before={before}"),
            None => break,
        }
    }
    assert_eq!(seen, revisions, "paging one by one finds the same entries");

    // Not a product's business; a bad page size is a clear error.
    let (status, e) = get(String::new(), product).await;
    assert_eq!((status, e["error"].as_str()), (404, Some("not found")), "{e}");
    let (status, e) = get("?limit=0".into(), app.token.clone()).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("limit"), "{e}");
    let (status, _) = get("?before=x".into(), app.token.clone()).await;
    assert_eq!(status, 400);
}
