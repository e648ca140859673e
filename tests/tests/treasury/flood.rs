//! Many real deposits, fast: raw HTTP/1.1 requests pipelined over many
//! keep-alive connections, each one an ordinary
//! `POST /admin/organizations/{id}/deposits`. Used to build a
//! 100,000-transaction history quickly: the test client costs next to
//! nothing, so the server has the cores, and many connections in flight let
//! the writer commit large groups. The deposits carry no requestId (it is
//! optional, and an idempotency record per deposit about doubles the writer's
//! work); idempotent deposits are covered in `idempotency.rs`.

use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

/// Sends `count` deposits to `org` over `connections` connections; the amount
/// of deposit `i` is `amount(i)`. Panics on any answer but 200.
pub async fn deposits(
    app: &TestApp,
    org: &Org,
    currency: &str,
    count: usize,
    connections: usize,
    amount: impl Fn(usize) -> String,
) {
    let path = format!("/api/v1/admin/organizations/{}/deposits", org.id);
    let mut per_connection: Vec<Vec<u8>> = vec![Vec::new(); connections];
    for i in 0..count {
        let body = serde_json::to_vec(&json!({
            "currency": currency,
            "amount": amount(i),
            "reference": format!("flood {i:06}: treasury load test, batch {}", i / 1000),
        }))
        .expect("json");
        let out = &mut per_connection[i % connections];
        out.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nx-admin-token: {ADMIN_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                app.port,
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&body);
    }
    let tasks: Vec<_> = per_connection
        .into_iter()
        .enumerate()
        .map(|(c, requests)| {
            let expected = count / connections + usize::from(c < count % connections);
            let port = app.port;
            tokio::spawn(async move { pipeline(port, requests, expected).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("deposit connection");
    }
}

async fn pipeline(port: u16, requests: Vec<u8>, expected: usize) {
    if expected == 0 {
        return;
    }
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut reader, writer) = stream.into_split();
    let write = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(64 * 1024, writer);
        w.write_all(&requests).await.expect("writing requests");
        w.flush().await.expect("flushing requests");
        // Keep the write half open until every answer is read.
        w
    });
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut answered = 0;
    while answered < expected {
        // Parse every complete response already buffered.
        let mut consumed = 0;
        loop {
            let rest = &buf[consumed..];
            let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = std::str::from_utf8(&rest[..head_end]).expect("response head");
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad status line: {head}"));
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("a deposit answer without content-length: {head}"));
            let total = head_end + 4 + length;
            if rest.len() < total {
                break;
            }
            assert_eq!(
                status,
                200,
                "a flood deposit was refused: {}",
                String::from_utf8_lossy(&rest[head_end + 4..total])
            );
            consumed += total;
            answered += 1;
        }
        buf.drain(..consumed);
        if answered == expected {
            break;
        }
        let n = reader.read(&mut chunk).await.expect("reading answers");
        assert!(
            n > 0,
            "the server closed a connection after {answered} of {expected} answers"
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    drop(write.await.expect("writer"));
}
