//! Connection limits: a client that never finishes its header is cut off,
//! and the server holds at most `EXPEREON_MAX_CONNECTIONS` connections.
//! Disk: below `EXPEREON_MIN_FREE_DISK_BYTES` free, writes are refused.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection and sends the start of a request, never its end.
async fn partial_request(app: &TestApp) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("write");
    s
}

/// Whether the server closes `s` within `limit` (reads end or fail).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => {
                // Still open: keep trickling header bytes, as slowloris does.
                if s.write_all(b"a").await.is_err() {
                    return true;
                }
            }
        }
        if started.elapsed() > limit {
            return false;
        }
    }
}

#[tokio::test]
async fn connections_that_never_finish_their_header_are_closed() {
    let app = spawn_app_with(&[("EXPEREON_HEADER_READ_TIMEOUT", "1s")]).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(partial_request(&app).await);
    }
    // The server still serves everyone else meanwhile.
    app.anon.get("/healthz").await.ok();
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(10)).await,
            "connection {i} is still open"
        );
    }
}

#[tokio::test]
async fn the_server_holds_at_most_max_connections() {
    let app = spawn_app_with(&[
        ("EXPEREON_MAX_CONNECTIONS", "4"),
        ("EXPEREON_HEADER_READ_TIMEOUT", "60s"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(partial_request(&app).await);
    }
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .expect("client");
    let url = format!("{}/healthz", app.base);
    assert!(
        quick.get(&url).send().await.is_err(),
        "a fifth connection was served while four were held"
    );
    drop(held.pop());
    let r = quick
        .get(&url)
        .send()
        .await
        .expect("served once one closed");
    assert_eq!(r.status(), 200);
}

/// Sends a request whose body announces more than it sends, then waits for
/// the answer's status line and body.
async fn stalled_request(app: &TestApp, org: &Org, path: &str, content_type: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {}\r\nX-API-Secret: {}\r\n\
         Content-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n{{\"memo\": ",
        org.key_id, org.secret
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    // The error body is one JSON object ending the answer.
                    if answer.ends_with(b"}}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A body that stalls is refused with 408 REQUEST_TIMEOUT after
/// `EXPEREON_REQUEST_BODY_TIMEOUT`, for JSON bodies and for uploads, and an
/// abandoned upload leaves no bytes behind.
#[tokio::test]
async fn bodies_that_stall_are_refused_with_408() {
    let app = spawn_app_with(&[("EXPEREON_REQUEST_BODY_TIMEOUT", "1s")]).await;
    let org = app.create_org("Slow Ltd").await;
    let before = app.log_state().await;
    let started = Instant::now();
    let json = stalled_request(&app, &org, "/api/v1/invoices", "application/json").await;
    assert!(json.starts_with("HTTP/1.1 408"), "{json}");
    assert!(json.contains("\"REQUEST_TIMEOUT\""), "{json}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let upload = stalled_request(
        &app,
        &org,
        "/api/v1/storage?filename=slow.bin",
        "application/octet-stream",
    )
    .await;
    assert!(upload.starts_with("HTTP/1.1 408"), "{upload}");
    assert_eq!(app.log_state().await, before, "nothing was written");
    let mut left = Vec::new();
    let mut dirs = vec![app.data_dir().join("data").join("files")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                left.push(p);
            }
        }
    }
    assert!(left.is_empty(), "an abandoned upload left {left:?}");
}

#[tokio::test]
async fn below_the_disk_floor_writes_are_refused_and_reads_go_on() {
    let mut app = spawn_app().await;
    let org = app.create_org("Cramped").await;
    let before = org.get("/api/v1/connections").await.ok();
    let health = app.anon.get("/healthz").await.ok();
    assert_eq!(health["disk"]["low"], false, "{health}");
    assert!(
        health["disk"]["freeBytes"].as_u64().unwrap_or(0) > 0,
        "{health}"
    );

    // No disk has this much free: the floor is always crossed.
    app.set_env("EXPEREON_MIN_FREE_DISK_BYTES", &u64::MAX.to_string());
    app.expect_unhealthy_start();
    app.restart().await;
    let seq = |health: Value| health["logSequence"].as_u64().expect("logSequence");
    let before_seq = seq(app.anon.get("/healthz").await.json());

    let health = app.anon.get("/healthz").await;
    assert_eq!(health.status, 503);
    let health = health.json();
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["disk"]["low"], true, "{health}");
    let metrics = app.anon.get("/metrics").await.text();
    assert!(metrics.contains("expereon_disk_low 1"), "{metrics}");

    // Commands of every kind, and uploads, are refused before anything is written.
    let refused = org
        .post(
            "/api/v1/connections",
            json!({ "counterpartyOrganizationId": org.id, "role": "SELLER" }),
        )
        .await;
    let details = refused.err(503, "UNAVAILABLE");
    assert_eq!(details["floorBytes"].as_u64(), Some(u64::MAX), "{details}");
    let message = refused.json()["error"]["message"].clone();
    assert!(message.as_str().unwrap_or("").contains("disk"), "{message}");
    app.admin
        .post("/api/v1/admin/organizations", json!({ "name": "Another" }))
        .await
        .err(503, "UNAVAILABLE");
    org.send(
        Method::POST,
        "/api/v1/storage?filename=a.txt",
        &[("content-type", "text/plain"), ("idempotency-key", &rid())],
        Some(b"hello".to_vec()),
    )
    .await
    .err(503, "UNAVAILABLE");
    assert_eq!(
        seq(app.anon.get("/healthz").await.json()),
        before_seq,
        "nothing was written"
    );

    // Reads go on.
    assert_eq!(org.get("/api/v1/connections").await.ok(), before);
}
