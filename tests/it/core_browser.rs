//! In a real browser (headless Chromium): the front desk creates a customer, takes an
//! order for them found by the phone typed another way, and prints the receipt with its
//! QR code.

use fantoccini::Locator;

use crate::browser::Browser;
use crate::support::*;

#[tokio::test]
async fn desk_creates_a_customer_and_an_order_and_prints_the_receipt_with_a_qr_code() {
    let app = TestApp::spawn().await;
    crate::core::shop(&app).await;
    let b = Browser::start().await;
    b.sign_in(&app, "oper", "oper-pass-1").await;

    // A new customer through the form.
    b.client.goto(&app.url("/customers/new")).await.unwrap();
    b.fill("#name", "Shahnoza Yusupova").await;
    b.fill("#phone1", "8 (93) 555-12-34").await;
    b.click("form[action='/customers'] button[type=submit]")
        .await;
    assert!(b.wait_text("#customer-name", "Shahnoza Yusupova").await);

    // The intake form finds her by the same number typed differently.
    b.client
        .goto(&app.url("/orders/new?phone=%2B998-93-555-12-34"))
        .await
        .unwrap();
    assert!(
        b.wait_text(".known-customer", "Shahnoza Yusupova").await,
        "the customer is recognised by phone"
    );
    let cat = b
        .client
        .wait()
        .for_element(Locator::Css("#device_category"))
        .await
        .unwrap();
    cat.select_by_value("phone").await.unwrap();
    b.fill("#brand", "Xiaomi").await;
    b.fill("#model", "Redmi Note 12").await;
    b.fill("#serial", "356789104599999").await;
    b.fill("#complaint", "Zaryad olmayapti").await;
    b.fill("#prepayment", "100 000").await;
    b.click("#new-order button[type=submit]").await;
    let Ok(el) = b
        .client
        .wait()
        .for_element(Locator::Css("#order-number"))
        .await
    else {
        let page = b.client.source().await.unwrap();
        panic!("no order page after submitting the intake form: {page}");
    };
    let number = el.text().await.unwrap();
    assert!(number.starts_with("RM"), "{number}");

    // The receipt: shop header, the order, and a QR code drawn as SVG.
    let receipt = b.attr("a[href$='/receipt']", "href").await.unwrap();
    b.client.goto(&app.url(&receipt)).await.unwrap();
    let qr = b
        .client
        .wait()
        .for_element(Locator::Css("#order-qr svg"))
        .await
        .expect("QR code on the receipt");
    let (w, h) = {
        let r = qr.rectangle().await.unwrap();
        (r.2, r.3)
    };
    assert!(
        w > 40.0 && h > 40.0,
        "the QR code is drawn at a scannable size: {w}x{h}"
    );
    let body = b
        .client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(&number) && body.contains("Shahnoza Yusupova"),
        "{body}"
    );
    assert!(body.contains("100 000"), "the prepayment is on the receipt");
    b.close().await;
}

/// The map page in a real browser while the tile server cannot be reached: Leaflet
/// starts and places the markers, and the list of branches with their addresses and
/// coordinates is there to read.
#[tokio::test]
async fn the_map_page_lists_the_branches_when_tiles_cannot_load() {
    let app = TestApp::spawn().await;
    let (admin, ..) = crate::core::shop(&app).await;
    for (name, addr, lat, lon) in [
        ("Chilonzor", "Toshkent, Chilonzor 9", 41.2756, 69.2034),
        ("Yunusobod", "Toshkent, Yunusobod 4", 41.365, 69.289),
    ] {
        let (s, v) = admin
            .post(
                "/api/v1/branches",
                serde_json::json!({"name": name, "address": addr, "lat": lat, "lon": lon}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    // A port nothing listens on: every tile request fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tiles = format!(
        "http://{}/{{z}}/{{x}}/{{y}}.png",
        dead.local_addr().unwrap()
    );
    drop(dead);
    let s = app.login_admin().await;
    let r = s
        .post_form(
            "/settings/shop",
            &[
                ("name", "Mobil Servis"),
                ("address", ""),
                ("phone", ""),
                ("hours", "9-18"),
                ("terms", "x"),
                ("order_prefix", "RM"),
                ("currency", "UZS"),
                ("default_country", "998"),
                ("map_tiles", &tiles),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);

    let b = Browser::start().await;
    b.sign_in(&app, "usta1", "usta-pass-1").await;
    b.client.goto(&app.url("/map")).await.unwrap();
    assert!(b.wait_text("#branch-list", "Toshkent, Chilonzor 9").await);
    assert!(b.wait_text("#branch-list", "41.365000, 69.289000").await);
    assert!(b.wait_text("#branch-list", "Yunusobod").await);
    // Leaflet ran (vendored, same origin) and put a marker per branch.
    let ready = eventually(std::time::Duration::from_secs(10), || async {
        let el = b.client.find(Locator::Css("#branch-map")).await.ok()?;
        let n = el.attr("data-ready").await.ok()??;
        (n == "2").then_some(())
    })
    .await;
    assert!(ready.is_some(), "the map script placed both markers");
    let markers = b
        .client
        .find_all(Locator::Css("#branch-map .leaflet-marker-icon"))
        .await
        .unwrap();
    assert_eq!(markers.len(), 2);
    b.close().await;
}
