//! File storage: byte-identical round trips, sniffing, the upload limit
//! (enforced while streaming), awkward filenames, counterparty access and
//! deletion rules.

use crate::common::{
    files_root, files_under, multipart, noise, pct_decode, sha256_hex, upload_multipart, upload_raw,
};
use crate::support::{s, simple_invoice, spawn_app, spawn_app_with, Org, Resp, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The stored metadata matches the bytes, the download returns them exactly,
/// and the metadata endpoint agrees with the upload's answer.
#[track_caller]
fn check_metadata(meta: &Value, filename: &str, data: &[u8], sha: &str) {
    assert_eq!(meta["filename"], filename, "{meta}");
    assert_eq!(meta["size"], json!(data.len()), "{meta}");
    assert_eq!(meta["sha256"], sha, "{meta}");
    assert!(
        meta["id"].is_string() && meta["createdAt"].is_string(),
        "{meta}"
    );
    assert!(
        meta["contentType"].as_str().is_some_and(|c| !c.is_empty()),
        "{meta}"
    );
}

async fn check_download(org: &Org, meta: &Value, data: &[u8]) -> Resp {
    let id = s(&meta["id"]);
    let r = org.get(&format!("/api/v1/storage/{id}")).await;
    assert_eq!(r.status, 200, "download {id}: {}", r.text());
    assert!(
        r.bytes == data,
        "download {id}: {} bytes back for {} sent, or different bytes",
        r.bytes.len(),
        data.len()
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        meta["contentType"].as_str(),
        "download {id}"
    );
    if let Some(len) = r.header("content-length") {
        assert_eq!(len, data.len().to_string(), "download {id}");
    }
    let again = org
        .get(&format!("/api/v1/storage/{id}/metadata"))
        .await
        .ok();
    assert_eq!(&again, meta, "metadata of {id}");
    r
}

#[tokio::test]
async fn uploads_round_trip_byte_identical_both_ways() {
    let app = spawn_app().await;
    let a = app.create_org("Files Ltd").await;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let big = noise(20 * 1024 * 1024, 0x5eed);
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("empty.bin", Vec::new()),
        ("one.bin", vec![0x00]),
        ("all-256.bin", all_bytes),
        ("twenty-mib.bin", big),
    ];
    let mut ids = Vec::new();
    for (name, data) in &payloads {
        let sha = sha256_hex(data);
        for multipart_upload in [true, false] {
            let how = if multipart_upload { "multipart" } else { "raw" };
            let filename = format!("{how}-{name}");
            let r = if multipart_upload {
                upload_multipart(&a, &filename, Some("application/x-test-bytes"), data).await
            } else {
                upload_raw(&a, &filename, Some("application/x-test-bytes"), data).await
            };
            let meta = r.ok();
            check_metadata(&meta, &filename, data, &sha);
            assert_eq!(
                meta["contentType"], "application/x-test-bytes",
                "given content type kept ({how})"
            );
            check_download(&a, &meta, data).await;
            ids.push(s(&meta["id"]));
        }
    }
    // The list holds them all; the store holds one object per upload.
    let listed: Vec<String> = a
        .walk("/api/v1/storage", 3)
        .await
        .iter()
        .map(|f| s(&f["id"]))
        .collect();
    let mut want = ids.clone();
    want.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, want, "GET /storage lists every upload once");
    assert_eq!(
        files_under(&files_root(&app)).len(),
        ids.len(),
        "one stored object per upload"
    );
}

#[tokio::test]
async fn content_type_is_sniffed_when_absent_and_kept_when_given() {
    let app = spawn_app().await;
    let a = app.create_org("Sniff Ltd").await;
    let mut pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n".to_vec();
    pdf.extend_from_slice(&noise(3000, 7));
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    png.extend_from_slice(&noise(5000, 9));
    // Raw bodies with no Content-Type at all.
    for (name, data, want) in [("doc", &pdf, "application/pdf"), ("pic", &png, "image/png")] {
        let meta = upload_raw(&a, name, None, data).await.ok();
        assert_eq!(meta["contentType"], want, "raw {name}: {meta}");
        check_metadata(&meta, name, data, &sha256_hex(data));
        check_download(&a, &meta, data).await;
    }
    // Multipart parts without a Content-Type, or with the generic one.
    for (name, data, want, part_ct) in [
        ("doc.bin", &pdf, "application/pdf", None),
        ("pic.bin", &png, "image/png", None),
        (
            "doc2",
            &pdf,
            "application/pdf",
            Some("application/octet-stream"),
        ),
    ] {
        let meta = upload_multipart(&a, name, part_ct, data).await.ok();
        assert_eq!(meta["contentType"], want, "multipart {name}: {meta}");
        check_download(&a, &meta, data).await;
    }
    // A content type given is kept, whatever the bytes.
    let meta = upload_raw(&a, "table.csv", Some("text/csv"), &pdf)
        .await
        .ok();
    assert_eq!(meta["contentType"], "text/csv");
    let meta = upload_multipart(&a, "table.csv", Some("text/csv"), &png)
        .await
        .ok();
    assert_eq!(meta["contentType"], "text/csv");

    // Larger raw bodies without a content type, or typed as JSON, are files
    // like any other: streamed, not held to the JSON body limit.
    let mut big_png = png.clone();
    big_png.extend_from_slice(&noise(3 * 1024 * 1024, 11));
    let meta = upload_raw(&a, "big.png", None, &big_png).await.ok();
    assert_eq!(meta["contentType"], "image/png");
    check_metadata(&meta, "big.png", &big_png, &sha256_hex(&big_png));
    check_download(&a, &meta, &big_png).await;
    let big_json = serde_json::to_vec(&(0..400_000).collect::<Vec<u32>>()).unwrap();
    assert!(big_json.len() > 2 * 1024 * 1024);
    let meta = upload_raw(&a, "numbers.json", Some("application/json"), &big_json)
        .await
        .ok();
    assert_eq!(meta["contentType"], "application/json");
    check_metadata(&meta, "numbers.json", &big_json, &sha256_hex(&big_json));
    check_download(&a, &meta, &big_json).await;
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Streams `total` bytes as a chunked upload over a raw connection and reads
/// the answer while still sending. Returns the status line and body, and how
/// many body bytes had been sent when the answer arrived.
async fn stream_upload(app: &TestApp, org: &Org, total: u64) -> (String, String, u64) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST /api/v1/storage?filename=huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {}\r\nX-API-Secret: {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        org.key_id, org.secret
    );
    let sent = Arc::new(AtomicU64::new(0));
    let sent_w = sent.clone();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = noise(1024 * 1024, 3);
        let mut done = 0u64;
        while done < total {
            let n = (total - done).min(chunk.len() as u64) as usize;
            let frame_head = format!("{n:x}\r\n");
            if wr.write_all(frame_head.as_bytes()).await.is_err()
                || wr.write_all(&chunk[..n]).await.is_err()
                || wr.write_all(b"\r\n").await.is_err()
            {
                return;
            }
            done += n as u64;
            sent_w.store(done, Ordering::SeqCst);
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let mut sent_at_answer = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = tokio::time::timeout_at(deadline.into(), rd.read(&mut tmp))
            .await
            .expect("an answer within 60 s")
            .unwrap_or(0);
        if n > 0 && sent_at_answer.is_none() {
            sent_at_answer = Some(sent.load(Ordering::SeqCst));
        }
        buf.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let headers = &text[..end];
            let len = headers
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if let Some(len) = len {
                if buf.len() >= end + 4 + len {
                    writer.abort();
                    let body = text[end + 4..end + 4 + len].to_owned();
                    let status = headers.lines().next().unwrap_or_default().to_owned();
                    return (status, body, sent_at_answer.unwrap_or(0));
                }
            }
        }
        if n == 0 {
            writer.abort();
            panic!(
                "connection closed before a full answer: {}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
}

#[tokio::test]
async fn over_limit_uploads_are_refused_while_streaming_and_leave_nothing_behind() {
    const LIMIT: usize = 1024 * 1024;
    let app = spawn_app_with(&[("EXPEREON_MAX_UPLOAD_BYTES", &LIMIT.to_string())]).await;
    let a = app.create_org("Limits Ltd").await;
    let root = files_root(&app);
    // Exactly the limit is fine.
    let exact = noise(LIMIT, 1);
    let meta = upload_raw(&a, "exact.bin", Some("application/octet-stream"), &exact)
        .await
        .ok();
    check_metadata(&meta, "exact.bin", &exact, &sha256_hex(&exact));
    let meta = upload_multipart(&a, "exact.bin", None, &exact).await.ok();
    check_metadata(&meta, "exact.bin", &exact, &sha256_hex(&exact));
    let stored: Vec<PathBuf> = files_under(&root);
    assert_eq!(stored.len(), 2, "{stored:?}");
    let listed = a.walk("/api/v1/storage", 50).await;

    // One byte more is refused, raw or multipart, with or without a type.
    let over = noise(LIMIT + 1, 2);
    let r = upload_raw(&a, "over.bin", Some("application/octet-stream"), &over).await;
    let details = r.err(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(details["limitBytes"], json!(LIMIT), "{details}");
    upload_raw(&a, "over.bin", None, &over)
        .await
        .err(413, "PAYLOAD_TOO_LARGE");
    upload_multipart(&a, "over.bin", Some("application/octet-stream"), &over)
        .await
        .err(413, "PAYLOAD_TOO_LARGE");
    upload_multipart(&a, "over.bin", None, &noise(3 * LIMIT, 4))
        .await
        .err(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(files_under(&root), stored, "no partial file left behind");
    assert_eq!(
        a.walk("/api/v1/storage", 50).await,
        listed,
        "no metadata for refused uploads"
    );

    // A body far larger than the limit, streamed: refused long before it is
    // all sent, and never held in memory.
    let pid = app.pid().expect("server pid");
    let (rss_before, hwm_before) = (vm_kib(pid, "VmRSS:"), vm_kib(pid, "VmHWM:"));
    const HUGE: u64 = 512 * 1024 * 1024;
    let (status, body, sent) = stream_upload(&app, &a, HUGE).await;
    assert!(status.contains(" 413"), "{status}: {body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["error"]["code"], "PAYLOAD_TOO_LARGE", "{body}");
    assert!(
        sent < HUGE / 4,
        "the answer came only after {sent} of {HUGE} bytes were sent: the limit is not enforced while streaming"
    );
    let (rss_after, hwm_after) = (vm_kib(pid, "VmRSS:"), vm_kib(pid, "VmHWM:"));
    let grew_kib = hwm_after
        .saturating_sub(hwm_before)
        .max(rss_after.saturating_sub(rss_before));
    eprintln!(
        "streamed upload: answered after {sent} bytes sent; RSS {rss_before}→{rss_after} KiB, peak {hwm_before}→{hwm_after} KiB"
    );
    assert!(
        grew_kib < 64 * 1024,
        "the server's memory grew by {grew_kib} KiB for a streamed {HUGE}-byte body (RSS {rss_before}→{rss_after} KiB, peak {hwm_before}→{hwm_after} KiB)"
    );
    assert_eq!(
        files_under(&root),
        stored,
        "no partial file left behind by the streamed upload"
    );
    // The server carries on.
    assert_eq!(a.walk("/api/v1/storage", 50).await, listed);
    let small = upload_raw(&a, "after.txt", Some("text/plain"), b"still here")
        .await
        .ok();
    check_download(&a, &small, b"still here").await;
}

/// `filename="<ascii>"; filename*=UTF-8''<pct>` with nothing else, returns
/// (ascii fallback, decoded UTF-8 name).
fn parse_disposition(h: &str) -> (String, String) {
    assert!(h.is_ascii(), "Content-Disposition is ASCII: {h}");
    assert!(
        !h.chars().any(|c| c.is_control()),
        "no control characters: {h:?}"
    );
    let (kind, rest) = h
        .split_once(';')
        .unwrap_or_else(|| panic!("parameters in {h}"));
    assert_eq!(kind.trim(), "attachment", "{h}");
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("filename=\"")
        .unwrap_or_else(|| panic!("a quoted filename first: {h}"));
    let end = rest
        .find('"')
        .unwrap_or_else(|| panic!("a closing quote: {h}"));
    let ascii = &rest[..end];
    assert!(
        ascii
            .chars()
            .all(|c| (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '/')),
        "the quoted fallback is safe: {h}"
    );
    let rest = rest[end + 1..].trim_start();
    let rest = rest
        .strip_prefix(';')
        .unwrap_or_else(|| panic!("then `;`: {h}"))
        .trim_start();
    let encoded = rest
        .strip_prefix("filename*=UTF-8''")
        .unwrap_or_else(|| panic!("then filename*=UTF-8'': {h}"));
    assert!(
        encoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$&+-.^_`|~%".contains(c)),
        "filename* uses only attr-chars and escapes (RFC 5987): {h}"
    );
    let decoded = String::from_utf8(pct_decode(encoded)).expect("UTF-8 filename*");
    (ascii.to_owned(), decoded)
}

#[tokio::test]
async fn awkward_filenames_are_stored_as_given_and_served_safely() {
    let app = spawn_app().await;
    let a = app.create_org("Names Ltd").await;
    let awkward = [
        "quote\"d \"name\".pdf",
        "dir/sub/file.txt",
        "/abs/path.txt",
        "../../../../../../tmp/escaped-expereon.txt",
        "..",
        "../",
        "..\\..\\windows\\evil.dll",
        "résumé – 日本語 ✓.pdf",
        "emoji 😀 file.png",
        "semi;colon%20percent back\\slash.txt",
        "x\"; filename=\"evil.exe",
        "x.txt\"; filename*=UTF-8''evil.exe",
        "name with 'single' quotes & ampersand.txt",
    ];
    let mut ids = Vec::new();
    for (i, name) in awkward.iter().enumerate() {
        let data = format!("file {i}: {name}").into_bytes();
        let meta = upload_raw(&a, name, Some("text/plain"), &data).await.ok();
        check_metadata(&meta, name, &data, &sha256_hex(&data));
        let r = check_download(&a, &meta, &data).await;
        let cd = r
            .header("content-disposition")
            .unwrap_or_else(|| panic!("{name}: no Content-Disposition"));
        let (ascii, decoded) = parse_disposition(&cd);
        assert_eq!(decoded, *name, "filename* names the file exactly: {cd}");
        assert_eq!(
            ascii.chars().count(),
            name.chars().count(),
            "one fallback character per character: {cd}"
        );
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{name}"
        );
        ids.push(s(&meta["id"]));
    }
    // Through multipart too (names as a browser would send them, UTF-8 as is).
    for name in [
        "dir/sub/multi.txt",
        "../../multi-escape.txt",
        "unicodé ☃.txt",
        "..",
    ] {
        let data = format!("multipart {name}").into_bytes();
        let meta = upload_multipart(&a, name, Some("text/plain"), &data)
            .await
            .ok();
        check_metadata(&meta, name, &data, &sha256_hex(&data));
        let r = check_download(&a, &meta, &data).await;
        let (_, decoded) = parse_disposition(
            &r.header("content-disposition")
                .expect("Content-Disposition"),
        );
        assert_eq!(decoded, name);
        ids.push(s(&meta["id"]));
    }
    // The 255-character maximum is fine; names that cannot be files are refused.
    let longest = "é".repeat(255);
    let meta = upload_raw(&a, &longest, Some("text/plain"), b"long")
        .await
        .ok();
    assert_eq!(meta["filename"], longest.as_str());
    ids.push(s(&meta["id"]));
    for bad in [
        "",
        "   ",
        "a\u{0}b",
        "line\nbreak",
        "tab\there",
        &"a".repeat(256),
    ] {
        upload_raw(&a, bad, Some("text/plain"), b"x")
            .await
            .err(400, "VALIDATION_ERROR");
    }
    a.send(
        Method::POST,
        "/api/v1/storage",
        &[("content-type", "text/plain")],
        Some(b"x".to_vec()),
    )
    .await
    .err(400, "VALIDATION_ERROR");

    // Nothing lands outside the file store, and the store holds one object
    // per upload, named by ids only.
    let root = files_root(&app);
    let stored = files_under(&root);
    assert_eq!(stored.len(), ids.len(), "{stored:#?}");
    for p in &stored {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            ids.iter().any(|id| id == name),
            "unexpected object {}",
            p.display()
        );
        assert!(p.starts_with(&root));
    }
    let everywhere = files_under(app.data_dir());
    for p in &everywhere {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        for bad in [
            "escaped-expereon.txt",
            "evil.dll",
            "evil.exe",
            "path.txt",
            "multi-escape.txt",
            "file.txt",
        ] {
            assert!(
                !name.contains(bad),
                "a file named after an upload: {}",
                p.display()
            );
        }
    }
    let tmp_escape = std::path::Path::new("/tmp/escaped-expereon.txt");
    assert!(!tmp_escape.exists(), "{} was written", tmp_escape.display());
}

#[tokio::test]
async fn the_counterparty_reads_attached_files_and_nothing_else() {
    let app = spawn_app().await;
    let pair = app.trading_pair("0").await;
    let (seller, buyer) = (&pair.seller, &pair.buyer);
    let stranger = app.create_org("Stranger Co").await;
    let bytes = |tag: &str| format!("%PDF-1.4 {tag}").into_bytes();
    let up = |org: &Org, tag: &'static str| {
        let org = org.clone();
        async move {
            upload_raw(&org, &format!("{tag}.pdf"), None, &bytes(tag))
                .await
                .ok()
        }
    };
    let attached = up(seller, "attached").await;
    let private = up(seller, "private").await;
    let in_draft = up(seller, "in-draft").await;
    let loose = up(seller, "loose").await;
    let buyers_own = up(buyer, "buyers-own").await;
    let id = |m: &Value| s(&m["id"]);

    // Attaching another organization's file, or one that does not exist, is 404.
    let mut body = simple_invoice(&pair.conn, "10.00");
    body["attachments"] = json!([id(&buyers_own)]);
    seller
        .post("/api/v1/invoices", body.clone())
        .await
        .err(404, "NOT_FOUND");
    body["attachments"] = json!([id(&attached), uuid::Uuid::new_v4().to_string()]);
    seller
        .post("/api/v1/invoices", body.clone())
        .await
        .err(404, "NOT_FOUND");
    body["attachments"] = json!(["not-a-file-id"]);
    seller
        .post("/api/v1/invoices", body.clone())
        .await
        .err(400, "VALIDATION_ERROR");

    // A submitted invoice with an attachment: the buyer reads the file.
    body["attachments"] = json!([id(&attached)]);
    body["submit"] = json!(true);
    let invoice = seller.create_invoice(body).await;
    assert_eq!(invoice["status"], "SUBMITTED");
    assert_eq!(invoice["attachments"], json!([id(&attached)]));
    let seen = buyer.invoice(&id(&invoice)).await.ok();
    assert_eq!(seen["attachments"], json!([id(&attached)]));
    let r = check_download(buyer, &attached, &bytes("attached")).await;
    assert_eq!(r.header("content-type").as_deref(), Some("application/pdf"));
    buyer
        .get(&format!("/api/v1/storage/{}/metadata", id(&attached)))
        .await
        .ok();

    // A draft's attachment stays the seller's alone until it is submitted.
    let mut draft_body = simple_invoice(&pair.conn, "20.00");
    draft_body["attachments"] = json!([id(&in_draft)]);
    let draft = seller.create_invoice(draft_body).await;
    assert_eq!(draft["status"], "DRAFT");
    buyer
        .get(&format!("/api/v1/storage/{}", id(&in_draft)))
        .await
        .err(404, "NOT_FOUND");
    buyer
        .get(&format!("/api/v1/storage/{}/metadata", id(&in_draft)))
        .await
        .err(404, "NOT_FOUND");

    // PATCH: own files only.
    let path = format!("/api/v1/invoices/{}", id(&draft));
    seller
        .patch(&path, json!({ "attachments": [id(&buyers_own)] }))
        .await
        .err(404, "NOT_FOUND");
    let patched = seller
        .patch(
            &path,
            json!({ "attachments": [id(&in_draft), id(&private)] }),
        )
        .await
        .ok();
    assert_eq!(patched["attachments"], json!([id(&in_draft), id(&private)]));
    buyer
        .get(&format!("/api/v1/storage/{}", id(&private)))
        .await
        .err(404, "NOT_FOUND");
    seller
        .patch(&path, json!({ "attachments": [id(&in_draft)] }))
        .await
        .ok();

    // Everything else of the seller's is invisible to the buyer and to strangers.
    for f in [&private, &loose] {
        buyer
            .get(&format!("/api/v1/storage/{}", id(f)))
            .await
            .err(404, "NOT_FOUND");
        buyer
            .get(&format!("/api/v1/storage/{}/metadata", id(f)))
            .await
            .err(404, "NOT_FOUND");
    }
    for f in [&attached, &private, &in_draft, &loose, &buyers_own] {
        stranger
            .get(&format!("/api/v1/storage/{}", id(f)))
            .await
            .err(404, "NOT_FOUND");
        stranger
            .get(&format!("/api/v1/storage/{}/metadata", id(f)))
            .await
            .err(404, "NOT_FOUND");
    }
    seller
        .get(&format!("/api/v1/storage/{}", id(&buyers_own)))
        .await
        .err(404, "NOT_FOUND");
    let buyer_list: Vec<String> = buyer
        .walk("/api/v1/storage", 50)
        .await
        .iter()
        .map(|f| s(&f["id"]))
        .collect();
    assert_eq!(
        buyer_list,
        vec![id(&buyers_own)],
        "the buyer lists only its own files"
    );

    // Deleting: refused for the submitted invoice's attachment (by its owner;
    // the buyer cannot even see it as its own), allowed for a loose file.
    let on_disk = files_under(&files_root(&app)).len();
    let r = seller
        .delete(&format!("/api/v1/storage/{}", id(&attached)))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    r.client_error();
    buyer
        .delete(&format!("/api/v1/storage/{}", id(&attached)))
        .await
        .err(404, "NOT_FOUND");
    check_download(buyer, &attached, &bytes("attached")).await;
    check_download(seller, &attached, &bytes("attached")).await;

    seller
        .delete(&format!("/api/v1/storage/{}", id(&loose)))
        .await
        .ok();
    seller
        .get(&format!("/api/v1/storage/{}", id(&loose)))
        .await
        .err(404, "NOT_FOUND");
    seller
        .get(&format!("/api/v1/storage/{}/metadata", id(&loose)))
        .await
        .err(404, "NOT_FOUND");
    seller
        .delete(&format!("/api/v1/storage/{}", id(&loose)))
        .await
        .err(404, "NOT_FOUND");
    let listed: Vec<String> = seller
        .walk("/api/v1/storage", 50)
        .await
        .iter()
        .map(|f| s(&f["id"]))
        .collect();
    assert!(
        !listed.contains(&id(&loose)) && listed.contains(&id(&attached)),
        "{listed:?}"
    );
    assert_eq!(
        files_under(&files_root(&app)).len(),
        on_disk - 1,
        "the bytes are gone too"
    );

    // Once the draft is submitted its attachment is the buyer's to read and
    // no longer deletable.
    seller.act(&id(&draft), "submit", json!({})).await.ok();
    check_download(buyer, &in_draft, &bytes("in-draft")).await;
    let r = seller
        .delete(&format!("/api/v1/storage/{}", id(&in_draft)))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test]
async fn a_multipart_body_without_a_file_part_is_refused() {
    let app = spawn_app().await;
    let a = app.create_org("Forms Ltd").await;
    let boundary = "b0undary";
    let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}--\r\n");
    let ct = format!("multipart/form-data; boundary={boundary}");
    a.send(
        Method::POST,
        "/api/v1/storage",
        &[("content-type", &ct)],
        Some(body.into_bytes()),
    )
    .await
    .err(400, "VALIDATION_ERROR");
    let (ct, body) = multipart("filename=\"x.txt\"", None, b"abc");
    let truncated = body[..body.len() - 10].to_vec();
    a.send(
        Method::POST,
        "/api/v1/storage",
        &[("content-type", &ct)],
        Some(truncated),
    )
    .await
    .err(400, "VALIDATION_ERROR");
    assert!(files_under(&files_root(&app)).is_empty(), "nothing stored");
    assert!(a.walk("/api/v1/storage", 50).await.is_empty());
}

/// A `Content-Type` is kept with the file and served back, so it must be a
/// media type of bounded size: a 60 KB header value, or one with a control
/// character, is refused (400) and nothing is stored.
#[tokio::test]
async fn content_types_that_are_not_bounded_media_types_are_refused() {
    let app = spawn_app().await;
    let a = app.create_org("Types Ltd").await;
    let huge = format!("application/{}", "x".repeat(60_000));
    for ct in [huge.as_str(), "pdf", "text/plain;\tx=1", "application/"] {
        upload_raw(&a, "a.bin", Some(ct), b"abc")
            .await
            .err(400, "VALIDATION_ERROR");
    }
    upload_multipart(&a, "b.bin", Some(&huge), b"abc")
        .await
        .err(400, "VALIDATION_ERROR");
    assert!(files_under(&files_root(&app)).is_empty());
    let meta = upload_raw(&a, "c.csv", Some("text/csv; charset=utf-8"), b"a,b")
        .await
        .ok();
    assert_eq!(meta["contentType"], "text/csv; charset=utf-8");
}
