//! Templates: the placeholders, the built-in texts in four languages, the admin's own
//! versions, rendering, and the shop details every template may use.

use super::*;

/// The placeholders templates may use, shown in the editor.
pub const PLACEHOLDERS: [&str; 16] = [
    "customer_name",
    "order_number",
    "device",
    "status",
    "amount_due",
    "master_name",
    "comment",
    "due_date",
    "shop_name",
    "shop_address",
    "shop_hours",
    "date",
    "new_orders",
    "overdue_orders",
    "ready_not_collected",
    "missed_calls",
];

/// Replaces `{name}` with the value from `data`; unknown placeholders stay visible so a
/// typo shows in the preview instead of vanishing.
pub fn render(template: &str, data: &TemplateData) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close)
                if after[..close]
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_') =>
            {
                let name = &after[..close];
                match data.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The subject and body used for an event in a language: the admin's version, or the
/// built-in one.
pub fn template(c: &Connection, event: EventKind, lang: Language) -> DbResult<(String, String)> {
    if let Some(t) = tg::template(c, event.as_str(), lang.code())? {
        return Ok(t);
    }
    Ok(default_template(event, lang))
}

pub fn default_template(event: EventKind, lang: Language) -> (String, String) {
    let (s, b) = event.template_keys();
    let tr = Tr::new(lang);
    (tr.t(s).to_string(), tr.t(b).to_string())
}

/// Shop details every template may use.
pub fn add_shop_data(c: &Connection, data: &mut TemplateData) -> DbResult<()> {
    for (placeholder, key) in [
        ("shop_name", "shop.name"),
        ("shop_address", "shop.address"),
        ("shop_hours", "shop.hours"),
    ] {
        if !data.contains_key(placeholder) {
            data.insert(
                placeholder.into(),
                settings::get(c, key)?.unwrap_or_default(),
            );
        }
    }
    Ok(())
}

/// Sample values for previews and tests, in the viewer's language.
pub fn sample_data(tr: Tr) -> TemplateData {
    [
        ("customer_name", "Aziz Karimov"),
        ("order_number", "A-1042"),
        ("device", "Samsung Galaxy A52"),
        ("status", tr.t("notify.sample.status")),
        ("status_code", "ready"),
        ("amount_due", "350 000 so'm"),
        ("master_name", "Sherzod"),
        ("comment", tr.t("notify.sample.comment")),
        ("due_date", "25.11.2026"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
