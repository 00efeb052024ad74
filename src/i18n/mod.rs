//! Every UI string goes through here. Catalogues are TOML files, one per language,
//! compiled into the binary; a test checks that every language has every key.

use std::collections::HashMap;
use std::sync::LazyLock;

use include_dir::{include_dir, Dir};

use crate::model::Language;

/// `catalog/<area>.<lang>.toml`: one file per feature area and language, so features add
/// their strings without touching each other's files.
static CATALOG_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/src/i18n/catalog");

type Catalogue = HashMap<String, String>;

// Parsed once, never mutated: a read-only table, not shared mutable state.
static TABLES: LazyLock<HashMap<Language, Catalogue>> = LazyLock::new(load);

fn load() -> HashMap<Language, Catalogue> {
    let mut tables: HashMap<Language, Catalogue> = Language::ALL
        .iter()
        .map(|l| (*l, Catalogue::new()))
        .collect();
    for f in CATALOG_DIR.files() {
        let name = f.path().file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(stem) = name.strip_suffix(".toml") else {
            continue;
        };
        let (_area, code) = stem
            .split_once('.')
            .expect("catalogue file is <area>.<lang>.toml");
        let lang = Language::from_code(code).expect("catalogue language is known");
        let text = f.contents_utf8().expect("catalogue is UTF-8");
        let value: toml::Table =
            toml::from_str(text).unwrap_or_else(|e| panic!("catalogue {name} does not parse: {e}"));
        let table = tables.get_mut(&lang).expect("all languages present");
        flatten("", &value, table);
    }
    tables
}

fn flatten(prefix: &str, t: &toml::Table, out: &mut Catalogue) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            toml::Value::String(s) => {
                let dup = out.insert(key.clone(), s.clone());
                assert!(dup.is_none(), "translation key {key} is defined twice");
            }
            other => panic!("translation {key} must be a string, not {other}"),
        }
    }
}

/// A translator bound to one language.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    pub lang: Language,
}

impl Tr {
    pub fn new(lang: Language) -> Tr {
        Tr { lang }
    }

    /// The text for `key`; English when a language lacks it (the test forbids that), the
    /// key itself when no language has it.
    pub fn t<'k>(&self, key: &'k str) -> &'k str
    where
        'static: 'k,
    {
        let tables = &*TABLES;
        tables
            .get(&self.lang)
            .and_then(|c| c.get(key))
            .or_else(|| tables.get(&Language::En).and_then(|c| c.get(key)))
            .map(|s| s.as_str())
            .unwrap_or(key)
    }

    /// `t(key)` with `{name}` placeholders replaced.
    pub fn f(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.t(key).to_string();
        for (k, v) in args {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }
}

/// Every key of the English catalogue (the reference).
pub fn keys() -> Vec<&'static str> {
    let mut k: Vec<&'static str> = TABLES[&Language::En].keys().map(|s| s.as_str()).collect();
    k.sort_unstable();
    k
}

/// Keys present in English but missing from `lang`, and keys `lang` has that English
/// does not.
pub fn coverage_gaps(lang: Language) -> (Vec<String>, Vec<String>) {
    let en = &TABLES[&Language::En];
    let other = &TABLES[&lang];
    let missing = en
        .keys()
        .filter(|k| !other.contains_key(*k))
        .cloned()
        .collect();
    let extra = other
        .keys()
        .filter(|k| !en.contains_key(*k))
        .cloned()
        .collect();
    (missing, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_key() {
        for lang in Language::ALL {
            let (missing, extra) = coverage_gaps(lang);
            assert!(missing.is_empty(), "{lang:?} lacks {missing:?}");
            assert!(extra.is_empty(), "{lang:?} has unknown keys {extra:?}");
        }
    }

    #[test]
    fn placeholders_survive_translation() {
        for key in keys() {
            let en = Tr::new(Language::En).t(key);
            let holes: Vec<&str> = en.match_indices('{').map(|(i, _)| &en[i..]).collect();
            for lang in Language::ALL {
                let s = Tr::new(lang).t(key);
                for h in &holes {
                    let name = &h[..h.find('}').map(|e| e + 1).unwrap_or(h.len())];
                    assert!(s.contains(name), "{lang:?} {key} lacks {name}");
                }
            }
        }
    }
}
