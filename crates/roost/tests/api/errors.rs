//! Bad input of every class gets a clear JSON error — never a panic, a hang, a 500 or a
//! partial write.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

async fn expect_error(r: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], json!(error), "{v}");
    assert!(v["instance"].is_string() && v["type"].is_string() && v["message"].is_string());
    v
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let app = TestApp::spawn().await;
    let url = format!("{}/", app.url);
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    expect_error(r, 401, "unauthorized").await;
    for token in ["c.wrong", "", &"x".repeat(10_000), "c.\u{7f}"] {
        let r = app.client.get(&url).header("authorization", format!("Bearer {token}")).send().await;
        if let Ok(r) = r {
            expect_error(r, 401, "unauthorized").await;
        }
    }
    let r = app.client.get(format!("{url}?auth=c.nope")).send().await.unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = app.client.put(&url).body("{}").send().await.unwrap();
    expect_error(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn bad_bodies_are_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"".to_vec(),
        b"{\"target_temperature_f\": NaN}".to_vec(),
        b"{\"target_temperature_f\": Infinity}".to_vec(),
        b"{\"target_temperature_f\": 1e400}".to_vec(),
        deep.into_bytes(),
        vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
        b"{\"a\":1}{\"b\":2}".to_vec(),
    ];
    for body in bodies {
        let r = app
            .client
            .put(format!("{}{t}", app.url))
            .bearer_auth(&app.token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "Invalid content sent").await;
    }
    let r = app.put(&t, json!({"target_temperature_f": "hot"})).send().await.unwrap();
    expect_error(r, 400, "Temperature 'target_temperature_f' is in wrong format").await;
    let (_, v) = app.get_json(&t).await;
    assert_eq!(v["target_temperature_f"], json!(68));
}

#[tokio::test]
async fn huge_bodies_are_413() {
    let app = TestApp::spawn_with(Options { body_limit: Some(4096), ..Options::default() }).await;
    let body = json!({"label": "x".repeat(10_000)});
    let r = app.put(&app.thermostat_path(), body).send().await.unwrap();
    let v = expect_error(r, 413, "payload too large").await;
    assert_eq!(v["details"]["limit"], json!("4096"));
}

#[tokio::test]
async fn odd_paths_are_400() {
    let app = TestApp::spawn().await;
    for path in
        ["/devices/%ff", "/a/%00/b", &format!("/{}", "a/".repeat(20)), &format!("/{}", "x".repeat(2000))]
    {
        let r = app.get(path).send().await.unwrap();
        expect_error(r, 400, "Invalid data location").await;
    }
}

/// Clients normalize `..` away, so this one goes over a raw socket.
#[tokio::test]
async fn dot_segments_are_400_on_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Options { insecure_http: true, ..Options::default() }).await;
    let addr = app.url.trim_start_matches("http://").to_string();
    for path in ["/devices/../metadata", "/devices/%2e%2e/metadata", "/./metadata"] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            app.token
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{path}: {out}");
        assert!(out.contains("\"error\":\"Invalid data location\""), "{path}: {out}");
    }
}

/// A refused request with a body leaves its keep-alive connection usable: the next request
/// on the same socket is answered (python-nest reuses its connection after a 401).
#[tokio::test]
async fn a_refused_request_with_a_body_keeps_the_connection() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let app = TestApp::spawn_with(Options { insecure_http: true, ..Options::default() }).await;
    let addr = app.url.trim_start_matches("http://").to_string();
    let mut s = BufReader::new(tokio::net::TcpStream::connect(&addr).await.unwrap());
    let body = format!("{{\"target_temperature_f\": 70, \"pad\": \"{}\"}}", "x".repeat(8_000));
    let path = app.thermostat_path();
    let refused = [
        ("PUT", path.as_str(), "c.not-a-token-at-all-0000000000000000000000000", 401),
        ("POST", "/", app.token.as_str(), 405),
        ("PUT", path.as_str(), app.token.as_str(), 400),
    ];
    for (method, path, token, status) in refused {
        // The head first and the body a little later, as Python's http.client sends them.
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.get_mut().write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s.get_mut().write_all(body.as_bytes()).await.unwrap();
        let mut line = String::new();
        s.read_line(&mut line).await.unwrap();
        assert!(line.starts_with(&format!("HTTP/1.1 {status}")), "{method}: {line}");
        // Skip the headers and the body of the answer.
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            s.read_line(&mut h).await.unwrap();
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if h == "\r\n" {
                break;
            }
        }
        let mut rest = vec![0u8; length];
        s.read_exact(&mut rest).await.unwrap();
    }
    let req = format!(
        "GET {path}/target_temperature_f HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        app.token
    );
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    let mut line = String::new();
    s.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "the connection was dropped: {line:?}");
}

#[tokio::test]
async fn other_methods_are_405() {
    let app = TestApp::spawn().await;
    for m in ["POST", "DELETE", "OPTIONS", "FOO"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let r =
            app.client.request(method, format!("{}/", app.url)).bearer_auth(&app.token).send().await.unwrap();
        assert_eq!(r.headers()["allow"], "GET, PUT, PATCH");
        expect_error(r, 405, "method not allowed").await;
    }
}

#[tokio::test]
async fn large_headers_get_a_json_error_and_the_server_lives_on() {
    let app = TestApp::spawn().await;
    // A 64 KiB token: refused as unauthorized (not parsed, not logged).
    let r = app
        .client
        .get(format!("{}/", app.url))
        .header("authorization", format!("Bearer c.{}", "a".repeat(65_536)))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = app.get("/").header("x-junk", "j".repeat(65_536)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = app.get_json("/").await;
    assert_eq!(s, 200);
}
