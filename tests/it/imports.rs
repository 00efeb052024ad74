//! Customer import (issue 18) against the real server: CSV in UTF-8, Windows-1251 and
//! UTF-16, Excel workbooks; the preview's verdicts, the merge by phone, the undo; files
//! that must be refused; concurrent imports; the CLI on a running server; and the
//! customer fields that came with it (kind, company, tags, opt-in, archive).

use std::io::Write;

use crm::model::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::core::{new_customer, Api};
use crate::support::*;

pub async fn import(api: &Api, query: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = api
        .c
        .post(format!("{}/api/v1/imports/customers{query}", api.base))
        .bearer_auth(&api.token)
        .header("accept-language", "en")
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn lookup(api: &Api, phone: &str) -> Vec<Value> {
    let (s, v) = api
        .get(&format!(
            "/api/v1/customers/lookup?phone={}",
            phone.replace('+', "%2B")
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

async fn customer_count(app: &TestApp) -> i64 {
    app.running()
        .ctx
        .db
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM customers WHERE merged_into IS NULL",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap()
}

/// A minimal xlsx: one sheet of inline strings, numbers, a formula with its stored value
/// and a formula error.
fn xlsx(rows: &[Vec<XCell>]) -> Vec<u8> {
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    for (i, r) in rows.iter().enumerate() {
        sheet.push_str(&format!(r#"<row r="{}">"#, i + 1));
        for (j, c) in r.iter().enumerate() {
            let at = format!("{}{}", (b'A' + j as u8) as char, i + 1);
            let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
            sheet.push_str(&match c {
                XCell::S(s) => format!(
                    r#"<c r="{at}" t="inlineStr"><is><t>{}</t></is></c>"#,
                    esc(s)
                ),
                XCell::N(n) => format!(r#"<c r="{at}"><v>{n}</v></c>"#),
                XCell::F(f, v) => format!(
                    r#"<c r="{at}" t="str"><f>{}</f><v>{}</v></c>"#,
                    esc(f),
                    esc(v)
                ),
                XCell::E(e) => format!(r#"<c r="{at}" t="e"><v>{e}</v></c>"#),
            });
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    let files = [
        ("[Content_Types].xml", r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_string()),
        ("_rels/.rels", r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_string()),
        ("xl/workbook.xml", r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Mijozlar" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_string()),
        ("xl/_rels/workbook.xml.rels", r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_string()),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opt = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in files {
            z.start_file(name, opt).unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

enum XCell {
    S(&'static str),
    N(f64),
    /// A formula and its stored value.
    F(&'static str, &'static str),
    /// A formula's error value.
    E(&'static str),
}

/// The page flow: upload, preview with every verdict, import, merge, undo.
#[tokio::test]
async fn csv_upload_previews_imports_merges_and_undoes() {
    let app = TestApp::spawn().await;
    let admin = app.login_admin().await;
    let api = Api::of(&app, "admin").await;
    let bobur = new_customer(&api, "Bobur Aliyev", "90 111 22 33").await;

    let csv = "Ф.И.О;Телефон;Компания;Теги;Примечание\n\
               Ўткир Қодиров;+998 (90) 123-45-67;;yangi;\n\
               Bobur A.;8 90 111 22 33;Artel;VIP;Doimiy mijoz\n\
               Ўткир;901234567, 91 765 43 21;;;\n\
               Noto'g'ri;12345;;;\n\
               \"=HYPERLINK(\"\"http://x\"\")\";93 000 00 01;;;\n";
    let part = reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("mijozlar.csv");
    let r = admin
        .client
        .post(admin.url(&format!("/imports?_csrf={}", admin.csrf)))
        .multipart(
            reqwest::multipart::Form::new()
                .text("encoding", "")
                .part("file", part),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let at = r.headers()["location"].to_str().unwrap().to_string();
    let id: i64 = at.trim_start_matches("/imports/").parse().unwrap();

    let page = admin.get(&at).await.text().await.unwrap();
    let count = |id: &str| -> String {
        let from = page.find(&format!("id=\"{id}\"")).expect(id);
        let rest = &page[from..];
        rest[rest.find('>').unwrap() + 1..rest.find('<').unwrap()].to_string()
    };
    assert_eq!(count("count-rows"), "5");
    assert_eq!(count("count-new"), "1");
    assert_eq!(count("count-match"), "1");
    assert_eq!(count("count-duplicate"), "1");
    assert_eq!(count("count-invalid"), "2");
    assert_eq!(page.matches("data-verdict=\"invalid\"").count(), 2);
    assert!(page.contains("Ўткир Қодиров"), "Uzbek Cyrillic survives");
    // The mapping the header suggested (Russian column names).
    assert!(page.contains("name=\"col1\""));
    let before = customer_count(&app).await;

    // Import.
    let r = admin.post_form(&format!("/imports/{id}/run"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(customer_count(&app).await, before + 1);
    let utkir = lookup(&api, "901234567").await;
    assert_eq!(utkir.len(), 1);
    assert_eq!(utkir[0]["name"], "Ўткир Қодиров");
    assert_eq!(
        utkir[0]["phones"],
        json!(["+998901234567", "+998917654321"]),
        "the repeated row's second phone joined the first row's customer"
    );
    let b = lookup(&api, "+998901112233").await;
    assert_eq!(b[0]["id"], bobur);
    assert_eq!(b[0]["name"], "Bobur Aliyev", "a merge keeps the name");
    assert_eq!(b[0]["company"], "Artel");
    assert_eq!(b[0]["tags"], "VIP");
    assert_eq!(b[0]["notes"], "Doimiy mijoz");
    assert!(
        lookup(&api, "930000001").await.is_empty(),
        "the formula row is skipped"
    );
    let (_, batch) = api.get(&format!("/api/v1/imports/{id}")).await;
    assert_eq!(batch["state"], "imported");
    assert_eq!(batch["created_n"], 1);
    assert_eq!(batch["merged_n"], 2);
    assert_eq!(batch["invalid_n"], 2);
    let logged: i64 = app
        .running()
        .ctx
        .db
        .read(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM activity_log WHERE action = 'import' AND entity = 'import' AND entity_id = ?1",
                [id],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(logged, 1);
    // A second run of the same batch is refused.
    let r = admin.post_form(&format!("/imports/{id}/run"), &[]).await;
    assert_eq!(r.status(), 409);

    // Undo: the created customer goes, the merged one gets back what it had.
    let r = admin.post_form(&format!("/imports/{id}/undo"), &[]).await;
    assert_eq!(r.status(), 303);
    assert!(lookup(&api, "901234567").await.is_empty());
    let b = lookup(&api, "901112233").await;
    assert_eq!(b[0]["company"], "");
    assert_eq!(b[0]["tags"], "");
    assert_eq!(b[0]["notes"], "");
    assert_eq!(customer_count(&app).await, before);
    let (_, batch) = api.get(&format!("/api/v1/imports/{id}")).await;
    assert_eq!(batch["state"], "undone");
    let r = admin.post_form(&format!("/imports/{id}/undo"), &[]).await;
    assert_eq!(r.status(), 409, "an undone batch is not undone twice");
}

/// A customer edited after the import, or given an order, is kept by the undo.
#[tokio::test]
async fn undo_keeps_what_was_changed_since() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let csv = "Name,Phone\nAziz,901000001\nBek,901000002\n";
    let (s, v) = import(&api, "", csv.into()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["outcome"]["batch_id"].as_i64().unwrap();
    let aziz = lookup(&api, "901000001").await[0]["id"].as_i64().unwrap();
    crate::core::new_order(&api, aziz, json!({})).await;
    let (s, u) = api
        .post(&format!("/api/v1/imports/{id}/undo"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u, json!({"removed": 1, "restored": 0, "kept": 1}));
    assert_eq!(lookup(&api, "901000001").await.len(), 1);
    assert!(lookup(&api, "901000002").await.is_empty());
}

/// Windows-1251 (as Excel saves "CSV" on a Russian or Uzbek Cyrillic Windows) and
/// UTF-16 are detected; a chosen encoding that does not read the file is refused with
/// the line.
#[tokio::test]
async fn legacy_encodings_are_detected_or_chosen() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let text =
        "Имя;Телефон;Язык\nИван Петров;90 200 00 01;русский\nЎлмас Каримова;90 200 00 02;ўзбекча\n";
    let (cp1251, _, lossy) = encoding_rs::WINDOWS_1251.encode(text);
    assert!(!lossy);
    let (s, v) = import(&api, "?dry_run=true", cp1251.to_vec()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["encoding"], "windows-1251");
    assert_eq!(v["counts"]["new"], 2);
    let names: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Иван Петров", "Ўлмас Каримова"]);
    assert_eq!(customer_count(&app).await, 0, "a dry run stores nothing");

    // Chosen UTF-8 for the Windows-1251 file: refused, naming the line.
    let (s, v) = import(&api, "?dry_run=true&encoding=utf-8", cp1251.to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("utf-8") && msg.contains("line 1"), "{msg}");
    // An unknown encoding name.
    let (s, _) = import(&api, "?dry_run=true&encoding=koi9", cp1251.to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // UTF-16 LE with its BOM, imported for real.
    let mut utf16 = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let (s, v) = import(&api, "?file_name=utf16.csv", utf16).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["encoding"], "utf-16le");
    assert_eq!(v["outcome"]["created"], 2);
    let ivan = lookup(&api, "902000001").await;
    assert_eq!(ivan[0]["language"], "ru");
    assert_eq!(lookup(&api, "902000002").await[0]["language"], "uz-Cyrl");
}

/// An Excel workbook: phones stored as numbers, a formula's stored value, a formula's
/// error value; the mapping given explicitly.
#[tokio::test]
async fn xlsx_workbooks_import_by_their_stored_values() {
    use XCell::*;
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let book = xlsx(&[
        vec![
            S("Familiya"),
            S("Ism"),
            S("Telefon"),
            S("Tug'ilgan kun"),
            S("Rozi"),
        ],
        vec![
            S("Karimov"),
            S("Aziz"),
            N(998_903_000_001.0),
            S("17.05.1990"),
            S("ha"),
        ],
        vec![
            S("Qodirova"),
            F("B2&\"a\"", "Nilufar"),
            S("+998 90 300 00 02"),
            S(""),
            S("yo'q"),
        ],
        vec![S("Xato"), S("Satr"), E("#DIV/0!"), S(""), S("")],
    ]);
    let (s, v) = import(
        &api,
        "?mapping=name,name,phone,birthday,opt_in&header=true&file_name=mijozlar.xlsx",
        book,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["format"], "excel");
    assert_eq!(v["outcome"]["created"], 2);
    assert_eq!(v["outcome"]["invalid"], 1);
    let bad = &v["rows"][0];
    assert_eq!(bad["verdict"], "invalid");
    assert_eq!(bad["row"], 4);
    assert!(bad["reason"].as_str().unwrap().contains("formula"), "{bad}");
    let aziz = lookup(&api, "903000001").await;
    assert_eq!(aziz[0]["name"], "Karimov Aziz");
    assert_eq!(aziz[0]["birthday"], "1990-05-17");
    assert_eq!(aziz[0]["marketing_opt_in"], true);
    let n = lookup(&api, "903000002").await;
    assert_eq!(n[0]["name"], "Qodirova Nilufar");
    assert_eq!(n[0]["marketing_opt_in"], false);
}

/// Files that must be refused get a clear answer, and nothing of them is stored.
#[tokio::test]
async fn bad_files_are_refused_whole() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    new_customer(&api, "Bor", "90 400 00 00").await;
    let reason = |v: &Value| v["error"]["message"].as_str().unwrap_or("").to_string();

    let (s, v) = import(&api, "", Vec::new()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "empty: {v}");
    let (s, v) = import(&api, "", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0".to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reason(&v).contains("not a CSV or Excel"), "{v}");
    let (s, v) = import(
        &api,
        "",
        b"Name,Phone\n\"Aziz,901234567\nBek,902222222\n".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reason(&v).contains("line 2"), "{v}");
    // A zip that is not a workbook (a .docx, say).
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file(
            "word/document.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(b"<w/>").unwrap();
        z.finish().unwrap();
    }
    let (s, v) = import(&api, "", buf.into_inner()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reason(&v).contains("Excel file cannot be read"), "{v}");
    // No phone column.
    let (s, v) = import(&api, "", b"Name,City\nAziz,Toshkent\n".to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reason(&v).contains("phone"), "{v}");
    // An unknown field in the mapping.
    let (s, _) = import(&api, "?mapping=name,fone", b"A,901234567\n".to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Too many rows (a million-row export is refused, not half-imported).
    let mut big = String::from("Name,Phone\n");
    for i in 0..200_001 {
        big.push_str(&format!("M{i},9{:08}\n", i));
    }
    let (s, v) = import(&api, "", big.into_bytes()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reason(&v).contains("200000"), "{v}");
    // Too large: refused while it streams in.
    let huge = vec![b'a'; crm::domain::imports::MAX_BYTES + 1];
    let (s, v) = import(&api, "", huge).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // Another language.
    let r = api
        .c
        .post(format!("{}/api/v1/imports/customers", api.base))
        .bearer_auth(&api.token)
        .header("accept-language", "ru")
        .body(b"\x89PNG\0\0".to_vec())
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(reason(&v).contains("не файл CSV"), "{v}");

    assert_eq!(customer_count(&app).await, 1, "nothing was imported");
    let (_, batches) = api.get("/api/v1/imports").await;
    assert_eq!(batches, json!([]), "no batch was stored");

    // Another role's URLs.
    app.add_user("oper", Role::Operator, "oper-pass-1").await;
    let oper = Api::of(&app, "oper").await;
    let (s, _) = import(&oper, "", b"Name,Phone\nA,901234567\n".to_vec()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let s = app.login("oper", "oper-pass-1").await;
    assert_eq!(s.get("/imports").await.status(), 403);
}

/// Two imports at once with overlapping phones: every phone ends with one customer, and
/// a second import of the same file creates nothing and says so.
#[tokio::test]
async fn concurrent_and_repeated_imports_merge_instead_of_duplicating() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let file = |from: u32, to: u32| {
        let mut s = String::from("Name,Phone\n");
        for i in from..to {
            s.push_str(&format!("Mijoz {i},+998 95 {:07}\n", i));
        }
        s.into_bytes()
    };
    let (a, b) = tokio::join!(
        import(&api, "", file(0, 600)),
        import(&api, "", file(300, 900))
    );
    assert_eq!(a.0, StatusCode::CREATED, "{}", a.1);
    assert_eq!(b.0, StatusCode::CREATED, "{}", b.1);
    let created =
        a.1["outcome"]["created"].as_i64().unwrap() + b.1["outcome"]["created"].as_i64().unwrap();
    assert_eq!(created, 900);
    assert_eq!(customer_count(&app).await, 900);
    let shared: i64 = app
        .running()
        .ctx
        .db
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM (SELECT e164 FROM customer_phones GROUP BY e164 HAVING count(*) > 1)",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(shared, 0, "no phone belongs to two customers");

    // The same file again.
    let (s, v) = import(&api, "?dry_run=true", file(0, 600)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["counts"]["matched"], 600);
    assert_eq!(v["counts"]["new"], 0);
    let admin = app.login_admin().await;
    let part = reqwest::multipart::Part::bytes(file(0, 600)).file_name("again.csv");
    let r = admin
        .client
        .post(admin.url(&format!("/imports?_csrf={}", admin.csrf)))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let at = r.headers()["location"].to_str().unwrap().to_string();
    let page = admin.get(&at).await.text().await.unwrap();
    assert!(
        page.contains("id=\"same-file\""),
        "the second import is pointed out"
    );
    let r = admin.post_form(&format!("{at}/run"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(customer_count(&app).await, 900);
    // Cancelling a draft drops it; a cancelled draft cannot be imported.
    let part = reqwest::multipart::Part::bytes(file(900, 901)).file_name("one.csv");
    let r = admin
        .client
        .post(admin.url(&format!("/imports?_csrf={}", admin.csrf)))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let at = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        admin.post_form(&format!("{at}/cancel"), &[]).await.status(),
        303
    );
    assert_eq!(
        admin.post_form(&format!("{at}/run"), &[]).await.status(),
        409
    );
    assert_eq!(customer_count(&app).await, 900);
}

/// The mapping form: a column re-mapped, a wrong encoding chosen (refused), the header
/// switched off.
#[tokio::test]
async fn the_mapping_and_encoding_can_be_changed_before_the_import() {
    let app = TestApp::spawn().await;
    let admin = app.login_admin().await;
    let api = Api::of(&app, "admin").await;
    let (cp1251, _, _) = encoding_rs::WINDOWS_1251
        .encode("90 500 00 01;Анвар;Ташкент\n90 500 00 02;Дилноза;Самарканд\n");
    let part = reqwest::multipart::Part::bytes(cp1251.to_vec()).file_name("x.csv");
    let r = admin
        .client
        .post(admin.url(&format!("/imports?_csrf={}", admin.csrf)))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let at = r.headers()["location"].to_str().unwrap().to_string();
    let page = admin.get(&at).await.text().await.unwrap();
    assert!(page.contains("Анвар"), "decoded as Windows-1251");
    assert!(page.contains("<option value=\"windows-1251\" selected"));
    // UTF-8 does not read it: refused, mapping unchanged.
    let r = admin
        .post_form(
            &format!("{at}/mapping"),
            &[
                ("encoding", "utf-8"),
                ("col0", "phone"),
                ("col1", "name"),
                ("col2", "address"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = admin
        .post_form(
            &format!("{at}/mapping"),
            &[
                ("encoding", "windows-1251"),
                ("col0", "phone"),
                ("col1", "name"),
                ("col2", "address"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        admin.post_form(&format!("{at}/run"), &[]).await.status(),
        303
    );
    let a = lookup(&api, "905000001").await;
    assert_eq!(a[0]["name"], "Анвар");
    assert_eq!(a[0]["address"], "Ташкент");
}

/// `crm import customers FILE [--dry-run]` on the data directory of a running server:
/// the server's caller lookup finds the imported customer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_into_a_running_server() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let dir = app.data_dir();
    let file = dir.join("clients.csv");
    std::fs::write(
        &file,
        "Ism,Telefon,Teglar\nSardor,+998 97 111 22 33,ulgurji\nXato,123,\n",
    )
    .unwrap();
    let cfg = dir.join("cli.toml");
    std::fs::write(
        &cfg,
        "[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crm_bin())
            .arg("--data-dir")
            .arg(&dir)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env_remove("CRM_HTTP")
            .env_remove("CRM_DATA_DIR")
            .env_remove("CRM_SIP")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let f = file.to_str().unwrap();
    let (ok, out) = tokio::task::block_in_place(|| run(&["import", "customers", f, "--dry-run"]));
    assert!(ok, "{out}");
    assert!(out.contains("1 new") && out.contains("1 invalid"), "{out}");
    assert!(out.contains("row 3: invalid"), "{out}");
    assert!(
        lookup(&api, "971112233").await.is_empty(),
        "a dry run changes nothing"
    );

    let (ok, out) = tokio::task::block_in_place(|| run(&["import", "customers", f]));
    assert!(ok, "{out}");
    assert!(out.contains("1 created"), "{out}");
    let found = lookup(&api, "971112233").await;
    assert_eq!(found[0]["name"], "Sardor");
    assert_eq!(found[0]["tags"], "ulgurji");

    // A file that is not a table: the command fails with the reason.
    std::fs::write(dir.join("x.bin"), b"\0\x01\x02garbage\0").unwrap();
    let bad = dir.join("x.bin");
    let (ok, out) = tokio::task::block_in_place(|| {
        run(&["import", "customers", bad.to_str().unwrap(), "--lang", "uz"])
    });
    assert!(!ok);
    assert!(out.contains("CSV yoki Excel fayl emas"), "{out}");

    let batch: i64 = api.get("/api/v1/imports").await.1[0]["id"]
        .as_i64()
        .unwrap();
    let (ok, out) = tokio::task::block_in_place(|| run(&["import", "undo", &batch.to_string()]));
    assert!(ok, "{out}");
    assert!(lookup(&api, "971112233").await.is_empty());
}

/// Customers get a kind, a company, tags that filter, a marketing opt-in and an archive.
#[tokio::test]
async fn customers_have_kind_company_tags_opt_in_and_an_archive() {
    let app = TestApp::spawn().await;
    let api = Api::of(&app, "admin").await;
    let (s, c) = api
        .post(
            "/api/v1/customers",
            json!({"name": "Artel Servis", "phones": ["90 600 00 01"], "kind": "company",
                   "company": "Artel MChJ", "tags": "VIP; Optom; vip", "marketing_opt_in": true,
                   "birthday": "01.02.2003"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["tags"], "VIP,Optom", "as typed, without repeats");
    assert_eq!(c["kind"], "company");
    assert_eq!(c["birthday"], "2003-02-01");
    let id = c["id"].as_i64().unwrap();
    let other = new_customer(&api, "Oddiy", "90 600 00 02").await;
    let ids = |v: &Value| -> Vec<i64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&api.get("/api/v1/customers?tag=optom").await.1), [id]);
    assert_eq!(ids(&api.get("/api/v1/customers?tag=VIP").await.1), [id]);
    assert!(
        ids(&api.get("/api/v1/customers?tag=vi").await.1).is_empty(),
        "whole tags only"
    );
    assert!(
        ids(&api.get("/api/v1/customers?tag=V_P").await.1).is_empty(),
        "LIKE wildcards in a tag are taken literally"
    );
    assert_eq!(
        ids(&api.get("/api/v1/customers?kind=company").await.1),
        [id]
    );
    assert_eq!(
        ids(&api.get("/api/v1/customers?kind=person").await.1),
        [other]
    );
    assert_eq!(
        ids(&api.get("/api/v1/customers?opted_in=true").await.1),
        [id]
    );
    assert_eq!(
        api.get("/api/v1/customers?kind=robot").await.0,
        StatusCode::BAD_REQUEST
    );
    let (s, _) = api
        .post(
            "/api/v1/customers",
            json!({"name": "X", "phones": ["90 600 00 03"], "kind": "robot"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api
        .post(
            "/api/v1/customers",
            json!({"name": "X", "phones": ["90 600 00 03"], "birthday": "31.02.2000"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // The archive: out of the list and search, kept, restorable.
    let (s, _) = api
        .post(&format!("/api/v1/customers/{id}/archive"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&api.get("/api/v1/customers").await.1), [other]);
    assert_eq!(
        ids(&api.get("/api/v1/customers?archived=true").await.1),
        [id]
    );
    let (_, found) = api.get("/api/v1/search?q=Artel").await;
    assert!(!found.to_string().contains("Artel Servis"), "{found}");
    let (s, _) = api
        .post(&format!("/api/v1/customers/{id}/archive"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = api
        .post(&format!("/api/v1/customers/{id}/restore"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, found) = api.get("/api/v1/search?q=Artel").await;
    assert!(found.to_string().contains("Artel Servis"), "{found}");

    // The page form keeps the new fields.
    let admin = app.login_admin().await;
    let r = admin
        .post_form(
            "/customers",
            &[
                ("name", "Зилола"),
                ("phone1", "90 600 00 09"),
                ("kind", "person"),
                ("company", "Ucell"),
                ("tags", "Yangi"),
                ("marketing_opt_in", "1"),
                ("birthday", "1995-12-31"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let z = lookup(&api, "906000009").await;
    assert_eq!(z[0]["company"], "Ucell");
    assert_eq!(z[0]["marketing_opt_in"], true);
    let page = admin
        .get("/customers?tag=yangi")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Зилола") && !page.contains("Oddiy"));
}
