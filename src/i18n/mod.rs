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

/// A sentence for a person, not yet in any language: a catalogue key and named arguments.
/// Domain errors carry one, so the same refusal reads in the reader's language on a page,
/// in the API (by `Accept-Language`) and in the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    key: &'static str,
    args: Vec<(&'static str, Arg)>,
}

/// One argument of a [`Msg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// Shown as it is (a name, a number as typed).
    Text(String),
    /// A whole amount of so'm, grouped by thousands with the currency word of the language.
    Money(i64),
    /// Another catalogue key, translated too (a status, a field's name, a payment kind).
    Term(String),
    /// A whole sentence inside this one (e.g. why a phone number was refused).
    Msg(Box<Msg>),
    /// A name the shop keeps in each language (a status of its workflow), in the order of
    /// [`Language::ALL`].
    Names(Box<[String; 4]>),
}

impl Msg {
    pub fn new(key: &'static str) -> Msg {
        Msg {
            key,
            args: Vec::new(),
        }
    }

    /// Adds `{name}`, shown as it is.
    pub fn with(mut self, name: &'static str, value: impl ToString) -> Msg {
        self.args.push((name, Arg::Text(value.to_string())));
        self
    }

    /// Adds `{name}` as an amount of money.
    pub fn money(mut self, name: &'static str, amount: i64) -> Msg {
        self.args.push((name, Arg::Money(amount)));
        self
    }

    /// Adds `{name}` as the translation of another catalogue key.
    pub fn term(mut self, name: &'static str, key: impl Into<String>) -> Msg {
        self.args.push((name, Arg::Term(key.into())));
        self
    }

    /// Adds `{name}` as a whole translated sentence.
    pub fn nested(mut self, name: &'static str, m: Msg) -> Msg {
        self.args.push((name, Arg::Msg(Box::new(m))));
        self
    }

    /// Adds `{name}` as a name the shop keeps in every language ([`Language::ALL`] order).
    pub fn names(mut self, name: &'static str, names: [String; 4]) -> Msg {
        self.args.push((name, Arg::Names(Box::new(names))));
        self
    }

    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The text argument `name`, if given (for tests and logs).
    pub fn text_arg(&self, name: &str) -> Option<&str> {
        self.args.iter().find_map(|(n, a)| match a {
            Arg::Text(t) if *n == name => Some(t.as_str()),
            _ => None,
        })
    }
}

impl From<&'static str> for Msg {
    fn from(key: &'static str) -> Msg {
        Msg::new(key)
    }
}

/// English, for logs and for callers with no reader (the CLI renders in the user's
/// language through [`Tr::msg`]).
impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&Tr::new(Language::En).msg(self))
    }
}

impl Tr {
    /// The message in this language, its arguments filled in.
    pub fn msg(&self, m: &Msg) -> String {
        let mut s = self.t(m.key).to_string();
        for (name, arg) in &m.args {
            let value = match arg {
                Arg::Text(t) => t.clone(),
                Arg::Money(v) => self.money(*v),
                Arg::Term(k) => self.term(k),
                Arg::Msg(inner) => self.msg(inner),
                Arg::Names(n) => {
                    let i = Language::ALL
                        .iter()
                        .position(|l| *l == self.lang)
                        .unwrap_or(0);
                    n[i].clone()
                }
            };
            s = s.replace(&format!("{{{name}}}"), &value);
        }
        s
    }

    /// `1 250 000 so'm` in this language's words.
    pub fn money(&self, v: i64) -> String {
        format!(
            "{} {}",
            crate::model::money::group_thousands(v),
            self.t("money.som")
        )
    }

    /// The translation of a key built at run time (a stored code such as a payment kind);
    /// the key itself when the catalogue lacks it.
    pub fn term(&self, key: &str) -> String {
        let tables = &*TABLES;
        tables
            .get(&self.lang)
            .and_then(|c| c.get(key))
            .or_else(|| tables.get(&Language::En).and_then(|c| c.get(key)))
            .cloned()
            .unwrap_or_else(|| key.to_string())
    }

    /// A stored code shown to a person (a payment kind, an activity action, an entity
    /// type): `term.<group>.<code>` from the catalogue, the code itself when unknown (a
    /// code written by a newer version, say).
    pub fn code(&self, group: &str, code: &str) -> String {
        let key = format!("term.{group}.{code}");
        let tables = &*TABLES;
        tables
            .get(&self.lang)
            .and_then(|c| c.get(&key))
            .or_else(|| tables.get(&Language::En).and_then(|c| c.get(&key)))
            .cloned()
            .unwrap_or_else(|| code.to_string())
    }

    /// Whether the catalogue knows `key`.
    pub fn has(key: &str) -> bool {
        TABLES[&Language::En].contains_key(key)
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

    /// Uzbek (Latin) writes oʻ and gʻ with U+02BB and the tutuq belgisi with U+02BC.
    /// The curly quotes U+2018 and U+2019 look alike, but a search typed with the
    /// letters would not find them.
    #[test]
    fn uzbek_latin_uses_its_own_apostrophes() {
        let wrong: Vec<_> = TABLES[&Language::UzLatn]
            .iter()
            .filter(|(_, v)| v.contains(['\u{2018}', '\u{2019}']))
            .map(|(k, _)| k.clone())
            .collect();
        assert!(wrong.is_empty(), "curly quotes in {wrong:?}");
    }

    #[test]
    fn every_language_has_every_key() {
        for lang in Language::ALL {
            let (missing, extra) = coverage_gaps(lang);
            assert!(missing.is_empty(), "{lang:?} lacks {missing:?}");
            assert!(extra.is_empty(), "{lang:?} has unknown keys {extra:?}");
        }
    }

    /// Every message key the code names (a refusal, a field, a term) is in the catalogue,
    /// and no refusal is written as a sentence instead of a key: a message a person sees
    /// is always translated.
    #[test]
    fn every_message_key_in_the_code_is_in_the_catalogue() {
        fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    files(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut all = Vec::new();
        files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut all,
        );
        let known = keys();
        let mut problems = Vec::new();
        for f in &all {
            let text = std::fs::read_to_string(f).unwrap();
            for (at, _) in text.match_indices('"') {
                let rest = &text[at + 1..];
                let Some(end) = rest.find('"') else { continue };
                let lit = &rest[..end];
                let looks_like_key = ["err.", "field.", "error."]
                    .iter()
                    .any(|p| lit.starts_with(p))
                    && !lit.ends_with('.')
                    && lit.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b)
                    });
                if looks_like_key && !known.contains(&lit) {
                    problems.push(format!("{}: unknown key {lit}", f.display()));
                }
            }
            // This file names the calls in its own test.
            let calls: &[&str] = if f.ends_with("i18n/mod.rs") {
                &[]
            } else {
                &[
                    "DomainError::invalid(",
                    "DomainError::conflict(",
                    "Msg::new(",
                ]
            };
            for call in calls {
                for (at, _) in text.match_indices(call) {
                    // The argument may start on the next line (rustfmt): a literal there
                    // is checked too.
                    let rest = text[at + call.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix('"') else {
                        continue;
                    };
                    let lit = &rest[..rest.find('"').unwrap_or(0)];
                    if !known.contains(&lit) {
                        problems.push(format!(
                            "{}: {call}\"{lit}\" is not a catalogue key",
                            f.display()
                        ));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn messages_render_with_their_arguments_in_each_language() {
        let m = Msg::new("err.order.balance_due").money("amount", 300_000);
        assert!(Tr::new(Language::En)
            .msg(&m)
            .starts_with("the customer still owes 300 000 so'm"));
        for lang in Language::ALL {
            let s = Tr::new(lang).msg(&m);
            assert!(s.contains("300 000"), "{lang:?}: {s}");
            assert!(!s.contains('{'), "{lang:?}: {s}");
        }
        let nested = Msg::new("err.phone.refused")
            .with("phone", "12345")
            .nested("why", Msg::new("err.phone.wrong_length"));
        assert_eq!(
            nested.to_string(),
            "phone \"12345\": the phone number has the wrong number of digits"
        );
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
