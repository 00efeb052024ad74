use serde::{Deserialize, Serialize};

pub type UserId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The owner or manager: everything.
    Admin,
    /// Front desk and call center.
    Operator,
    /// Repair technician.
    Master,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Master];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Master => "master",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "master" => Ok(Role::Master),
            other => Err(format!(
                "unknown role {other:?} (expected admin, operator or master)"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four UI languages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
pub enum Language {
    /// Uzbek, Latin script.
    #[default]
    #[serde(rename = "uz")]
    UzLatn,
    /// Uzbek, Cyrillic script.
    #[serde(rename = "uz-Cyrl")]
    UzCyrl,
    #[serde(rename = "ru")]
    Ru,
    #[serde(rename = "en")]
    En,
}

impl Language {
    pub const ALL: [Language; 4] = [
        Language::UzLatn,
        Language::UzCyrl,
        Language::Ru,
        Language::En,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Language::UzLatn => "uz",
            Language::UzCyrl => "uz-Cyrl",
            Language::Ru => "ru",
            Language::En => "en",
        }
    }

    /// The language's own name, as shown in the switcher.
    pub fn native_name(self) -> &'static str {
        match self {
            Language::UzLatn => "Oʻzbekcha",
            Language::UzCyrl => "Ўзбекча",
            Language::Ru => "Русский",
            Language::En => "English",
        }
    }

    pub fn from_code(code: &str) -> Option<Language> {
        Language::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(code))
    }

    /// Picks the best language from an Accept-Language header.
    pub fn from_accept_language(header: &str) -> Option<Language> {
        header.split(',').find_map(|part| {
            let tag = part.split(';').next()?.trim();
            Language::from_code(tag).or_else(|| {
                let primary = tag.split('-').next()?;
                match primary.to_ascii_lowercase().as_str() {
                    "uz" => Some(Language::UzLatn),
                    "ru" => Some(Language::Ru),
                    "en" => Some(Language::En),
                    _ => None,
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language() {
        assert_eq!(
            Language::from_accept_language("ru-RU,ru;q=0.9,en;q=0.8"),
            Some(Language::Ru)
        );
        assert_eq!(
            Language::from_accept_language("uz-Cyrl-UZ"),
            Some(Language::UzLatn)
        );
        assert_eq!(
            Language::from_accept_language("uz-Cyrl"),
            Some(Language::UzCyrl)
        );
        assert_eq!(Language::from_accept_language("de"), None);
    }
}
