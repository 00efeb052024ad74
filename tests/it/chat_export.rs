//! Issue 17: a conversation exported as a PDF (Cyrillic and Uzbek Latin text must come
//! out of `pdftotext`), and an order's receipt as a PDF for a reply.

use crm::domain::accounts::actor_of;
use crm::domain::conversations::ReplyInput;
use crm::domain::customers::CustomerInput;
use crm::domain::Actor;
use crm::model::Role;

use crate::support::*;

const RU: &str = "Здравствуйте, когда будет готов мой телефон?";
const UZ_CYRL: &str = "Телефоним тайёрми? Ўзингиз қўнғироқ қилинг.";
const UZ_LATN: &str = "Salom! G‘ildirak o‘zgardimi? Ma’lumot bering, taʼmir qachon?";
const REPLY: &str = "Ertaga soat 10 da tayyor bo‘ladi, ekran o‘zgartirildi.";

pub async fn actor(app: &TestApp, user: &str) -> Actor {
    actor_of(
        &app.running()
            .ctx
            .accounts
            .user_by_username(user)
            .await
            .unwrap(),
    )
}

/// Text of a PDF as `pdftotext` reads it (Debian package poppler-utils).
pub fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext runs (apt-get install poppler-utils)");
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A Telegram thread of a known customer with `extra` filler messages after the real ones.
async fn thread_with_messages(app: &TestApp, extra: usize) -> (i64, i64) {
    let ctx = &app.running().ctx;
    let admin = actor(app, "admin").await;
    let customer = ctx
        .customers
        .create(
            &admin,
            CustomerInput {
                name: "Ўлмас Қодиров".into(),
                phones: vec!["+998901234567".into()],
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    let conv = ctx
        .db
        .write(move |c| {
            c.execute(
                "INSERT INTO conversations (channel, address, customer_id, title, last_message_at,
                                            opened_at, created_at)
                 VALUES ('telegram', '777001', ?1, 'Ulmas', 1764662400, 1764662400, 1764662400)",
                [customer],
            )?;
            let id = c.last_insert_rowid();
            let mut at = 1_764_662_400i64;
            for body in [RU, UZ_CYRL, UZ_LATN] {
                at += 60;
                c.execute(
                    "INSERT INTO conversation_messages (conversation_id, direction, kind, body, created_at)
                     VALUES (?1, 'in', 'text', ?2, ?3)",
                    rusqlite::params![id, body, at],
                )?;
            }
            c.execute(
                "INSERT INTO conversation_messages (conversation_id, direction, kind, body, file_name,
                     file_mime, file_size, file_state, created_at)
                 VALUES (?1, 'in', 'photo', '', 'singan-ekran.jpg', 'image/jpeg', 48000, 'stored', ?2)",
                rusqlite::params![id, at + 30],
            )?;
            for i in 0..extra {
                c.execute(
                    "INSERT INTO conversation_messages (conversation_id, direction, kind, body, created_at)
                     VALUES (?1, 'in', 'text', ?2, ?3)",
                    rusqlite::params![id, format!("filler {i}"), at + 60 + i as i64],
                )?;
            }
            Ok(id)
        })
        .await
        .unwrap();
    ctx.conversations
        .reply(
            &admin,
            conv,
            ReplyInput {
                text: REPLY.into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    (conv, customer)
}

#[tokio::test]
async fn a_conversation_exports_as_a_pdf_with_cyrillic_and_uzbek_latin_text() {
    let app = TestApp::spawn().await;
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    app.add_user("usta", Role::Master, "usta-pass-1").await;
    // 250 fillers: the export reads the thread over several of the inbox's pages, and the
    // PDF runs over several pages of its own.
    let (conv, _) = thread_with_messages(&app, 250).await;

    let oper = app.login("oper", "oper-pass-1").await;
    let resp = oper
        .client
        .get(oper.url(&format!("/inbox/{conv}/export.pdf")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("conversation-{conv}.pdf")));
    let pdf = resp.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    // The font is subset, not embedded whole (DejaVu Sans is ~740 KB).
    assert!(pdf.len() < 200_000, "{} bytes", pdf.len());
    let text = pdf_text(&pdf);
    for s in [
        RU,
        UZ_CYRL,
        UZ_LATN,
        REPLY,
        "singan-ekran.jpg",
        "Ўлмас Қодиров",
        "filler 0",
        "filler 249",
    ] {
        assert!(
            text.contains(s),
            "the PDF lacks {s:?}:\n{}",
            &text[..text.len().min(2000)]
        );
    }
    // Author and direction, time on the shop clock (Asia/Tashkent, UTC+5: 1764662460 is
    // 02.12.2025 13:01 there).
    assert!(text.contains("02.12.2025 13:01"), "{}", &text[..1500]);
    assert!(text.contains("admin name"), "the agent's name");
    assert!(text.contains("Customer"));
    let pages = text.matches('\u{c}').count();
    assert!(pages >= 5, "a long thread runs over pages: {pages}");

    // A master may not export (403); nobody signed in is sent to sign in; a thread that
    // does not exist is 404.
    let usta = app.login("usta", "usta-pass-1").await;
    let r = usta
        .client
        .get(usta.url(&format!("/inbox/{conv}/export.pdf")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client()
        .get(app.url(&format!("/inbox/{conv}/export.pdf")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = oper
        .client
        .get(oper.url("/inbox/999999/export.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = oper
        .client
        .get(oper.url("/inbox/abc/export.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_export_speaks_the_readers_language_and_refuses_without_the_permission() {
    let app = TestApp::spawn().await;
    let (conv, _) = thread_with_messages(&app, 0).await;
    let ctx = &app.running().ctx;
    let admin = actor(&app, "admin").await;
    let pdf = crm::domain::documents::conversation_pdf(
        &ctx.conversations,
        &ctx.db,
        ctx.clock.get(),
        &admin,
        conv,
        crm::model::Language::UzCyrl,
    )
    .await
    .unwrap();
    let text = pdf_text(&pdf);
    assert!(text.contains(&format!("Ёзишма №{conv}")), "{text}");
    assert!(text.contains("Мижоз"));
    // A master (no export permission) is refused by the domain too, not only the route.
    app.add_user("usta", Role::Master, "usta-pass-1").await;
    let usta = actor(&app, "usta").await;
    let e = crm::domain::documents::conversation_pdf(
        &ctx.conversations,
        &ctx.db,
        ctx.clock.get(),
        &usta,
        conv,
        crm::model::Language::En,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, crm::domain::DomainError::Forbidden), "{e:?}");
}

#[tokio::test]
async fn an_orders_receipt_renders_as_a_pdf_for_a_reply() {
    let app = TestApp::spawn().await;
    let ctx = &app.running().ctx;
    let admin = actor(&app, "admin").await;
    let (_, customer) = thread_with_messages(&app, 0).await;
    let order = ctx
        .orders
        .create(
            &admin,
            serde_json::from_value(serde_json::json!({
                "customer_id": customer,
                "device_category": "phone",
                "brand": "Samsung",
                "model": "Galaxy A54",
                "complaint": "Ekran singan, o‘zi o‘chib qoladi; экран разбит",
                "estimate": 450000
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let pdf = crm::domain::documents::receipt_pdf(
        &ctx.orders,
        &ctx.db,
        ctx.clock.get(),
        &admin,
        order.id,
        crm::model::Language::UzLatn,
    )
    .await
    .unwrap();
    let text = pdf_text(&pdf);
    for s in [
        order.number.as_str(),
        "Ўлмас Қодиров",
        "Samsung Galaxy A54",
        "Ekran singan, o‘zi o‘chib qoladi; экран разбит",
        "450 000",
    ] {
        assert!(text.contains(s), "the receipt lacks {s:?}:\n{text}");
    }
    // The bytes are what an agent's reply takes as a file: sniffed as a PDF document.
    assert_eq!(
        crm::domain::conversations::sniff_file(&pdf).map(|s| s.0),
        Some("application/pdf")
    );
    // Somebody who may not see the order gets nothing.
    app.add_user("usta", Role::Master, "usta-pass-1").await;
    let usta = actor(&app, "usta").await;
    assert!(crm::domain::documents::receipt_pdf(
        &ctx.orders,
        &ctx.db,
        ctx.clock.get(),
        &usta,
        order.id,
        crm::model::Language::En,
    )
    .await
    .is_err());
}
