//! `import`: customer import (issue 18) of a 100 000-row file, in process on a fresh
//! database each round, every commit durable (the default `Full` fsync).
//!
//! `crm-bench import [--rows N] [--rounds R]` prints, as medians over the rounds:
//! - `csv_import_s`: a CSV (UTF-8; phones typed in six forms, ~4% repeating an earlier
//!   row, ~1% invalid) read, judged and imported in one unit of work;
//! - `xlsx_import_s`: the same rows as an Excel workbook;
//! - `csv_dry_run_s`: reading and judging only (the preview);
//! - `csv_again_s`: the same file imported a second time (every row matches);
//! - `reference_insert_s`: the same-run reference: the same customers inserted with
//!   `db::customers::insert` (the single-customer path: phones, search row) in one
//!   transaction, without reading a file or judging anything.

use std::io::Write;
use std::time::{Duration, Instant};

use crm::db::{Db, DbOptions};
use crm::domain::imports::{Imports, Upload};
use crm::domain::work::Store;
use crm::events::EventBus;

use crate::stats::median;

fn arg(args: &[String], name: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

const FIRST: &[&str] = &[
    "Aziz",
    "Bobur",
    "Dilnoza",
    "Gulnora",
    "Jasur",
    "Kamola",
    "Sardor",
    "Nilufar",
    "Ўткир",
    "Зилола",
    "Шерзод",
    "Малика",
];
const LAST: &[&str] = &[
    "Karimov",
    "Aliyeva",
    "Qodirov",
    "Tursunova",
    "Rahimov",
    "Юсупов",
    "Назарова",
    "Хасанов",
];

/// The rows: (name, phone as typed, tags, notes).
fn rows(n: usize) -> Vec<[String; 4]> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let national =
            |j: usize| format!("9{}{:07}", (j % 9) + 1, (1_000_000 + j as u64) % 10_000_000);
        // Every 25th row repeats an earlier row's number (a duplicate in the file).
        let national = if i % 25 == 7 {
            national(i / 2)
        } else {
            national(i)
        };
        let typed = match i % 6 {
            0 => national.clone(),
            1 => format!(
                "+998 {} {} {} {}",
                &national[..2],
                &national[2..5],
                &national[5..7],
                &national[7..]
            ),
            2 => format!(
                "8 ({}) {}-{}-{}",
                &national[..2],
                &national[2..5],
                &national[5..7],
                &national[7..]
            ),
            3 => format!("998{national}"),
            4 => format!("+998-{}-{}", &national[..2], &national[2..]),
            _ => format!(
                "{} {} {} {}",
                &national[..2],
                &national[2..5],
                &national[5..7],
                &national[7..]
            ),
        };
        let phone = if i % 100 == 50 {
            "12345".to_string()
        } else {
            typed
        };
        out.push([
            format!("{} {}", LAST[i % LAST.len()], FIRST[i % FIRST.len()]),
            phone,
            if i % 3 == 0 {
                "vip".into()
            } else {
                String::new()
            },
            if i % 10 == 0 {
                "Doimiy mijoz".into()
            } else {
                String::new()
            },
        ]);
    }
    out
}

fn csv(rows: &[[String; 4]]) -> Vec<u8> {
    let mut s = String::from("Ism;Telefon;Teglar;Izoh\n");
    for r in rows {
        s.push_str(&format!("{};{};{};{}\n", r[0], r[1], r[2], r[3]));
    }
    s.into_bytes()
}

fn xlsx(rows: &[[String; 4]]) -> anyhow::Result<Vec<u8>> {
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    let header = ["Ism", "Telefon", "Teglar", "Izoh"].map(String::from);
    for (i, r) in std::iter::once(&header).chain(rows).enumerate() {
        sheet.push_str(&format!(r#"<row r="{}">"#, i + 1));
        for (j, c) in r.iter().enumerate() {
            if !c.is_empty() {
                sheet.push_str(&format!(
                    r#"<c r="{}{}" t="inlineStr"><is><t>{c}</t></is></c>"#,
                    (b'A' + j as u8) as char,
                    i + 1
                ));
            }
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
            z.start_file(name, opt)?;
            z.write_all(body.as_bytes())?;
        }
        z.finish()?;
    }
    Ok(buf.into_inner())
}

fn fresh() -> anyhow::Result<(tempfile::TempDir, Db, Imports)> {
    let dir = tempfile::tempdir()?;
    let db = Db::open(&dir.path().join("crm.db"), &DbOptions::default())?;
    let store = Store::new(db.clone(), EventBus::default());
    Ok((dir, db, Imports::new(store)))
}

fn upload(bytes: &[u8], name: &str) -> Upload {
    Upload {
        file_name: name.into(),
        bytes: bytes.to_vec(),
        encoding: None,
    }
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let n = arg(args, "--rows").unwrap_or(100_000);
    let rounds = arg(args, "--rounds").unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let data = rows(n);
    let csv = csv(&data);
    let book = xlsx(&data)?;
    println!(
        "rows={n} rounds={rounds} csv_bytes={} xlsx_bytes={}",
        csv.len(),
        book.len()
    );
    let (mut t_csv, mut t_xlsx, mut t_dry, mut t_again, mut t_ref) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        rt.block_on(async {
            // CSV, then the same file again.
            let (_d, _db, imp) = fresh()?;
            let t = Instant::now();
            let (o, _) = imp
                .import_file(None, upload(&csv, "b.csv"), None, None)
                .await?;
            t_csv.push(t.elapsed());
            if round == 0 {
                println!(
                    "csv_created={} csv_merged={} csv_duplicates={} csv_invalid={}",
                    o.created, o.merged, o.duplicates, o.invalid
                );
            }
            let t = Instant::now();
            let (o2, _) = imp
                .import_file(None, upload(&csv, "b.csv"), None, None)
                .await?;
            t_again.push(t.elapsed());
            anyhow::ensure!(o2.created == 0, "a second import created customers");
            // The preview only.
            let (_d, _db, imp) = fresh()?;
            let t = Instant::now();
            let p = imp.preview_of(csv.clone(), None, None, None, None).await?;
            t_dry.push(t.elapsed());
            anyhow::ensure!(p.plan.rows.len() == n);
            // XLSX.
            let (_d, _db, imp) = fresh()?;
            let t = Instant::now();
            let (o, _) = imp
                .import_file(None, upload(&book, "b.xlsx"), None, None)
                .await?;
            t_xlsx.push(t.elapsed());
            anyhow::ensure!(o.created > n * 9 / 10, "xlsx created only {}", o.created);
            anyhow::Ok(())
        })?;
        // The reference: the plain insert path, same customers, one transaction.
        let (_d, db, _) = fresh()?;
        let people: Vec<(String, String)> = data
            .iter()
            .enumerate()
            .map(|(i, r)| (r[0].clone(), format!("+99877{:07}", i)))
            .collect();
        let t = Instant::now();
        db.write_blocking(move |c| {
            for (name, phone) in &people {
                let f = crm::db::customers::CustomerFields {
                    name,
                    email: "",
                    telegram: "",
                    address: "",
                    notes: "",
                    tags: "",
                    language: None,
                    kind: "person",
                    company: "",
                    birthday: None,
                    marketing_opt_in: false,
                };
                crm::db::customers::insert(c, &f, std::slice::from_ref(phone), 1)?;
            }
            Ok(())
        })?;
        t_ref.push(t.elapsed());
        eprintln!("round {} done", round + 1);
    }
    let s = |v: Vec<Duration>| format!("{:.2}", median(v).as_secs_f64());
    println!("csv_import_s={}", s(t_csv));
    println!("xlsx_import_s={}", s(t_xlsx));
    println!("csv_dry_run_s={}", s(t_dry));
    println!("csv_again_s={}", s(t_again));
    println!("reference_insert_s={}", s(t_ref));
    Ok(())
}
