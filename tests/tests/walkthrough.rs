//! The README's walkthrough, run as written (curl, jq and bash) against a
//! fresh server, so the documentation cannot drift from the product.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use serde_json::Value;
use std::process::Command;

fn walkthrough_script() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split("## Walkthrough")
        .nth(1)
        .expect("a Walkthrough section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .expect("a sh block")
        .split("```")
        .next()
        .expect("its end");
    block.to_owned()
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written() {
    let app = support::spawn_app().await;
    let script = walkthrough_script()
        .replace("http://127.0.0.1:8080", &app.base)
        .replace(
            "X-Admin-Token: change-me-to-32-or-more-random-characters",
            &format!("X-Admin-Token: {}", support::ADMIN_TOKEN),
        );
    let out_dir = tempfile::tempdir().expect("tempdir");
    let full = format!(
        "set -euo pipefail\n{script}\n\
         curl -sf $API/treasury/me/balances \"${{SELLER[@]}}\" > seller.json\n\
         curl -sf $API/treasury/me/balances \"${{BUYER[@]}}\" > buyer.json\n\
         curl -sf $API/invoices/$INV \"${{BUYER[@]}}\" > invoice.json\n"
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&full)
        .current_dir(out_dir.path())
        .output()
        .expect("running bash");
    assert!(
        output.status.success(),
        "walkthrough failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out_dir.path().join(name)).expect("output file"))
            .expect("json")
    };
    let usd_total = |v: &Value| -> String {
        v["data"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|b| b["currency"] == "USD")
            .map(|b| b["total"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    // 1.5 × 0.99 = 1.485 → 1.49; tax 50 % of 1.49 = 0.745 → 0.75; total 2.24.
    assert_eq!(usd_total(&read("seller.json")), "2.24");
    assert_eq!(usd_total(&read("buyer.json")), "997.76");
    let invoice = read("invoice.json");
    assert_eq!(invoice["status"], "SETTLED");
    assert_eq!(invoice["total"], "2.24");
}
