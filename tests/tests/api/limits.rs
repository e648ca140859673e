//! Connection limits: a client that never finishes its header is cut off,
//! and the server holds at most `EXPEREON_MAX_CONNECTIONS` connections.

use crate::support::*;
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
