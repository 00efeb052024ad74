//! One search box over customers and orders (SQLite FTS5). A query that looks like a
//! phone number is normalised first, so any typed form finds the customer.

use super::{Actor, DomainResult};
use crate::db::customers::CustomerRow;
use crate::db::orders::OrderRow;
use crate::db::Db;
use crate::model::{PhoneNumber, Role};

#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    pub customers: Vec<CustomerRow>,
    pub orders: Vec<OrderRow>,
}

/// The FTS5 expression for what was typed: every word as a quoted prefix term, so no
/// user input is ever read as FTS syntax.
pub fn fts_expression(q: &str, country: crate::model::phone::Country) -> Option<String> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let digits: String = q.chars().filter(|c| c.is_ascii_digit()).collect();
    let phoneish = q
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()/.".contains(c))
        && digits.len() >= 5;
    if phoneish {
        let token = PhoneNumber::parse(q, country)
            .map(|p| p.digits().to_string())
            .unwrap_or(digits);
        return Some(format!("\"{token}\"*"));
    }
    let term = |w: &str| {
        let w = w.replace('"', "");
        // A prefix term reads the doclist of every indexed word it begins: "12"*
        // would merge thousands of serials and phone tails, so short numbers and
        // single letters match whole words only ("iPhone 12").
        let short = w.chars().count() < 2 || (w.len() < 4 && w.chars().all(|c| c.is_ascii_digit()));
        if short {
            format!("\"{w}\"")
        } else {
            format!("\"{w}\"*")
        }
    };
    // Words as typed, each either its terms or, when it may be spelled in another
    // script, a group `(typed OR "skeleton"*)`.
    let mut words: Vec<(Vec<String>, Option<String>)> = Vec::new();
    let mut count = 0;
    for word in q.split_whitespace() {
        let parts: Vec<String> = word
            .split(['-', '"', '\''])
            .filter(|w| !w.is_empty())
            .map(term)
            .collect();
        if parts.is_empty() {
            continue;
        }
        count += parts.len();
        if count > 8 {
            break;
        }
        // The word in any script: customers' rows also carry their name's Latin
        // skeleton (`db::search`), so `Dilnoza` finds `Дилноза` and back.
        let key = crate::model::translit::fold_word(word);
        // The word as the index splits it (`O'lmas` is "o" and "lmas" there).
        let plain: String = word
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '\'' | '`' | 'ʻ' | 'ʼ' | '‘' | '’'))
            .collect();
        // Short words are not folded: `C` would become a prefix search for "ts".
        let alt = (plain.chars().count() >= 3
            && key.chars().count() >= 2
            && key != plain
            && !key.contains('"'))
        .then_some(key);
        words.push((parts, alt));
    }
    if words.is_empty() {
        return None;
    }
    // FTS5 joins bare phrases by juxtaposition but a parenthesised group only by an
    // explicit AND, so a query with a group spells every AND out.
    if words.iter().all(|(_, alt)| alt.is_none()) {
        let all: Vec<String> = words.into_iter().flat_map(|(p, _)| p).collect();
        return Some(all.join(" "));
    }
    let terms: Vec<String> = words
        .into_iter()
        .map(|(parts, alt)| {
            let typed = if parts.len() > 1 {
                format!("({})", parts.join(" AND "))
            } else {
                parts.join("")
            };
            match alt {
                Some(k) => format!("({typed} OR \"{k}\"*)"),
                None => typed,
            }
        })
        .collect();
    Some(terms.join(" AND "))
}

/// What was typed as an order number ("rm24-123", "RM24-00123", "RM2400123"), in the
/// form numbers are stored (`RM24-00123`): letters, the year's two digits, the sequence.
pub fn order_number(q: &str) -> Option<String> {
    let q = q.trim().to_uppercase();
    let letters: String = q.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let rest = &q[letters.len()..];
    let (year, seq) = match rest.split_once('-') {
        Some((y, n)) => (y, n),
        // Byte 2 may fall inside a letter ("O‘lmas"): only split on a character boundary.
        None if rest.len() > 2 && rest.is_char_boundary(2) => rest.split_at(2),
        None => return None,
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if letters.is_empty() || year.len() != 2 || !digits(year) || !digits(seq) || seq.len() > 6 {
        return None;
    }
    let n: u32 = seq.parse().ok()?;
    Some(format!("{letters}{year}-{n:05}"))
}

pub async fn search(db: &Db, by: &Actor, q: &str, limit: i64) -> DomainResult<SearchResults> {
    let shop = super::shop::load(db).await?;
    let Some(expr) = fts_expression(q, shop.country()) else {
        return Ok(SearchResults::default());
    };
    let by = by.clone();
    let limit = limit.clamp(1, 100);
    let number = order_number(q);
    Ok(db
        .read(move |c| {
            // An order number is found through its unique index; as a full-text prefix
            // ("RM24"*) it would merge the doclists of a year's worth of numbers.
            if let Some(n) = number {
                if let Some(o) = crate::db::orders::by_number(c, &n)? {
                    let mut out = SearchResults::default();
                    if super::orders::visible(&by, &o) {
                        out.orders.push(o);
                    }
                    return Ok(out);
                }
            }
            // Whole words first: FTS5 reads an exact term's doclist lazily from the
            // newest end, while a prefix term merges every matching doclist in full
            // ("Artel"* is 300 000 orders). When whole words already fill the page the
            // prefix query is not needed; a word still being typed falls through to it.
            let exact = expr.replace("\"*", "\"");
            let mut hits = crate::db::orders::search(c, &exact, limit * 2)?;
            if (hits.len() as i64) < limit * 2 && exact != expr {
                hits = crate::db::orders::search(c, &expr, limit * 2)?;
            }
            let mut out = SearchResults::default();
            for (kind, id) in hits {
                match kind.as_str() {
                    "c" if by.role != Role::Master && (out.customers.len() as i64) < limit => {
                        let scope = super::customers::scope(c, by.branches.only())?;
                        if !crate::db::customers::in_branches(c, id, scope)? {
                            continue;
                        }
                        if let Some(r) = crate::db::customers::get(c, id)? {
                            out.customers.push(r);
                        }
                    }
                    "o" if (out.orders.len() as i64) < limit => {
                        if let Some(o) = crate::db::orders::get(c, id)? {
                            if super::orders::visible(&by, &o) {
                                out.orders.push(o);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(out)
        })
        .await?)
}

/// The header box's results as they are typed: [`search`], and a bare number (`123`)
/// also as this year's order of that number (`RM26-00123`), which the desk reads off a
/// receipt or hears on the phone.
pub async fn suggest(
    db: &Db,
    clock: &super::clock::ShopClock,
    by: &Actor,
    q: &str,
    limit: i64,
) -> DomainResult<SearchResults> {
    let q: String = q.chars().take(100).collect();
    let mut out = search(db, by, &q, limit).await?;
    let t = q.trim();
    let Ok(n) = t.parse::<u32>() else {
        return Ok(out);
    };
    if t.len() > 6 || n == 0 {
        return Ok(out);
    }
    let shop = super::shop::load(db).await?;
    let year = clock.year_of(clock.now());
    let number = format!("{}{:02}-{n:05}", shop.order_prefix, year % 100);
    if out.orders.iter().any(|o| o.number == number) {
        return Ok(out);
    }
    let by = by.clone();
    let found = db
        .read(
            move |c| match crate::db::search::order_by_number(c, &number)? {
                Some(id) => crate::db::orders::get(c, id),
                None => Ok(None),
            },
        )
        .await?;
    if let Some(o) = found {
        if super::orders::visible(&by, &o) {
            out.orders.insert(0, o);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::phone::UZBEKISTAN;

    #[test]
    fn expressions() {
        assert_eq!(
            fts_expression("90 123 45 67", UZBEKISTAN).unwrap(),
            "\"998901234567\"*"
        );
        assert_eq!(
            fts_expression("1234567", UZBEKISTAN).unwrap(),
            "\"1234567\"*"
        );
        assert_eq!(
            fts_expression("iPhone 12", UZBEKISTAN).unwrap(),
            "\"iPhone\"* \"12\""
        );
        assert_eq!(
            fts_expression("x\" OR body:*", UZBEKISTAN).unwrap(),
            "\"x\" \"OR\"* \"body:*\"*"
        );
        assert!(fts_expression("  ", UZBEKISTAN).is_none());
        assert_eq!(
            fts_expression("Дилноза", UZBEKISTAN).unwrap(),
            "(\"Дилноза\"* OR \"dilnoza\"*)"
        );
        assert_eq!(
            fts_expression("O'lmas Xurshid 12", UZBEKISTAN).unwrap(),
            "((\"O\" AND \"lmas\"*) OR \"olmas\"*) AND (\"Xurshid\"* OR \"hurshid\"*) AND \"12\""
        );
        assert_eq!(
            fts_expression("iPhone 12 a", UZBEKISTAN).unwrap(),
            "\"iPhone\"* \"12\" \"a\"",
            "short numbers and single letters are whole words"
        );
    }

    #[test]
    fn order_numbers_as_typed() {
        for typed in ["RM24-00123", "rm24-123", " RM2400123 ", "Rm24-0123"] {
            assert_eq!(
                order_number(typed).as_deref(),
                Some("RM24-00123"),
                "{typed}"
            );
        }
        for other in [
            "Galaxy A52",
            "A52",
            "RM-12",
            "123456789",
            "RM24-",
            "iPhone 12",
        ] {
            assert_eq!(order_number(other), None, "{other}");
        }
    }
}
