//! The module map's import rules (docs/ARCHITECTURE.md), checked on the source, so the
//! map stays true: SQL and rusqlite only in db/, actix and maud only in web/, SIP talks to
//! nothing internal, and dependencies point web → domain → db → model.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// (files under this folder, may not mention this, except these files)
const RULES: &[(&str, &str, &[&str])] = &[
    ("src", "rusqlite", &["src/db/"]),
    ("src", "r2d2", &["src/db/"]),
    ("src", "actix_web", &["src/web/", "src/server.rs"]),
    ("src", "actix_ws", &["src/web/"]),
    ("src", "maud::", &["src/web/"]),
    ("src", "rust_embed", &["src/web/"]),
    // The notify benchmark sends through lettre directly as its reference.
    (
        "src",
        "lettre",
        &["src/notify/", "src/bin/crm-bench/notify.rs"],
    ),
    ("src", "teloxide", &["src/notify/"]),
    // The SMS gateways (issue 18) are called from the outbox worker only.
    ("src", "reqwest", &["src/notify/"]),
    // The parser comparison (crm-bench sip-parse, feature rsip-compare) is rsip's only use.
    (
        "src",
        "rsip",
        &[
            "src/sip/",
            "src/bin/crm-bench/sip_parse.rs",
            "src/bin/crm-bench/main.rs",
        ],
    ),
    ("src/db", "crate::domain", &[]),
    ("src/db", "crate::web", &[]),
    ("src/domain", "crate::web", &[]),
    ("src/model", "crate::db", &[]),
    ("src/model", "crate::domain", &[]),
    ("src/model", "crate::web", &[]),
    ("src/sip", "crate::db", &[]),
    ("src/sip", "crate::domain", &[]),
    ("src/sip", "crate::web", &[]),
    // The media plane meets SIP only through `sip::MediaPlane`.
    ("src/sip", "crate::media", &[]),
    ("src/media", "crate::db", &[]),
    ("src/media", "crate::domain", &[]),
    ("src/media", "crate::web", &[]),
];

#[test]
fn imports_follow_the_module_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut violations = Vec::new();
    for (folder, needle, allowed) in RULES {
        let dir = root.join(folder);
        if !dir.exists() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for f in files {
            let rel = f
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if allowed.iter().any(|a| rel.starts_with(a)) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains(needle) {
                    violations.push(format!("{rel}:{}: {needle}", n + 1));
                }
            }
        }
    }
    // web may use the db handle and clock, but no queries or row types.
    let mut files = Vec::new();
    rust_files(&root.join("src/web"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::db::") {
                let after = &rest[i + "crate::db::".len()..];
                let ok = ["Db", "now", "binary_schema_version"]
                    .iter()
                    .any(|a| after.starts_with(a));
                if !ok {
                    violations.push(format!("{}:{}: web reaches into db", f.display(), n + 1));
                }
                rest = after;
            }
        }
    }
    assert!(
        violations.is_empty(),
        "import rules broken:\n{}",
        violations.join("\n")
    );
}

/// Optional filters are built from the filters given (`db::calls::filter_sql`,
/// `db::activity::list`), never written as `(?1 IS NULL OR col = ?1)`: SQLite plans such
/// a statement once for every value, so it cannot use the column's index and walks the
/// whole table (the order page and the customer card read every payment of the shop
/// that way).
#[test]
fn optional_filters_do_not_defeat_indexes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/db"), &mut files);
    let mut violations = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("(?") {
                let after = &rest[i + 2..];
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                let tail = &after[digits..];
                if digits > 0 && (tail.starts_with(" IS NULL OR") || tail.starts_with(" = 0 OR")) {
                    violations.push(format!("{}:{}", f.display(), n + 1));
                }
                rest = after;
            }
        }
    }
    assert!(
        violations.is_empty(),
        "optional filters written as (?N IS NULL OR …):\n{}",
        violations.join("\n")
    );
}
