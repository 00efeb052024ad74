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

/// Revenue on the dashboard per day, week and month, against payments at known dates
/// (refunds subtract; payments outside the range do not count).
#[tokio::test]
async fn revenue_is_grouped_per_day_week_and_month() {
    let app = TestApp::spawn().await;
    let (admin, oper, ..) = crate::core::shop(&app).await;
    let cu = crate::core::new_customer(&oper, "Aziz Karimov", "90 111 22 33").await;
    let order = new_order(&admin, cu, json!({})).await["id"]
        .as_i64()
        .unwrap();
    // Noon of a date by the shop clock (the default zone, Asia/Tashkent).
    let clock = crm::domain::clock::ShopClock::default();
    let at = |m: i8, d: i8| clock.at_local(jiff::civil::date(2026, m, d), 12 * 60);
    let payments = [
        ("payment", 100_000, at(1, 28)),
        ("payment", 50_000, at(2, 1)), // Sunday: the week of Monday 26 January
        ("payment", 7_000, at(2, 2)),  // Monday
        ("refund", 20_000, at(3, 3)),
        ("payment", 999_000, at(3, 20)), // after the range
    ];
    app.running()
        .ctx
        .db
        .write(move |c| {
            for (kind, amount, t) in payments {
                c.execute(
                    "INSERT INTO payments (order_id, kind, amount, created_at) VALUES (?1, ?2, ?3, ?4)",
                    crm::db::rusqlite::params![order, kind, amount, t],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let s = app.login_admin().await;
    let bars = |html: &str| -> Vec<String> {
        let chart = &html[html.find("id=\"chart-revenue\"").unwrap()..];
        let chart = &chart[..chart.find("</svg>").unwrap()];
        chart
            .split("<rect")
            .skip(1)
            .map(|r| {
                let t = &r[r.find("<title>").unwrap() + 7..];
                t[..t.find("</title>").unwrap()].to_string()
            })
            .collect()
    };
    let page = |per: &'static str| {
        let s = &s;
        async move {
            let r = s
                .get(&format!("/?from=2026-01-28&to=2026-03-05&per={per}"))
                .await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    // Bars carry the amount as money in their tooltip (issue 20).
    let weeks = page("week").await;
    assert!(weeks.contains("data-period=\"week\""));
    assert_eq!(
        bars(&weeks),
        vec![
            "26.01: 150 000 so'm",
            "02.02: 7 000 so'm",
            "09.02: 0 so'm",
            "16.02: 0 so'm",
            "23.02: 0 so'm",
            "02.03: -20 000 so'm"
        ]
    );
    assert!(
        weeks.contains("<span id=\"revenue-total\">137 000 so'm</span>"),
        "total"
    );
    let months = page("month").await;
    assert_eq!(
        bars(&months),
        vec![
            "01.2026: 100 000 so'm",
            "02.2026: 57 000 so'm",
            "03.2026: -20 000 so'm"
        ]
    );
    let days = bars(&page("day").await);
    assert_eq!(days.len(), 37);
    assert_eq!(days[0], "28.01: 100 000 so'm");
    assert_eq!(days[4], "01.02: 50 000 so'm");
    assert_eq!(days[5], "02.02: 7 000 so'm");
    // An unknown period is the default (per day), not an error.
    assert_eq!(bars(&page("year").await).len(), 37);
}
