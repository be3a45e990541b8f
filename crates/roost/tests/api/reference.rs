//! `/reference`: every field of the schema and every error of the catalogue has its entry,
//! and an error's `type` leads to one of them.

use roost_model::catalogue::ERRORS;
use roost_model::schema::{Entity, FIELDS};

use crate::helpers::TestApp;

fn entity_key(e: Entity) -> &'static str {
    match e {
        Entity::Thermostat => "thermostat",
        Entity::SmokeCoAlarm => "smoke_co_alarm",
        Entity::Camera => "camera",
        Entity::Structure => "structure",
        Entity::Metadata => "metadata",
    }
}

#[tokio::test]
async fn the_reference_lists_every_field_and_error_and_types_link_to_it() {
    let app = TestApp::spawn().await;
    let r = app.client.get(format!("{}/reference", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let html = r.text().await.unwrap();
    let mut shown = 0;
    for f in FIELDS.iter().filter(|f| !f.is_internal()) {
        let key = format!("{}/{}", entity_key(f.entity), f.path);
        assert!(html.contains(&format!("data-field=\"{key}\"")), "the reference lacks {key}");
        shown += 1;
    }
    assert!(shown > 100, "{shown} fields");
    for internal in FIELDS.iter().filter(|f| f.is_internal()) {
        let key = format!("{}/{}", entity_key(internal.entity), internal.path);
        assert!(!html.contains(&format!("data-field=\"{key}\"")), "an internal field is listed: {key}");
    }
    for e in ERRORS {
        assert!(
            html.contains(&format!("id=\"error-{}\"", e.anchor)),
            "the reference lacks error {}",
            e.anchor
        );
    }
    // A rule's refusal links to its entry, and the field's row names that rule.
    let (status, e) = app.put_json(&app.thermostat_path(), serde_json::json!({"hvac_mode": "cool"})).await;
    assert_eq!(status, 400, "{e}");
    let link = e["type"].as_str().unwrap();
    assert_eq!(link, "/reference#error-emergency-heat");
    let anchor = link.split_once('#').unwrap().1;
    assert!(html.contains(&format!("id=\"{anchor}\"")));
    let row_start = html.find("data-field=\"thermostat/hvac_mode\"").unwrap();
    let row = &html[row_start..row_start + html[row_start..].find("</tr>").unwrap()];
    assert!(row.contains("#error-emergency-heat"), "{row}");
}
