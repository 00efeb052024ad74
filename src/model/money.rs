//! Money as integer minor units. The so'm has no minor unit in use, so amounts are whole
//! so'm, shown with a space between thousands: `1 250 000 so'm`.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("the amount must be a whole number of so'm, without letters")]
    NotANumber,
    #[error("the amount cannot be negative")]
    Negative,
    #[error("the amount is too large")]
    TooLarge,
}

/// Amounts above this are refused: a trillion so'm is far beyond any repair, and the cap
/// keeps every sum of lines far from i64 overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Parses a typed amount: digits with optional spaces, thin spaces or commas between
/// thousands, and an optional "so'm"/"сўм"/"сум"/"UZS" suffix.
pub fn parse_amount(input: &str) -> Result<i64, MoneyError> {
    let mut s = input.trim().to_lowercase();
    for suffix in ["so'm", "soʻm", "som", "сўм", "сум", "uzs"] {
        if let Some(rest) = s.strip_suffix(suffix) {
            s = rest.trim().to_string();
        }
    }
    if s.starts_with('-') {
        return Err(MoneyError::Negative);
    }
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | ',' | '_'))
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(MoneyError::NotANumber);
    }
    let v: i64 = digits.parse().map_err(|_| MoneyError::TooLarge)?;
    if v > MAX_AMOUNT {
        return Err(MoneyError::TooLarge);
    }
    Ok(v)
}

/// `1250000` → `1 250 000` (negative values keep their sign).
pub fn group_thousands(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

/// What the customer still owes on an order: against the total of its work lines once
/// there are any, against the estimate agreed at intake until then (a prepaid new order
/// owes the rest of the estimate, not "minus the prepayment"). Negative is an overpayment.
/// A promotion's discount (`discount`) comes off either.
pub fn due(total: i64, estimate: i64, discount: i64, paid: i64) -> i64 {
    let base = if total > 0 { total } else { estimate };
    base - discount - paid
}

/// SQL for [`due`] over an `orders` row aliased `o`, so lists and cards count the same way.
pub const DUE_SQL: &str =
    "(CASE WHEN o.total > 0 THEN o.total ELSE o.estimate END - o.discount - o.paid)";

/// What a promotion takes off an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscountRule {
    /// `value` is a percent (1..=100); otherwise an amount in so'm.
    pub percent: bool,
    pub value: i64,
    pub on_labour: bool,
    pub on_parts: bool,
}

/// The discount of `rule` on an order with these line sums: a percent of (or an amount up
/// to) the labour lines, the part lines or both. Before there are lines, a promotion on
/// both applies to the estimate agreed at intake. Never more than what it applies to;
/// percents round down to whole so'm.
pub fn discount(rule: DiscountRule, labour: i64, parts: i64, estimate: i64) -> i64 {
    let base = if labour + parts > 0 {
        (if rule.on_labour { labour } else { 0 }) + (if rule.on_parts { parts } else { 0 })
    } else if rule.on_labour && rule.on_parts {
        estimate
    } else {
        0
    };
    let d = if rule.percent {
        ((base as i128 * rule.value.clamp(0, 100) as i128) / 100) as i64
    } else {
        rule.value
    };
    d.clamp(0, base.max(0))
}

/// `1 250 000 so'm` with the currency's sign.
pub fn format(v: i64, currency: &str) -> String {
    let sign = match currency {
        "UZS" => "so'm",
        other => other,
    };
    format!("{} {sign}", group_thousands(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discounts_by_kind_percent_and_amount() {
        let pct = |v, l, p| DiscountRule {
            percent: true,
            value: v,
            on_labour: l,
            on_parts: p,
        };
        let amt = |v, l, p| DiscountRule {
            percent: false,
            value: v,
            on_labour: l,
            on_parts: p,
        };
        assert_eq!(discount(pct(10, true, false), 100_000, 300_000, 0), 10_000);
        assert_eq!(discount(pct(10, false, true), 100_000, 300_000, 0), 30_000);
        assert_eq!(discount(pct(10, true, true), 100_000, 300_000, 0), 40_000);
        assert_eq!(discount(pct(33, true, true), 10, 0, 0), 3, "rounds down");
        assert_eq!(
            discount(amt(50_000, true, false), 20_000, 300_000, 0),
            20_000,
            "capped"
        );
        assert_eq!(
            discount(amt(50_000, true, true), 0, 0, 200_000),
            50_000,
            "estimate"
        );
        assert_eq!(discount(amt(50_000, true, false), 0, 0, 200_000), 0);
        assert_eq!(due(400_000, 0, 40_000, 100_000), 260_000);
        assert_eq!(due(0, 200_000, 50_000, 0), 150_000);
    }

    #[test]
    fn formatting() {
        assert_eq!(format(1_250_000, "UZS"), "1 250 000 so'm");
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1 000");
        assert_eq!(group_thousands(-45_000), "-45 000");
    }

    #[test]
    fn due_counts_the_estimate_until_there_are_lines() {
        assert_eq!(due(0, 350_000, 0, 100_000), 250_000, "prepaid new order");
        assert_eq!(
            due(0, 0, 0, 100_000),
            -100_000,
            "prepaid without an estimate"
        );
        assert_eq!(
            due(200_000, 350_000, 0, 300_000),
            -100_000,
            "lines replace the estimate"
        );
        assert_eq!(due(200_000, 0, 0, 200_000), 0);
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_amount("1 250 000"), Ok(1_250_000));
        assert_eq!(parse_amount("1,250,000 so'm"), Ok(1_250_000));
        assert_eq!(parse_amount("350000 сўм"), Ok(350_000));
        assert_eq!(parse_amount("-5"), Err(MoneyError::Negative));
        assert_eq!(parse_amount("12.5"), Err(MoneyError::NotANumber));
        assert_eq!(parse_amount("abc"), Err(MoneyError::NotANumber));
        assert_eq!(
            parse_amount("99999999999999999999"),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(parse_amount("2000000000000"), Err(MoneyError::TooLarge));
    }
}
