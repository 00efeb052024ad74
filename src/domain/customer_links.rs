//! Linking a customer's Telegram chat to their order (issue 14, point 6). The receipt
//! carries an unguessable one-time code (100 bits, expiring) as the bot's deep link in
//! its QR code and printed beside it; the bot links a chat only for such a code. Order
//! numbers are sequential, so a number alone must link nothing.

use rand::Rng;
use sha2::{Digest, Sha256};

use super::DomainResult;
use crate::db::{customer_links as q, settings, Conn as Connection, Db, DbResult};

/// How long a printed code links (a customer may scan the receipt days later).
pub const TTL_SECS: i64 = 30 * 86_400;
/// 20 characters of a 32-letter alphabet: 100 bits.
const CODE_LEN: usize = 20;
// At least the 80 bits the issue asks for: log2(32) = 5 bits a character.
const _: () = assert!(CODE_LEN * 5 >= 80);
/// Lowercase letters and digits without the look-alikes 0/o and 1/l, for typing.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A code for the receipt of one order.
#[derive(Debug, Clone)]
pub struct CustomerLink {
    pub code: String,
    /// `https://t.me/<bot>?start=o<code>`.
    pub url: String,
    pub expires_at: i64,
}

fn new_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..CODE_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// What was typed or scanned, in the form codes are made: lowercase, without the dashes
/// or spaces a person may add.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

fn hash(code: &str) -> Vec<u8> {
    Sha256::digest(normalise(code).as_bytes()).to_vec()
}

/// Issues a fresh code for `order_number`'s receipt; None (nothing stored) while the
/// bot is not set up, since nobody could use it.
pub async fn issue(db: &Db, order_number: &str) -> DomainResult<Option<CustomerLink>> {
    let code = new_code();
    let (h, number) = (hash(&code), order_number.to_string());
    let now = crate::db::now();
    let expires_at = now + TTL_SECS;
    let bot = db
        .write(move |c| {
            let bot = settings::get(c, "telegram.bot_username")?.unwrap_or_default();
            if !bot.is_empty() {
                q::insert(c, &h, &number, expires_at, now)?;
            }
            Ok(bot)
        })
        .await?;
    Ok(
        super::notifications::customer_deep_link(&bot, &code).map(|url| CustomerLink {
            code,
            url,
            expires_at,
        }),
    )
}

/// [`issue`] inside a write already under way (the invitation in a customer's first
/// SMS).
pub fn issue_in(c: &Connection, order_number: &str, now: i64) -> DbResult<Option<CustomerLink>> {
    let bot = settings::get(c, "telegram.bot_username")?.unwrap_or_default();
    if bot.is_empty() {
        return Ok(None);
    }
    let code = new_code();
    let expires_at = now + TTL_SECS;
    q::insert(c, &hash(&code), order_number, expires_at, now)?;
    Ok(
        super::notifications::customer_deep_link(&bot, &code).map(|url| CustomerLink {
            code,
            url,
            expires_at,
        }),
    )
}

/// Uses up a code (inside the bot's write): the order number it links, when it is a live
/// code.
pub fn consume(c: &Connection, code: &str, now: i64) -> DbResult<Option<String>> {
    if code.len() > 64 {
        return Ok(None);
    }
    q::consume(c, &hash(code), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_long_random_and_typeable() {
        let a = new_code();
        let b = new_code();
        assert_ne!(a, b);
        assert_eq!(a.len(), CODE_LEN);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert_eq!(hash(&a.to_uppercase()), hash(&a));
        assert_eq!(hash(&format!("{}-{}", &a[..10], &a[10..])), hash(&a));
    }
}
