//! The one CSV writer for every export (customers, orders, calls).
//!
//! RFC 4180 quoting, a BOM so spreadsheet programs read UTF-8, and OWASP's guidance
//! against CSV (formula) injection: a cell whose text begins — after any leading
//! whitespace — with `=`, `+`, `-`, `@`, TAB, CR or LF would be read as a formula by
//! Excel, LibreOffice or Google Sheets (`=HYPERLINK(...)`, `+cmd|' /C calc'!A0`), so it is
//! written with a leading `'`, which makes it text. A cell that is one plain number — an
//! amount such as `-50000`, or one phone number such as `+998901234567` — is written as
//! it is: it holds no function or reference, so nothing can run, and it stays a number the
//! spreadsheet can sort, sum or dial.

use std::borrow::Cow;

/// The characters that start a formula in common spreadsheet programs.
const TRIGGERS: [char; 7] = ['=', '+', '-', '@', '\t', '\r', '\n'];

/// Writes `header` and `rows` as one CSV document.
pub fn write(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = String::from("\u{feff}");
    push_row(&mut out, header.iter().copied());
    for r in rows {
        push_row(&mut out, r.iter().map(String::as_str));
    }
    out
}

fn push_row<'a>(out: &mut String, cells: impl Iterator<Item = &'a str>) {
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(&neutralise(c)));
    }
    out.push_str("\r\n");
}

/// The cell as a spreadsheet must read it: text, never a formula.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    let starts_formula =
        cell.starts_with(TRIGGERS) || cell.trim_start().starts_with(['=', '+', '-', '@']);
    if starts_formula && !plain_number(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `-12`, `+998901234567`, `-1500.50`: a sign, digits, at most one decimal point.
fn plain_number(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut parts = body.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 4180 quoting; `;` too, the list separator of Russian and Uzbek spreadsheets.
fn quote(s: &str) -> Cow<'_, str> {
    if s.contains([',', ';', '"', '\n', '\r', '\t']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formulas_become_text_and_numbers_stay_numbers() {
        for (cell, out) in [
            (
                "=HYPERLINK(\"http://evil\",\"x\")",
                "'=HYPERLINK(\"http://evil\",\"x\")",
            ),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("@SUM(1,1)", "'@SUM(1,1)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("  =1+1", "'  =1+1"),
            ("+998 90 123 45 67", "'+998 90 123 45 67"),
            ("+998901234567", "+998901234567"),
            ("-50000", "-50000"),
            ("1500.50", "1500.50"),
            ("Aziza", "Aziza"),
            ("O‘lmas", "O‘lmas"),
            ("", ""),
            ("-", "'-"),
        ] {
            assert_eq!(neutralise(cell), out, "{cell:?}");
        }
        let doc = write(
            &["a", "b"],
            [vec!["=1+1".to_string(), "x;y".to_string()]].into_iter(),
        );
        assert_eq!(doc, "\u{feff}a,b\r\n'=1+1,\"x;y\"\r\n");
    }

    proptest! {
        /// Whatever a cell holds, the written cell never starts a formula, unless it is a
        /// plain number; and reading it back gives the cell (after the neutralising quote).
        #[test]
        fn no_cell_is_a_formula(cell in "\\PC{0,12}|[=+\\-@\\t\\r\\n ]{1,3}\\PC{0,8}|[+\\-]?[0-9]{1,14}") {
            let n = neutralise(&cell);
            let t = n.trim_start();
            prop_assert!(!n.starts_with(TRIGGERS) || plain_number(&n));
            prop_assert!(!t.starts_with(['=', '+', '-', '@']) || plain_number(&n));
            let quoted = format!("'{}", cell);
            prop_assert!(n == cell || n == quoted);
            let doc = write(&["h"], [vec![cell.clone()]].into_iter());
            let body = doc.strip_prefix("\u{feff}h\r\n").unwrap().strip_suffix("\r\n").unwrap();
            let unq = if body.starts_with('"') { body[1..body.len() - 1].replace("\"\"", "\"") } else { body.to_string() };
            prop_assert_eq!(unq, n.into_owned());
        }
    }
}
