//! The channels a message can take. A channel is one implementation of [`Channel`]'s
//! addressing ([`ChannelKind`]) plus its settings and its sender in `crate::notify`; the
//! rules, templates and `enqueue` do not change when one is added (SMS, issue 18, was such
//! an addition: a `Channel` code, [`SmsChannel`] here, an entry in [`CHANNELS`], a rule,
//! and `notify::sms`).

use super::*;

/// One resolved delivery: channel, address, language, staff user.
pub struct Target {
    pub channel: Channel,
    pub address: String,
    pub language: Language,
    pub user_id: Option<i64>,
}

/// How a channel finds a recipient's addresses.
pub trait ChannelKind: Sync {
    /// The code the outbox stores (and the rules and the sender key on).
    fn channel(&self) -> Channel;

    /// The recipient's addresses on this channel, each with the language to write in
    /// (`fallback` when the recipient's is unknown). Empty when they have none.
    fn addresses(&self, c: &Connection, r: &Recipient, fallback: Language)
        -> DbResult<Vec<Target>>;
}

/// Every channel, in the order a recipient's deliveries are queued.
pub const CHANNELS: &[&dyn ChannelKind] = &[&TelegramChannel, &EmailChannel, &SmsChannel];

/// A staff member's language when they are active; None for a disabled or unknown user.
fn staff_language(c: &Connection, user: UserId, fallback: Language) -> DbResult<Option<Language>> {
    Ok(match tg::user_brief(c, user)? {
        Some((lang, _, true)) => Some(Language::from_code(&lang).unwrap_or(fallback)),
        _ => None,
    })
}

/// The chats linked to the bot (staff and customers) and single chats ("send test", bot
/// replies); a chat that blocked the bot gets nothing.
pub struct TelegramChannel;

impl ChannelKind for TelegramChannel {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    fn addresses(
        &self,
        c: &Connection,
        r: &Recipient,
        fallback: Language,
    ) -> DbResult<Vec<Target>> {
        let target = |chat: i64, language, user_id| Target {
            channel: Channel::Telegram,
            address: chat.to_string(),
            language,
            user_id,
        };
        Ok(match r {
            Recipient::Staff(user) => match staff_language(c, *user, fallback)? {
                Some(language) => tg::chats_of_user(c, *user)?
                    .into_iter()
                    .map(|chat| target(chat, language, Some(*user)))
                    .collect(),
                None => Vec::new(),
            },
            Recipient::Customer {
                customer_id,
                language,
                ..
            } => tg::chats_of_customer(c, *customer_id)?
                .into_iter()
                .map(|(chat, chat_lang)| {
                    let language = language
                        .or_else(|| chat_lang.as_deref().and_then(Language::from_code))
                        .unwrap_or(fallback);
                    target(chat, language, None)
                })
                .collect(),
            Recipient::TelegramChat(chat) if !tg::is_blocked(c, *chat)? => {
                let language = tg::chat(c, *chat)?
                    .and_then(|ch| ch.language)
                    .and_then(|l| Language::from_code(&l))
                    .unwrap_or(fallback);
                vec![target(*chat, language, None)]
            }
            Recipient::TelegramChat(_) | Recipient::Email(_) | Recipient::Phone(_) => Vec::new(),
        })
    }
}

/// Staff members' own addresses (when they gave one), a customer's address from the
/// order, and single addresses (summaries, "send test").
pub struct EmailChannel;

impl ChannelKind for EmailChannel {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn addresses(
        &self,
        c: &Connection,
        r: &Recipient,
        fallback: Language,
    ) -> DbResult<Vec<Target>> {
        let target = |address: &str, language, user_id| Target {
            channel: Channel::Email,
            address: address.trim().to_string(),
            language,
            user_id,
        };
        Ok(match r {
            Recipient::Staff(user) => match staff_language(c, *user, fallback)? {
                Some(language) => crate::db::accounts::active_user_email(c, *user)?
                    .map(|a| target(&a, language, Some(*user)))
                    .into_iter()
                    .collect(),
                None => Vec::new(),
            },
            Recipient::Customer {
                email, language, ..
            } => email
                .as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| target(e, language.unwrap_or(fallback), None))
                .into_iter()
                .collect(),
            Recipient::Email(e) => vec![target(e, fallback, None)],
            Recipient::TelegramChat(_) | Recipient::Phone(_) => Vec::new(),
        })
    }
}

/// Customers on their main phone when no Telegram chat of theirs is linked (Telegram when
/// linked, else SMS), and single numbers ("send test"). Nothing while no gateway is set up.
pub struct SmsChannel;

impl ChannelKind for SmsChannel {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn addresses(
        &self,
        c: &Connection,
        r: &Recipient,
        fallback: Language,
    ) -> DbResult<Vec<Target>> {
        if !sms::configured(c)? {
            return Ok(Vec::new());
        }
        let target = |address: String, language| Target {
            channel: Channel::Sms,
            address,
            language,
            user_id: None,
        };
        Ok(match r {
            Recipient::Customer {
                customer_id,
                language,
                ..
            } => {
                if !tg::chats_of_customer(c, *customer_id)?.is_empty() {
                    return Ok(Vec::new());
                }
                crate::db::customers::phones_of(c, *customer_id)?
                    .into_iter()
                    .next()
                    .map(|p| target(p, language.unwrap_or(fallback)))
                    .into_iter()
                    .collect()
            }
            Recipient::Phone(p) => vec![target(p.clone(), fallback)],
            Recipient::Staff(_) | Recipient::TelegramChat(_) | Recipient::Email(_) => Vec::new(),
        })
    }
}
