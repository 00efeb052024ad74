//! The one reading of paging parameters (`page`, `offset`) from a query string: clamped
//! to a sane range, so no arithmetic on them can overflow (`page=9223372036854775807`
//! once dropped the connection).

/// Pages beyond this are refused as this one (a list that long is never paged by hand).
pub const MAX_PAGE: i64 = 1_000_000;
/// Rows skipped at most by an `offset`.
pub const MAX_OFFSET: i64 = 1_000_000_000;

/// A zero-based page number: missing or negative is the first page.
pub fn page_index(page: Option<i64>) -> i64 {
    page.unwrap_or(0).clamp(0, MAX_PAGE)
}

/// The rows skipped for `page` at `per` rows a page (`per` is at most a few thousand).
pub fn page_offset(page: Option<i64>, per: i64) -> i64 {
    page_index(page).saturating_mul(per.clamp(0, 100_000))
}

/// An `offset` parameter: missing or negative is 0.
pub fn offset(offset: Option<i64>) -> i64 {
    offset.unwrap_or(0).clamp(0, MAX_OFFSET)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn paging_never_overflows(p in proptest::option::of(proptest::num::i64::ANY), per in 0i64..=100_000) {
            let i = page_index(p);
            proptest::prop_assert!((0..=MAX_PAGE).contains(&i));
            // What the pagers do with it.
            let _ = (i + 1, i - 1, page_offset(p, per) + per);
            proptest::prop_assert!((0..=MAX_OFFSET).contains(&offset(p)));
        }
    }
}
