//! Secrets at rest: API-key secrets are kept only as hashes, webhook signing
//! secrets and kept answers that show a secret only sealed with the master
//! key. Nothing the server writes under its data directory holds one in
//! clear, yet a retry still gets the secret it lost, across a restart.

use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;

/// The files under `dir` holding `needle`'s bytes.
fn holding(dir: &Path, needle: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "master.key"))
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_still_answer_a_retry() {
    let mut app = spawn_app().await;
    let org_request = rid();
    let created = app
        .admin
        .post(
            "/api/v1/admin/organizations",
            json!({ "name": "Sealed", "requestId": org_request }),
        )
        .await
        .ok();
    let org = app.create_org("Other").await;
    let org_secret = s(&created["apiKey"]["secret"]);

    let key_request = rid();
    let key_body =
        json!({ "name": "ci", "permissions": ["invoices:read"], "requestId": key_request });
    let key = org
        .post("/api/v1/settings/api-keys", key_body.clone())
        .await
        .ok();
    let key_secret = s(&key["secret"]);

    let hook_request = rid();
    let hook_body = json!({
        "url": "https://93.184.216.34/hooks/sealed",
        "events": ["payment.settled"],
        "requestId": hook_request,
    });
    let hook = org
        .post("/api/v1/settings/webhooks", hook_body.clone())
        .await
        .ok();
    let hook_id = s(&hook["id"]);
    let rotate_request = rid();
    let rotate_path = format!("/api/v1/settings/webhooks/{hook_id}/rotate-secret");
    let rotate_body = json!({ "requestId": rotate_request });
    let rotated = org.post(&rotate_path, rotate_body.clone()).await.ok();
    let (first, second) = (s(&hook["secret"]), s(&rotated["secret"]));
    assert!(first.starts_with("whsec_") && second.starts_with("whsec_") && first != second);

    // What a secret must never be found as: itself, or (for signing
    // secrets) the key material after the prefix.
    let needles: Vec<String> = [&org_secret, &key_secret, &first, &second]
        .into_iter()
        .flat_map(|secret| {
            let material = secret
                .trim_start_matches("whsec_")
                .trim_start_matches("es_");
            [secret.clone(), material.to_owned()]
        })
        .collect();

    // The operator's event stream shows none of them.
    let events = app
        .admin
        .get("/api/v1/admin/events?after=0&limit=10000")
        .await
        .text();
    for needle in &needles {
        assert!(
            !events.contains(needle.as_str()),
            "the event stream shows {needle}"
        );
    }
    assert!(events.contains("\"secret\":\"[withheld]\""), "{events}");

    // A retry of each creation answers the same secret, before and after a
    // restart (the kept answers are sealed, and open with the same key).
    let retries = |app_org: Org, admin: Api| {
        let (org_request, key_body, hook_body, rotate_path, rotate_body) = (
            org_request.clone(),
            key_body.clone(),
            hook_body.clone(),
            rotate_path.clone(),
            rotate_body.clone(),
        );
        async move {
            let again = |r: Resp| {
                assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
                r.ok()
            };
            let o = again(
                admin
                    .post(
                        "/api/v1/admin/organizations",
                        json!({ "name": "Sealed", "requestId": org_request }),
                    )
                    .await,
            );
            let k = again(app_org.post("/api/v1/settings/api-keys", key_body).await);
            let h = again(app_org.post("/api/v1/settings/webhooks", hook_body).await);
            let r = again(app_org.post(&rotate_path, rotate_body).await);
            [
                o["apiKey"]["secret"].clone(),
                k["secret"].clone(),
                h["secret"].clone(),
                r["secret"].clone(),
            ]
        }
    };
    let expected: [Value; 4] = [
        json!(org_secret),
        json!(key_secret),
        json!(first),
        json!(second),
    ];
    assert_eq!(retries(org.clone(), app.admin.clone()).await, expected);
    app.restart().await;
    assert_eq!(retries(org.clone(), app.admin.clone()).await, expected);

    // After a clean stop (the write model snapshotted, everything flushed),
    // no file under the data directory holds a secret in clear.
    app.restart().await;
    let data = app.data_dir().join("data");
    assert!(data
        .join("write-model")
        .read_dir()
        .expect("snapshots")
        .next()
        .is_some());
    for needle in &needles {
        assert_eq!(
            holding(&data, needle),
            Vec::<String>::new(),
            "{needle} in clear"
        );
    }
}

#[tokio::test]
async fn a_server_refuses_to_start_with_another_master_key_than_its_data_was_sealed_with() {
    let mut app = spawn_app().await;
    let org = app.create_org("Keyed").await;
    org.post(
        "/api/v1/settings/webhooks",
        json!({ "url": "https://93.184.216.34/hooks/k", "events": ["payment.settled"] }),
    )
    .await
    .ok();
    let data = app.data_dir().join("data");
    let key_file = std::fs::read_to_string(data.join("master.key")).expect("the key file");
    assert_eq!(key_file.trim().len(), 64);
    app.kill_now();

    let started = std::process::Command::new(env!("CARGO_BIN_EXE_expereon-under-test"))
        .arg("serve")
        .env("EXPEREON_DATA_DIR", &data)
        .env("EXPEREON_LISTEN", "127.0.0.1:0")
        .env("EXPEREON_MASTER_KEY", "07".repeat(32))
        .env_remove("EXPEREON_ADMIN_TOKEN")
        .output()
        .expect("running the server");
    assert!(!started.status.success());
    let said = String::from_utf8_lossy(&started.stderr);
    assert!(said.contains("sealed with master key"), "{said}");

    // The right key, given in the environment instead of the file, starts.
    std::fs::remove_file(data.join("master.key")).expect("removing the key file");
    app.set_env("EXPEREON_MASTER_KEY", key_file.trim());
    app.start_again().await;
    let hooks = org.get("/api/v1/settings/webhooks").await.ok();
    assert_eq!(hooks["data"].as_array().map(Vec::len), Some(1));
}
