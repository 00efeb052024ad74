//! `crm seed` produces a shop the rest of the system works on: totals match lines,
//! numbers continue, phones are found in any form, masters see only their own orders.

use std::process::Command;

use crm::model::Role;
use serde_json::json;

use crate::core::{new_order, Api};
use crate::support::*;

fn crm(dir: &std::path::Path) -> Command {
    let mut c = Command::new(crm_bin());
    let cfg = dir.join("test.toml");
    std::fs::write(
        &cfg,
        "[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
    )
    .unwrap();
    c.arg("--data-dir").arg(dir).arg("--config").arg(cfg);
    c.env_remove("CRM_HTTP")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_SIP");
    c
}

#[tokio::test]
async fn seeded_shop_is_consistent_and_usable() {
    let dir = tempfile::tempdir().unwrap();
    for m in ["usta1", "usta2"] {
        let mut add = crm(dir.path())
            .args(["user", "add", m, "--role", "master", "--password-stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        add.stdin
            .take()
            .unwrap()
            .write_all(b"usta-pass-123\n")
            .unwrap();
        assert!(add.wait().unwrap().success());
    }
    let out = crm(dir.path())
        .args(["seed", "--customers", "300", "--orders", "2000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("seeded 300 customers and 2000 orders"),
        "{stdout}"
    );

    let app = TestApp::spawn_config(test_config(dir.path()), dir).await;
    app.add_user("admin", Role::Admin, ADMIN_PASSWORD).await;
    let admin = Api::of(&app, "admin").await;

    let (_, all) = admin.get("/api/v1/orders?limit=1").await;
    assert_eq!(all["total"], 2000);
    // Old orders are mostly handed back and paid in full; nothing owes a negative sum.
    let (_, closed) = admin.get("/api/v1/orders?group=closed&limit=500").await;
    assert!(closed["total"].as_i64().unwrap() > 1000);
    for o in closed["items"].as_array().unwrap() {
        let (total, paid) = (o["total"].as_i64().unwrap(), o["paid"].as_i64().unwrap());
        assert!(paid >= 0 && total >= 0, "{o}");
        assert!(paid <= total, "nobody paid more than the total: {o}");
    }
    // An order's lines add up to its total.
    for o in closed["items"].as_array().unwrap().iter().take(20) {
        let (_, v) = admin.get(&format!("/api/v1/orders/{}", o["id"])).await;
        let sum: i64 = v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["amount"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, o["total"].as_i64().unwrap(), "{v}");
    }
    // A seeded customer's phone, typed as staff type it, finds them.
    let (_, customers) = admin.get("/api/v1/customers?limit=5").await;
    let c = &customers["items"][0];
    let e164 = c["phones"][0].as_str().unwrap();
    let national = &e164[4..];
    let typed = format!(
        "8 ({}) {}-{}-{}",
        &national[..2],
        &national[2..5],
        &national[5..7],
        &national[7..]
    );
    let (s, found) = admin
        .get(&format!(
            "/api/v1/customers/lookup?phone={}",
            crate::core::urlencode(&typed)
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(found[0]["id"], c["id"]);
    let (_, hits) = admin
        .get(&format!(
            "/api/v1/search?q={}",
            crate::core::urlencode(national)
        ))
        .await;
    assert_eq!(hits["customers"][0]["id"], c["id"], "{hits}");

    // A new order takes a number no seeded order has: the yearly counter moved on.
    let o = new_order(&admin, c["id"].as_i64().unwrap(), json!({})).await;
    let number = o["number"].as_str().unwrap();
    let (_, hits) = admin
        .get(&format!(
            "/api/v1/search?q={}",
            crate::core::urlencode(number)
        ))
        .await;
    let same: Vec<_> = hits["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["number"] == number)
        .collect();
    assert_eq!(same.len(), 1, "{number} is unique: {hits}");
    assert_eq!(same[0]["id"], o["id"]);

    // Seeded orders belong to the seeded masters, who see only their own.
    let m = Api::of(&app, "usta1").await;
    let (_, mine) = m.get("/api/v1/orders?limit=500").await;
    let mine_total = mine["total"].as_i64().unwrap();
    assert!(mine_total > 0 && mine_total < 2000, "{mine_total}");
    let me = mine["items"][0]["master_id"].clone();
    assert!(mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["master_id"] == me));
}
