//! Phone numbers in E.164, parsed from whatever staff type: `90 123 45 67`,
//! `8 90 1234567`, `+998-90-123-45-67`, `(90) 123-45-67`, `998901234567`...

use std::fmt;

/// A country's calling code and its national significant number length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country {
    pub calling_code: &'static str,
    pub national_len: usize,
    /// Trunk prefix dialled before national numbers ("8" in the former USSR, "0" in most).
    pub trunk_prefix: &'static str,
}

pub const UZBEKISTAN: Country = Country {
    calling_code: "998",
    national_len: 9,
    trunk_prefix: "8",
};

/// Countries the shops' customers commonly call from, for numbers typed with a `+`.
const KNOWN: &[Country] = &[
    UZBEKISTAN,
    Country {
        calling_code: "7",
        national_len: 10,
        trunk_prefix: "8",
    }, // Russia, Kazakhstan
    Country {
        calling_code: "992",
        national_len: 9,
        trunk_prefix: "8",
    }, // Tajikistan
    Country {
        calling_code: "996",
        national_len: 9,
        trunk_prefix: "0",
    }, // Kyrgyzstan
    Country {
        calling_code: "993",
        national_len: 8,
        trunk_prefix: "8",
    }, // Turkmenistan
    Country {
        calling_code: "90",
        national_len: 10,
        trunk_prefix: "0",
    }, // Turkey
    Country {
        calling_code: "82",
        national_len: 10,
        trunk_prefix: "0",
    }, // Korea (mobile 10)
];

impl Country {
    pub fn from_calling_code(code: &str) -> Option<Country> {
        KNOWN.iter().copied().find(|c| c.calling_code == code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is empty")]
    Empty,
    #[error("the phone number may contain only digits, spaces, + - ( ) / and .")]
    BadCharacter,
    #[error("the phone number has the wrong number of digits")]
    WrongLength,
}

/// A phone number in E.164 form, e.g. `+998901234567`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a typed number; national forms use `default` country.
    pub fn parse(input: &str, default: Country) -> Result<PhoneNumber, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let mut digits = String::with_capacity(16);
        let mut plus = false;
        for (i, ch) in trimmed.chars().enumerate() {
            match ch {
                '0'..='9' => digits.push(ch),
                '+' if i == 0 => plus = true,
                ' ' | '-' | '(' | ')' | '/' | '.' | '\u{a0}' => {}
                _ => return Err(PhoneError::BadCharacter),
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        // International prefix typed as digits.
        if !plus {
            if let Some(rest) = digits.strip_prefix("00") {
                digits = rest.to_string();
                plus = true;
            }
        }
        let e164 = if plus {
            let c = KNOWN
                .iter()
                .find(|c| digits.starts_with(c.calling_code))
                .copied();
            match c {
                Some(c) if digits.len() == c.calling_code.len() + c.national_len => digits,
                Some(_) => return Err(PhoneError::WrongLength),
                // Unknown country: accept plausible E.164 lengths.
                None if (8..=15).contains(&digits.len()) => digits,
                None => return Err(PhoneError::WrongLength),
            }
        } else if digits.len() == default.national_len {
            format!("{}{digits}", default.calling_code)
        } else if digits.len() == default.calling_code.len() + default.national_len
            && digits.starts_with(default.calling_code)
        {
            digits
        } else if !default.trunk_prefix.is_empty()
            && digits.starts_with(default.trunk_prefix)
            && digits.len() == default.trunk_prefix.len() + default.national_len
        {
            format!(
                "{}{}",
                default.calling_code,
                &digits[default.trunk_prefix.len()..]
            )
        } else {
            return Err(PhoneError::WrongLength);
        };
        Ok(PhoneNumber(format!("+{e164}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits without the `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// Stored values are already E.164.
    pub fn from_e164_unchecked(s: String) -> PhoneNumber {
        PhoneNumber(s)
    }

    /// `+998 90 123 45 67` for Uzbek numbers; E.164 otherwise.
    pub fn display(&self) -> String {
        let d = self.digits();
        if let Some(n) = d.strip_prefix("998") {
            if n.len() == 9 {
                return format!("+998 {} {} {} {}", &n[..2], &n[2..5], &n[5..7], &n[7..]);
            }
        }
        self.0.clone()
    }

    /// Tokens a search index needs so that any typed fragment finds the number: all
    /// digits, the national part, and the last seven digits.
    pub fn search_tokens(&self) -> String {
        let d = self.digits();
        let mut t = vec![d.to_string()];
        if let Some(n) = d.strip_prefix("998") {
            t.push(n.to_string());
        }
        if d.len() > 7 {
            t.push(d[d.len() - 7..].to_string());
        }
        t.join(" ")
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_forms_find_the_same_number() {
        let want = "+998901234567";
        for typed in [
            "90 123 45 67",
            "901234567",
            "8 90 1234567",
            "8(90)123-45-67",
            "+998-90-123-45-67",
            "+998 (90) 123 45 67",
            "998901234567",
            "00998901234567",
            "90/123/45/67",
            "90.123.45.67",
            " +998901234567 ",
        ] {
            assert_eq!(
                PhoneNumber::parse(typed, UZBEKISTAN).map(|p| p.0),
                Ok(want.to_string()),
                "{typed}"
            );
        }
    }

    #[test]
    fn bad_numbers_are_refused() {
        for (typed, err) in [
            ("", PhoneError::Empty),
            ("  ", PhoneError::Empty),
            ("90 123 45 6", PhoneError::WrongLength),
            ("90 123 45 678", PhoneError::WrongLength),
            ("+99890123456", PhoneError::WrongLength),
            ("90-ABC-45-67", PhoneError::BadCharacter),
            ("9+0123", PhoneError::BadCharacter),
            ("+7 916 123 45 6", PhoneError::WrongLength),
        ] {
            assert_eq!(PhoneNumber::parse(typed, UZBEKISTAN), Err(err), "{typed:?}");
        }
    }

    #[test]
    fn foreign_numbers_with_plus() {
        assert_eq!(
            PhoneNumber::parse("+7 916 123-45-67", UZBEKISTAN)
                .unwrap()
                .as_str(),
            "+79161234567"
        );
    }

    #[test]
    fn display_and_tokens() {
        let p = PhoneNumber::parse("901234567", UZBEKISTAN).unwrap();
        assert_eq!(p.display(), "+998 90 123 45 67");
        assert_eq!(p.search_tokens(), "998901234567 901234567 1234567");
    }
}
