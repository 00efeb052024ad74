//! The dashboard's figures and SVG charts, and `crm seed` producing a shop the rest of the
//! system works on (numbers continue, phones are found in any form, masters' scope).

use std::process::Command;

use crm::model::Role;
use serde_json::json;

use crate::core::{new_customer, new_order, shop, Api};
use crate::support::*;

#[tokio::test]
async fn dashboard_counts_orders_money_and_masters_for_a_range_and_hides_them_from_others() {
    let app = TestApp::spawn().await;
    let (admin, oper, _m1api, _m2api, m1, _m2) = shop(&app).await;
    let c = new_customer(&oper, "Aziz Karimov", "90 111 22 33").await;
    let a = new_order(&oper, c, json!({"prepayment": 100000, "master_id": m1})).await;
    new_order(&oper, c, json!({})).await;
    let id = a["id"].as_i64().unwrap();
    // Work it through to delivered with one line and full payment.
    let (s, v) = admin
        .post(
            &format!("/api/v1/orders/{id}/lines"),
            json!({"kind": "labour", "name": "Ekran almashtirish", "qty": 1, "unit_price": 1250000}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for to in ["diagnostics", "in_repair", "ready"] {
        let (_, o) = admin.get(&format!("/api/v1/orders/{id}")).await;
        let version = o["order"]["version"].as_i64().unwrap();
        let (s, v) = admin
            .post(
                &format!("/api/v1/orders/{id}/status"),
                json!({"to": to, "version": version}),
            )
            .await;
        assert_eq!(s, 200, "{to}: {v}");
    }
    let (s, v) = admin
        .post(
            &format!("/api/v1/orders/{id}/payments"),
            json!({"kind": "payment", "amount": 1150000, "method": "card"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, o) = admin.get(&format!("/api/v1/orders/{id}")).await;
    let (s, v) = admin
        .post(
            &format!("/api/v1/orders/{id}/status"),
            json!({"to": "delivered", "version": o["order"]["version"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let boss = app.login_admin().await;
    let page = boss.get("/").await.text().await.unwrap();
    assert!(page.contains("id=\"dashboard-title\""));
    let stat = |id: &str| -> String {
        let marker = format!("id=\"{id}\">");
        let i = page.find(&marker).unwrap_or_else(|| panic!("no #{id}")) + marker.len();
        page[i..i + page[i..].find('<').unwrap()].to_string()
    };
    assert_eq!(stat("dash-open"), "1", "one order still open");
    assert_eq!(stat("dash-intake"), "2");
    assert_eq!(
        stat("dash-revenue"),
        "1 250 000 so'm",
        "prepayment + payment"
    );
    for chart in [
        "chart-open",
        "chart-closed",
        "chart-intake",
        "chart-completed",
        "chart-revenue",
    ] {
        let i = page
            .find(&format!("id=\"{chart}\""))
            .unwrap_or_else(|| panic!("no {chart}"));
        assert!(page[i..].contains("<svg"), "{chart} is drawn as SVG");
    }
    assert!(
        !page.contains(" style="),
        "no inline style attributes (CSP)"
    );
    assert!(page.contains("1 250 000 so&#39;m") || page.contains("1 250 000 so'm"));
    // The master's closing shows in the per-master table.
    let masters = &page[page.find("id=\"dash-masters\"").unwrap()..];
    assert!(masters.contains("usta1"));

    // A range that ends before it starts, or is too long, is refused with a message.
    let bad = boss
        .get("/?from=2026-05-01&to=2026-04-01")
        .await
        .text()
        .await
        .unwrap();
    assert!(bad.contains("flash-error") && !bad.contains("id=\"reports\""));
    let long = boss
        .get("/?from=2020-01-01&to=2026-01-01")
        .await
        .text()
        .await
        .unwrap();
    assert!(long.contains("at most 400 days"));
    // A range in the past has nothing in it.
    let past = boss
        .get("/?from=2020-01-01&to=2020-01-31&bucket=week")
        .await
        .text()
        .await
        .unwrap();
    assert!(past.contains("id=\"dash-intake\">0<"));

    // Operators and masters see the dashboard without the shop's figures.
    for (user, pass) in [("oper", "oper-pass-1"), ("usta1", "usta-pass-1")] {
        let s = app.login(user, pass).await;
        let p = s.get("/").await.text().await.unwrap();
        assert!(p.contains("id=\"dashboard-title\""));
        assert!(!p.contains("id=\"reports\""), "{user} sees no revenue");
    }
    let _ = admin;
}

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
    let out = crm(dir.path())
        .args([
            "seed",
            "--customers",
            "300",
            "--orders",
            "2000",
            "--masters",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("added 300 customers and 2000 orders"),
        "{stdout}"
    );
    assert!(stdout.contains("usta1, usta2"), "{stdout}");

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
        if o["status_code"] == "delivered" {
            assert_eq!(paid, total, "delivered orders are paid: {o}");
        }
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

    // A new order continues this year's sequence instead of reusing a seeded number.
    let (_, newest) = admin.get("/api/v1/orders?limit=1").await;
    let last: String = newest["items"][0]["number"].as_str().unwrap().into();
    let o = new_order(&admin, c["id"].as_i64().unwrap(), json!({})).await;
    let next: String = o["number"].as_str().unwrap().into();
    let seq = |n: &str| n.rsplit('-').next().unwrap().parse::<i64>().unwrap();
    assert_eq!(
        &next[..next.len() - 5],
        &last[..last.len() - 5],
        "same year prefix"
    );
    assert_eq!(seq(&next), seq(&last) + 1);

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
