//! Customer import from CSV and Excel files (issue 18).
//!
//! A file becomes a *batch*: uploaded as a draft (the file is kept), its columns mapped
//! to customer fields, previewed with every row's verdict (new, matches an existing
//! customer by phone, repeats an earlier row of the same file, invalid and why), then
//! imported or cancelled. The import is one unit of work: every valid row goes in, or —
//! on any failure — none. A row whose phone belongs to a customer merges into them (empty
//! fields filled, phones and tags added; nothing they had is overwritten). An imported
//! batch can be undone: the customers it created go (unless they have orders or calls,
//! or were edited since), the ones it merged into get back what they had (unless edited
//! since).
//!
//! Text files are decoded as they come here: UTF-8 (with or without a BOM), UTF-16 (by its
//! BOM or its zero bytes) and Windows-1251 (what Excel in Russian and Uzbek Cyrillic
//! saves as "CSV"); a chosen encoding overrides the guess. Workbooks (xlsx, xls, ods) are
//! read by their stored cell values: a formula is never evaluated, a CSV cell that looks
//! like one (`=HYPERLINK(...)`) makes its row invalid.

pub use crate::db::imports::BatchRow;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::customers::{self as cust, Clean, CustomerInput};
use super::work::{Store, Tx};
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::imports as q;
use crate::db::Conn;
use crate::events::{Audience, Event};
use crate::model::phone::Country;

/// The largest file taken (32 MiB: ~400 000 typical customer rows of CSV).
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// The most data rows in one file; a bigger list is split into several imports.
pub const MAX_ROWS: usize = 200_000;
/// The most columns a sheet may have.
pub const MAX_COLUMNS: usize = 100;
/// A workbook may unpack to at most this much XML (a zip bomb is refused before it is
/// unpacked).
const MAX_UNPACKED: u64 = 512 * 1024 * 1024;

/// Text encodings of CSV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Encoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1251")]
    Windows1251,
    #[serde(rename = "utf-16le")]
    Utf16Le,
    #[serde(rename = "utf-16be")]
    Utf16Be,
}

impl Encoding {
    pub const ALL: [Encoding; 4] = [
        Encoding::Utf8,
        Encoding::Windows1251,
        Encoding::Utf16Le,
        Encoding::Utf16Be,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1251 => "windows-1251",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
        }
    }

    /// A code as typed: `utf-8`, `utf8`, `cp1251`, `windows-1251`, `utf-16le`...
    /// Empty or `auto` is `None` (detect).
    pub fn parse(typed: &str) -> DomainResult<Option<Encoding>> {
        let t = typed.trim().to_ascii_lowercase().replace('_', "-");
        Ok(Some(match t.as_str() {
            "" | "auto" => return Ok(None),
            "utf-8" | "utf8" => Encoding::Utf8,
            "windows-1251" | "cp1251" | "win1251" | "cp-1251" => Encoding::Windows1251,
            "utf-16le" | "utf-16" | "utf16" | "utf16le" => Encoding::Utf16Le,
            "utf-16be" | "utf16be" => Encoding::Utf16Be,
            _ => {
                return Err(DomainError::invalid(
                    Msg::new("err.import.encoding_unknown").with("value", typed.trim()),
                ))
            }
        }))
    }
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Not imported.
    #[serde(rename = "")]
    Ignore,
    /// Several name columns (surname, first name) are joined with a space.
    Name,
    /// One or more numbers (a cell may list several, separated by `,` or `;`).
    Phone,
    Company,
    Tags,
    /// Several note columns are joined line by line.
    Notes,
    Language,
    Birthday,
    Email,
    Address,
    Telegram,
    /// `person`/`company` (or `физ`/`юр`, `jismoniy`/`yuridik`).
    Kind,
    /// Marketing opt-in: yes/no, 1/0, да/нет, ha/yo'q.
    OptIn,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::Ignore,
        Field::Name,
        Field::Phone,
        Field::Company,
        Field::Tags,
        Field::Notes,
        Field::Language,
        Field::Birthday,
        Field::Email,
        Field::Address,
        Field::Telegram,
        Field::Kind,
        Field::OptIn,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Field::Ignore => "",
            Field::Name => "name",
            Field::Phone => "phone",
            Field::Company => "company",
            Field::Tags => "tags",
            Field::Notes => "notes",
            Field::Language => "language",
            Field::Birthday => "birthday",
            Field::Email => "email",
            Field::Address => "address",
            Field::Telegram => "telegram",
            Field::Kind => "kind",
            Field::OptIn => "opt_in",
        }
    }

    pub fn from_code(code: &str) -> DomainResult<Field> {
        let c = code.trim();
        Field::ALL
            .into_iter()
            .find(|f| f.code() == c || (c == "-" && *f == Field::Ignore))
            .ok_or_else(|| {
                DomainError::invalid(Msg::new("err.import.field_unknown").with("value", c))
            })
    }

    /// The catalogue key of the field's name.
    pub fn label(self) -> &'static str {
        match self {
            Field::Ignore => "outbound.field.ignore",
            Field::Name => "outbound.field.name",
            Field::Phone => "outbound.field.phone",
            Field::Company => "outbound.field.company",
            Field::Tags => "outbound.field.tags",
            Field::Notes => "outbound.field.notes",
            Field::Language => "outbound.field.language",
            Field::Birthday => "outbound.field.birthday",
            Field::Email => "outbound.field.email",
            Field::Address => "outbound.field.address",
            Field::Telegram => "outbound.field.telegram",
            Field::Kind => "outbound.field.kind",
            Field::OptIn => "outbound.field.opt_in",
        }
    }

    /// A header cell's guess: the usual words in Uzbek (both scripts), Russian and English.
    fn guess(header: &str) -> Field {
        let h = header.trim().to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| h.contains(w));
        if has(&["telegram", "телеграм"]) {
            Field::Telegram
        } else if has(&[
            "phone",
            "tel",
            "тел",
            "mobil",
            "моб",
            "номер",
            "raqam",
            "рақам",
        ]) {
            Field::Phone
        } else if has(&["mail", "почта"]) {
            Field::Email
        } else if has(&[
            "company",
            "компан",
            "организац",
            "kompaniya",
            "firma",
            "фирма",
            "tashkilot",
            "ташкилот",
        ]) {
            Field::Company
        } else if has(&["tag", "тег", "метк", "teg", "belgi", "белги"]) {
            Field::Tags
        } else if has(&[
            "note",
            "comment",
            "примеч",
            "коммент",
            "izoh",
            "изоҳ",
            "изох",
        ]) {
            Field::Notes
        } else if has(&["lang", "язык", "til", "тил"]) {
            Field::Language
        } else if has(&["birth", "рожд", "tug'il", "tugil", "туғил", "тугил", "dob"])
        {
            Field::Birthday
        } else if has(&["address", "адрес", "manzil", "манзил"]) {
            Field::Address
        } else if has(&["opt", "рассыл", "согласи", "rozi", "рози", "marketing"]) {
            Field::OptIn
        } else if has(&["kind", "type", "тип", "turi", "тури"]) {
            Field::Kind
        } else if has(&[
            "name",
            "имя",
            "фио",
            "ф.и.о",
            "фамил",
            "ism",
            "исм",
            "familiya",
            "фамилия",
            "mijoz",
            "мижоз",
            "клиент",
            "client",
            "customer",
            "f.i.sh",
            "ф.и.ш",
            "fish",
        ]) {
            Field::Name
        } else {
            Field::Ignore
        }
    }
}

/// How the sheet's columns become a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mapping {
    /// The first row names the columns (and is not imported).
    pub header: bool,
    /// One field per column, in order (`""`: not imported).
    pub columns: Vec<Field>,
}

impl Mapping {
    /// `name,phone,,tags` (one field per column, empty: not imported).
    pub fn parse_list(typed: &str, header: bool) -> DomainResult<Mapping> {
        Ok(Mapping {
            header,
            columns: typed
                .split(',')
                .map(Field::from_code)
                .collect::<DomainResult<_>>()?,
        })
    }

    fn check(&self) -> DomainResult<()> {
        if !self.columns.contains(&Field::Phone) {
            return Err(DomainError::invalid("err.import.no_phone_column"));
        }
        if !self.columns.contains(&Field::Name) && !self.columns.contains(&Field::Company) {
            return Err(DomainError::invalid("err.import.no_name_column"));
        }
        Ok(())
    }
}

/// A file read into rows of text cells.
#[derive(Debug, Clone)]
pub struct Sheet {
    /// `csv` or `excel`.
    pub format: &'static str,
    /// The CSV's encoding (detected or chosen); `None` for a workbook.
    pub encoding: Option<Encoding>,
    /// (row number in the file, cells); blank rows are left out.
    pub rows: Vec<(usize, Vec<String>)>,
    pub columns: usize,
}

/// Reads a CSV or Excel file. `encoding` overrides the detection for CSV.
pub fn read_sheet(bytes: &[u8], encoding: Option<Encoding>) -> DomainResult<Sheet> {
    if bytes.len() > MAX_BYTES {
        return Err(too_large());
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DomainError::invalid("err.import.empty"));
    }
    let (format, encoding, rows) =
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
            ("excel", None, read_workbook(bytes)?)
        } else {
            let (text, enc) = decode(bytes, encoding)?;
            ("csv", Some(enc), parse_csv(&text)?)
        };
    let columns = rows.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    if rows.is_empty() {
        return Err(DomainError::invalid("err.import.empty"));
    }
    if columns > MAX_COLUMNS {
        return Err(DomainError::invalid(
            Msg::new("err.import.too_many_columns").with("max", MAX_COLUMNS),
        ));
    }
    Ok(Sheet {
        format,
        encoding,
        rows,
        columns,
    })
}

fn too_large() -> DomainError {
    DomainError::invalid(Msg::new("err.import.too_large").with("max", MAX_BYTES / (1024 * 1024)))
}

fn too_many_rows() -> DomainError {
    DomainError::invalid(Msg::new("err.import.too_many_rows").with("max", MAX_ROWS))
}

/// The file's text and its encoding: the chosen one, else by BOM, zero bytes (UTF-16),
/// UTF-8 validity, and Windows-1251 for the rest (the legacy encoding of Cyrillic CSVs).
pub fn decode(bytes: &[u8], chosen: Option<Encoding>) -> DomainResult<(String, Encoding)> {
    let enc = match chosen {
        Some(e) => e,
        None => detect(bytes)?,
    };
    let not_in = |line: usize| {
        if chosen.is_none() && matches!(enc, Encoding::Utf16Le | Encoding::Utf16Be) {
            // Guessed from zero bytes, and it does not decode: binary, not text.
            return DomainError::invalid("err.import.not_a_table");
        }
        DomainError::invalid(
            Msg::new("err.import.bad_encoding")
                .with("encoding", enc.code())
                .with("line", line),
        )
    };
    let text = match enc {
        Encoding::Utf8 => {
            let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            match std::str::from_utf8(b) {
                Ok(s) => s.to_string(),
                Err(e) => {
                    let line = b[..e.valid_up_to()].iter().filter(|&&c| c == b'\n').count() + 1;
                    return Err(not_in(line));
                }
            }
        }
        Encoding::Windows1251 => {
            let (s, bad) = encoding_rs::WINDOWS_1251.decode_without_bom_handling(bytes);
            if bad {
                return Err(not_in(first_bad_line(&s)));
            }
            s.into_owned()
        }
        Encoding::Utf16Le | Encoding::Utf16Be => {
            let (codec, bom): (&'static encoding_rs::Encoding, &[u8]) = if enc == Encoding::Utf16Le
            {
                (encoding_rs::UTF_16LE, b"\xFF\xFE")
            } else {
                (encoding_rs::UTF_16BE, b"\xFE\xFF")
            };
            let b = bytes.strip_prefix(bom).unwrap_or(bytes);
            let (s, bad) = codec.decode_without_bom_handling(b);
            if bad {
                return Err(not_in(first_bad_line(&s)));
            }
            s.into_owned()
        }
    };
    // Control characters other than tabs and line breaks do not occur in a table's text.
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{0c}'))
    {
        return Err(DomainError::invalid("err.import.not_a_table"));
    }
    Ok((text, enc))
}

fn first_bad_line(s: &str) -> usize {
    let at = s.find('\u{FFFD}').unwrap_or(s.len());
    s[..at].matches('\n').count() + 1
}

fn detect(bytes: &[u8]) -> DomainResult<Encoding> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Ok(Encoding::Utf8);
    }
    if bytes.starts_with(b"\xFF\xFE") {
        return Ok(Encoding::Utf16Le);
    }
    if bytes.starts_with(b"\xFE\xFF") {
        return Ok(Encoding::Utf16Be);
    }
    // UTF-16 without a BOM: text that is mostly ASCII has a zero in every other byte.
    let head = &bytes[..bytes.len().min(4096)];
    let pairs = head.len() / 2;
    if pairs >= 2 {
        let odd_zero = head.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
        let even_zero = head.iter().step_by(2).filter(|&&b| b == 0).count();
        if odd_zero * 10 >= pairs * 3 && even_zero * 10 < pairs {
            return Ok(Encoding::Utf16Le);
        }
        if even_zero * 10 >= pairs * 3 && odd_zero * 10 < pairs {
            return Ok(Encoding::Utf16Be);
        }
    }
    if bytes.contains(&0) {
        return Err(DomainError::invalid("err.import.not_a_table"));
    }
    if std::str::from_utf8(bytes).is_ok() {
        return Ok(Encoding::Utf8);
    }
    Ok(Encoding::Windows1251)
}

/// RFC 4180 CSV with the delimiter of the first line (`,`, `;` as Excel saves it in
/// Russian and Uzbek, or TAB). Quoted cells may hold delimiters, `""` and line breaks; an
/// unclosed quote is an error naming its line.
pub fn parse_csv(text: &str) -> DomainResult<Vec<(usize, Vec<String>)>> {
    let first_line = text.lines().next().unwrap_or("");
    let delim = [',', ';', '\t']
        .into_iter()
        .max_by_key(|d| (first_line.matches(*d).count(), *d == ','))
        .unwrap_or(',');
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut quoted = false;
    let mut line = 1;
    let mut record_line = 1;
    let mut quote_line = 1;
    let mut chars = text.chars().peekable();
    let push_row = |row: &mut Vec<String>, at: usize, rows: &mut Vec<(usize, Vec<String>)>| {
        let r = std::mem::take(row);
        if r.iter().any(|c| !c.trim().is_empty()) {
            if rows.len() > MAX_ROWS {
                return Err(too_many_rows());
            }
            rows.push((at, r));
        }
        Ok(())
    };
    while let Some(ch) = chars.next() {
        if in_quotes {
            match ch {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match ch {
            '"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
                quote_line = line;
            }
            c if c == delim => {
                row.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' => {
                row.push(std::mem::take(&mut field));
                quoted = false;
                push_row(&mut row, record_line, &mut rows)?;
                line += 1;
                record_line = line;
            }
            c => field.push(c),
        }
    }
    if in_quotes {
        return Err(DomainError::invalid(
            Msg::new("err.import.unclosed_quote").with("line", quote_line),
        ));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        push_row(&mut row, record_line, &mut rows)?;
    }
    // The header row counts as one of the MAX_ROWS + 1 allowed.
    if rows.len() > MAX_ROWS + 1 {
        return Err(too_many_rows());
    }
    Ok(rows)
}

/// The first sheet of a workbook, by its stored values.
fn read_workbook(bytes: &[u8]) -> DomainResult<Vec<(usize, Vec<String>)>> {
    use calamine::{Data, Reader};
    let bad = || DomainError::invalid("err.import.bad_workbook");
    if bytes.starts_with(b"PK") {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|_| bad())?;
        let mut unpacked = 0u64;
        for i in 0..zip.len() {
            let f = zip.by_index_raw(i).map_err(|_| bad())?;
            unpacked = unpacked.saturating_add(f.size());
        }
        if unpacked > MAX_UNPACKED {
            return Err(too_large());
        }
        // A zip that is not a workbook (a .docx, an archive) has no workbook part.
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        if !names
            .iter()
            .any(|n| n == "xl/workbook.xml" || n == "content.xml" || n == "xl/workbook.bin")
        {
            return Err(bad());
        }
    }
    let mut wb = calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes.to_vec()))
        .map_err(|_| bad())?;
    let range = match wb.worksheet_range_at(0) {
        Some(Ok(r)) => r,
        _ => return Err(bad()),
    };
    let (height, _) = range.get_size();
    if height > MAX_ROWS + 1 {
        return Err(too_many_rows());
    }
    let start_row = range.start().map_or(0, |(r, _)| r as usize);
    let mut rows = Vec::with_capacity(height);
    for (i, r) in range.rows().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .map(|c| match c {
                Data::Empty => String::new(),
                Data::String(s) => s.clone(),
                Data::Int(n) => n.to_string(),
                // Phone numbers typed as numbers come back as floats.
                Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
                Data::Float(f) => f.to_string(),
                Data::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                Data::DateTime(d) => {
                    let (y, m, day, ..) = d.to_ymd_hms_milli();
                    format!("{y:04}-{m:02}-{day:02}")
                }
                Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
                // A formula's error value (#DIV/0!, #REF!): reported as a formula cell.
                Data::Error(e) => format!("=#{e}"),
            })
            .collect();
        if cells.iter().any(|c| !c.trim().is_empty()) {
            rows.push((start_row + i + 1, cells));
        }
    }
    Ok(rows)
}

/// The mapping a sheet suggests: by the header's words, else by the cells (a column of
/// phone numbers, the first text column as the name).
pub fn guess_mapping(sheet: &Sheet, country: Country) -> Mapping {
    let first = &sheet.rows[0].1;
    let is_phone = |s: &str| crate::model::PhoneNumber::parse(s, country).is_ok();
    let header = !first.iter().any(|c| is_phone(c));
    let mut columns = vec![Field::Ignore; sheet.columns];
    if header {
        for (i, h) in first.iter().enumerate() {
            columns[i] = Field::guess(h);
        }
    }
    if !columns.contains(&Field::Phone) || !columns.contains(&Field::Name) {
        let sample: Vec<&Vec<String>> = sheet
            .rows
            .iter()
            .skip(usize::from(header))
            .take(50)
            .map(|(_, r)| r)
            .collect();
        for col in 0..sheet.columns {
            if columns[col] != Field::Ignore {
                continue;
            }
            let cells: Vec<&str> = sample
                .iter()
                .filter_map(|r| r.get(col).map(String::as_str))
                .filter(|c| !c.trim().is_empty())
                .collect();
            if cells.is_empty() {
                continue;
            }
            let phones = cells.iter().filter(|c| is_phone(c)).count();
            if phones * 2 > cells.len() {
                columns[col] = Field::Phone;
            } else if !columns.contains(&Field::Name)
                && cells.iter().all(|c| c.chars().any(char::is_alphabetic))
            {
                columns[col] = Field::Name;
            }
        }
    }
    Mapping { header, columns }
}

/// A row's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    New,
    /// Merges into this existing customer (found by one of the row's phones).
    Match {
        customer_id: i64,
        name: String,
    },
    /// Repeats an earlier row of the file (same phone): merges into what that row becomes.
    SameAs {
        row: usize,
    },
    Invalid(Msg),
}

impl Verdict {
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::New => "new",
            Verdict::Match { .. } => "match",
            Verdict::SameAs { .. } => "duplicate",
            Verdict::Invalid(_) => "invalid",
        }
    }
}

/// One data row as it will be imported.
pub struct Planned {
    /// Its row number in the file.
    pub row: usize,
    pub name: String,
    pub phones: Vec<String>,
    pub verdict: Verdict,
    clean: Option<Clean>,
    /// Index (into the plan) of the row a `SameAs` merges into.
    first: Option<usize>,
}

/// The rows of a sheet with their verdicts, as of the database `c` sees.
pub struct Plan {
    pub rows: Vec<Planned>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub rows: usize,
    pub new: usize,
    pub matched: usize,
    pub duplicates: usize,
    pub invalid: usize,
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            rows: self.rows.len(),
            ..Default::default()
        };
        for r in &self.rows {
            match r.verdict {
                Verdict::New => c.new += 1,
                Verdict::Match { .. } => c.matched += 1,
                Verdict::SameAs { .. } => c.duplicates += 1,
                Verdict::Invalid(_) => c.invalid += 1,
            }
        }
        c
    }
}

/// A cell that a spreadsheet would run as a formula (or a formula's error value).
fn looks_like_formula(cell: &str) -> bool {
    cell.trim_start().starts_with('=')
}

fn opt_in_value(typed: &str) -> Result<bool, ()> {
    match typed.trim().to_lowercase().as_str() {
        "" | "0" | "no" | "n" | "false" | "нет" | "yo'q" | "yoq" | "йўқ" | "йук" | "-" => {
            Ok(false)
        }
        "1" | "yes" | "y" | "true" | "да" | "ha" | "ҳа" | "ха" | "+" | "x" | "✓" => {
            Ok(true)
        }
        _ => Err(()),
    }
}

fn kind_value(typed: &str) -> Option<&'static str> {
    let t = typed.trim().to_lowercase();
    if t.is_empty() {
        return Some("");
    }
    if [
        "person",
        "физ",
        "физ.",
        "физлицо",
        "jismoniy",
        "жисмоний",
        "individual",
    ]
    .iter()
    .any(|w| t.starts_with(w))
    {
        Some("person")
    } else if [
        "company",
        "юр",
        "юр.",
        "юрлицо",
        "yuridik",
        "юридик",
        "организация",
        "kompaniya",
    ]
    .iter()
    .any(|w| t.starts_with(w))
    {
        Some("company")
    } else {
        None
    }
}

fn language_value(typed: &str) -> Option<String> {
    let t = typed.trim();
    if t.is_empty() {
        return Some(String::new());
    }
    if let Some(l) = crate::model::Language::from_code(t) {
        return Some(l.code().to_string());
    }
    let l = t.to_lowercase();
    let code = if l.starts_with("рус") || l.starts_with("rus") {
        "ru"
    } else if l.starts_with("eng") || l.starts_with("анг") || l.starts_with("ing") {
        "en"
    } else if l.starts_with("ўзб") || l.starts_with("узб") || l.contains("кирил") {
        "uz-Cyrl"
    } else if l.starts_with("o'zb") || l.starts_with("uzb") || l.starts_with("ozb") {
        "uz"
    } else {
        return None;
    };
    Some(code.to_string())
}

/// The customer a row describes, or why it cannot be one.
fn row_input(cells: &[String], m: &Mapping, country: Country) -> Result<Clean, Msg> {
    let mut i = CustomerInput::default();
    let mut name: Vec<&str> = Vec::new();
    let mut notes: Vec<&str> = Vec::new();
    let mut tags: Vec<&str> = Vec::new();
    for (col, field) in m.columns.iter().enumerate() {
        let Some(cell) = cells.get(col) else { continue };
        let cell = cell.trim();
        if *field == Field::Ignore || cell.is_empty() {
            continue;
        }
        if looks_like_formula(cell) {
            return Err(Msg::new("err.import.formula").with("column", col + 1));
        }
        match field {
            Field::Ignore => {}
            Field::Name => name.push(cell),
            Field::Phone => i.phones.extend(
                cell.split([',', ';', '\n'])
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            ),
            Field::Company => i.company = cell.to_string(),
            Field::Tags => tags.push(cell),
            Field::Notes => notes.push(cell),
            Field::Language => {
                i.language = Some(
                    language_value(cell)
                        .ok_or_else(|| Msg::new("err.language.unknown").with("value", cell))?,
                )
            }
            Field::Birthday => i.birthday = Some(cell.to_string()),
            Field::Email => i.email = cell.to_string(),
            Field::Address => i.address = cell.to_string(),
            Field::Telegram => i.telegram = cell.to_string(),
            Field::Kind => {
                let k = kind_value(cell)
                    .ok_or_else(|| Msg::new("err.customer.kind").with("value", cell))?;
                i.kind = Some(k.to_string());
            }
            Field::OptIn => {
                i.marketing_opt_in = opt_in_value(cell)
                    .map_err(|_| Msg::new("err.import.opt_in").with("value", cell))?
            }
        }
    }
    i.name = name.join(" ");
    if i.name.trim().is_empty() && !i.company.trim().is_empty() {
        // A company listed without a contact person is the customer itself.
        i.name = i.company.clone();
        i.kind.get_or_insert_with(|| "company".to_string());
    }
    i.notes = notes.join("\n");
    i.tags = tags.join(",");
    if i.phones.is_empty() {
        return Err(Msg::new("err.customer.phone_needed"));
    }
    cust::clean(i, country).map_err(|e| e.message())
}

/// The verdict of every data row of `sheet` under `m`, against the customers in `c`.
/// Judges every row. `importer` is the branches of whoever imports (None: the whole
/// shop): with customers kept per branch a row matches only their customers.
pub fn plan(
    c: &Conn,
    sheet: &Sheet,
    m: &Mapping,
    country: Country,
    importer: Option<&[i64]>,
) -> DomainResult<Plan> {
    let scope = cust::scope(c, importer)?;
    let mut out: Vec<Planned> = Vec::with_capacity(sheet.rows.len());
    // Phone → index of the first row of the file that has it.
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(sheet.rows.len() * 2);
    for (row, cells) in sheet.rows.iter().skip(usize::from(m.header)) {
        if cells.len() > m.columns.len()
            && cells[m.columns.len()..]
                .iter()
                .any(|c| !c.trim().is_empty())
        {
            out.push(Planned {
                row: *row,
                name: String::new(),
                phones: vec![],
                verdict: Verdict::Invalid(
                    Msg::new("err.import.extra_cells").with("columns", m.columns.len()),
                ),
                clean: None,
                first: None,
            });
            continue;
        }
        let clean = match row_input(cells, m, country) {
            Ok(c) => c,
            Err(why) => {
                let name = m
                    .columns
                    .iter()
                    .position(|f| *f == Field::Name)
                    .and_then(|i| cells.get(i))
                    .cloned()
                    .unwrap_or_default();
                out.push(Planned {
                    row: *row,
                    name,
                    phones: vec![],
                    verdict: Verdict::Invalid(why),
                    clean: None,
                    first: None,
                });
                continue;
            }
        };
        let idx = out.len();
        let earlier = clean.phones.iter().find_map(|p| seen.get(p).copied());
        let (verdict, first) = match earlier {
            Some(f) => (Verdict::SameAs { row: out[f].row }, Some(f)),
            None => {
                let mut found = None;
                for p in &clean.phones {
                    if let Some(e) = q::customer_by_phone(c, p, scope)? {
                        found = Some(e);
                        break;
                    }
                }
                match found {
                    Some((customer_id, name)) => (Verdict::Match { customer_id, name }, None),
                    None => (Verdict::New, None),
                }
            }
        };
        let target = first.unwrap_or(idx);
        for p in &clean.phones {
            seen.entry(p.clone()).or_insert(target);
        }
        out.push(Planned {
            row: *row,
            name: clean.name.clone(),
            phones: clean.phones.clone(),
            verdict,
            clean: Some(clean),
            first,
        });
    }
    Ok(Plan { rows: out })
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    pub batch_id: i64,
    pub created: usize,
    /// Rows merged into customers that were there before.
    pub merged: usize,
    /// Rows merged into an earlier row of the same file.
    pub duplicates: usize,
    /// Rows skipped as invalid.
    pub invalid: usize,
}

/// What an undo did.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Undone {
    /// Created customers removed.
    pub removed: usize,
    /// Merged customers given back what they had.
    pub restored: usize,
    /// Customers left as they are: edited, or with orders or calls, since the import.
    pub kept: usize,
}

/// The customer as it was, for the undo of a merge.
#[derive(Serialize, Deserialize)]
struct Before {
    name: String,
    phones: Vec<String>,
    email: String,
    telegram: String,
    address: String,
    notes: String,
    tags: String,
    language: Option<String>,
    kind: String,
    company: String,
    birthday: Option<String>,
    marketing_opt_in: bool,
}

/// Runs a plan inside a unit of work: creates and merges, records the effects for the
/// undo. Returns (created, merged, duplicates, invalid). A new customer is of the
/// importer's (first) branch, as one made on the form.
fn apply(tx: &mut Tx, batch: i64, plan: &Plan, importer: Option<&[i64]>) -> DomainResult<Outcome> {
    let now = tx.now();
    let scope = cust::scope(tx, importer)?.map(<[i64]>::to_vec);
    let home = importer.and_then(|b| b.first().copied());
    let mut ids: Vec<Option<i64>> = vec![None; plan.rows.len()];
    let mut created_here: HashSet<i64> = HashSet::new();
    let mut snapshotted: HashSet<i64> = HashSet::new();
    let mut out = Outcome {
        batch_id: batch,
        ..Default::default()
    };
    for (i, r) in plan.rows.iter().enumerate() {
        let Some(clean) = &r.clean else {
            out.invalid += 1;
            continue;
        };
        let target = match &r.verdict {
            Verdict::Invalid(_) => {
                out.invalid += 1;
                continue;
            }
            Verdict::New => {
                // Another import committed in between may have taken the phone: then
                // this row merges, as it would have in a preview made now.
                let mut existing = None;
                for p in &clean.phones {
                    if let Some((id, _)) = q::customer_by_phone(tx, p, scope.as_deref())? {
                        existing = Some(id);
                        break;
                    }
                }
                match existing {
                    Some(id) => {
                        out.merged += 1;
                        Some(id)
                    }
                    None => {
                        let id = q::insert_customer(tx, &cust::fields(clean), &clean.phones, now)?;
                        if let Some(b) = home {
                            crate::db::customers::set_branch(tx, id, b)?;
                        }
                        q::add_effect(tx, batch, id, true, None, 1)?;
                        created_here.insert(id);
                        out.created += 1;
                        ids[i] = Some(id);
                        None
                    }
                }
            }
            Verdict::Match { customer_id, .. } => {
                out.merged += 1;
                Some(*customer_id)
            }
            Verdict::SameAs { .. } => {
                out.duplicates += 1;
                r.first.and_then(|f| ids[f])
            }
        };
        let Some(into) = target else { continue };
        ids[i] = Some(into);
        merge_into(tx, batch, into, clean, &created_here, &mut snapshotted)?;
    }
    Ok(out)
}

/// Merges a row into a customer: fills what they lack, adds phones and tags; nothing they
/// had is overwritten.
fn merge_into(
    tx: &mut Tx,
    batch: i64,
    id: i64,
    row: &Clean,
    created_here: &HashSet<i64>,
    snapshotted: &mut HashSet<i64>,
) -> DomainResult<()> {
    use crate::db::customers as cq;
    let Some(cur) = cq::get(tx, id)? else {
        return Ok(());
    };
    let mut phones = cur.phones.clone();
    for p in &row.phones {
        if !phones.contains(p) && phones.len() < 5 {
            phones.push(p.clone());
        }
    }
    let fill =
        |have: &str, new: &str| -> String { if have.is_empty() { new } else { have }.to_string() };
    let mut notes = cur.notes.clone();
    if !row.notes.is_empty() && !notes.contains(&row.notes) {
        let joined = if notes.is_empty() {
            row.notes.clone()
        } else {
            format!("{notes}\n{}", row.notes)
        };
        if joined.chars().count() <= 2000 {
            notes = joined;
        }
    }
    let mut tags = cust::normalise_tags(&format!("{},{}", cur.tags, row.tags));
    if tags.chars().count() > 200 {
        tags = cur.tags.clone();
    }
    let email = fill(&cur.email, &row.email);
    let telegram = fill(&cur.telegram, &row.telegram);
    let address = fill(&cur.address, &row.address);
    let company = fill(&cur.company, &row.company);
    let language = cur.language.clone().or(row.language.map(str::to_string));
    let birthday = cur.birthday.clone().or(row.birthday.clone());
    let kind = if cur.kind == "company" || row.kind == "company" {
        "company"
    } else {
        "person"
    };
    let opt_in = cur.marketing_opt_in || row.marketing_opt_in;
    let same = phones == cur.phones
        && notes == cur.notes
        && tags == cur.tags
        && email == cur.email
        && telegram == cur.telegram
        && address == cur.address
        && company == cur.company
        && language == cur.language
        && birthday == cur.birthday
        && kind == cur.kind
        && opt_in == cur.marketing_opt_in;
    if same {
        return Ok(());
    }
    if !created_here.contains(&id) && snapshotted.insert(id) {
        let before = Before {
            name: cur.name.clone(),
            phones: cur.phones.clone(),
            email: cur.email.clone(),
            telegram: cur.telegram.clone(),
            address: cur.address.clone(),
            notes: cur.notes.clone(),
            tags: cur.tags.clone(),
            language: cur.language.clone(),
            kind: cur.kind.clone(),
            company: cur.company.clone(),
            birthday: cur.birthday.clone(),
            marketing_opt_in: cur.marketing_opt_in,
        };
        let json = serde_json::to_string(&before).unwrap_or_default();
        q::add_effect(tx, batch, id, false, Some(&json), cur.version + 1)?;
    }
    let f = cq::CustomerFields {
        name: &cur.name,
        email: &email,
        telegram: &telegram,
        address: &address,
        notes: &notes,
        tags: &tags,
        language: language.as_deref(),
        kind,
        company: &company,
        birthday: birthday.as_deref(),
        marketing_opt_in: opt_in,
    };
    if !cq::update(tx, id, cur.version, &f, &phones, tx.now())? {
        return Err(DomainError::conflict("err.customer.stale"));
    }
    q::set_effect_version(tx, batch, id, cur.version + 1)?;
    Ok(())
}

/// A preview: the verdicts, with the batch (when stored) and an earlier import of the
/// same file (when there was one).
pub struct Preview {
    pub sheet_columns: usize,
    pub header_cells: Vec<String>,
    pub mapping: Mapping,
    pub encoding: Option<Encoding>,
    pub format: &'static str,
    pub plan: Plan,
    /// An earlier batch that imported the same file (and was not undone).
    pub same_file: Option<BatchRow>,
}

/// The import service.
#[derive(Clone)]
pub struct Imports {
    store: Store,
}

fn changed_event(id: i64) -> Event {
    Event::new(
        "import.updated",
        serde_json::json!({"id": id}),
        Audience::Admins,
    )
}

/// The branches an import works in: `branch` when named (one of the actor's), else the
/// actor's (None: every branch).
pub fn importer(by: &Actor, branch: Option<i64>) -> DomainResult<Option<Vec<i64>>> {
    match branch {
        Some(b) if !by.branches.contains(b) => {
            Err(DomainError::invalid("err.order.unknown_branch"))
        }
        Some(b) => Ok(Some(vec![b])),
        None => Ok(by.branches.only().map(<[i64]>::to_vec)),
    }
}

/// `customer.imported`: with customers kept per branch, only to the users of the
/// branches the import worked in (the importer's).
fn imported_event(
    tx: &Tx,
    importer: Option<&[i64]>,
    data: serde_json::Value,
) -> DomainResult<Event> {
    let scope = cust::scope(tx, importer)?.map(<[i64]>::to_vec);
    Ok(Event::new(
        "customer.imported",
        data,
        Audience::Staff { masters: vec![] },
    )
    .in_any_branch(scope))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A file upload: its name and bytes, and the encoding the person chose (if any).
pub struct Upload {
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub encoding: Option<Encoding>,
}

impl Upload {
    fn file_name(&self) -> String {
        let n: String = self.file_name.trim().chars().take(200).collect();
        if n.is_empty() {
            "customers".into()
        } else {
            n
        }
    }
}

impl Imports {
    pub fn new(store: Store) -> Imports {
        Imports { store }
    }

    async fn country(&self) -> DomainResult<Country> {
        Ok(super::shop::load(self.store.db()).await?.country())
    }

    /// Stores a file as a draft batch with the mapping its header suggests. A file that
    /// cannot be read (not a table, wrong encoding, too big) is refused and not kept.
    pub async fn upload(&self, by: &Actor, up: Upload) -> DomainResult<i64> {
        let country = self.country().await?;
        let file_name = up.file_name();
        let bytes = up.bytes;
        let sheet = tokio::task::spawn_blocking({
            let bytes = bytes.clone();
            move || read_sheet(&bytes, up.encoding)
        })
        .await
        .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))??;
        let mapping = guess_mapping(&sheet, country);
        let rows = sheet.rows.len() - usize::from(mapping.header);
        let sha = sha256(&bytes);
        self.store
            .write(by, move |tx| {
                let id = q::insert_batch(
                    tx,
                    &q::NewBatch {
                        file_name: &file_name,
                        format: sheet.format,
                        encoding: sheet.encoding.map(Encoding::code),
                        sha256: &sha,
                        content: &bytes,
                        mapping: &serde_json::to_string(&mapping).unwrap_or_default(),
                        rows_total: rows as i64,
                        created_by: tx.actor_id(),
                    },
                    tx.now(),
                )?;
                tx.log(
                    "upload",
                    "import",
                    id,
                    serde_json::json!({"file": file_name, "rows": rows, "format": sheet.format,
                                       "encoding": sheet.encoding.map(Encoding::code)}),
                );
                tx.emit(changed_event(id));
                Ok(id)
            })
            .await
    }

    pub async fn get(&self, id: i64) -> DomainResult<BatchRow> {
        self.store
            .read(move |c| q::get(c, id))
            .await?
            .ok_or(DomainError::NotFound)
    }

    pub async fn list(&self, limit: i64) -> DomainResult<Vec<BatchRow>> {
        self.store.read(move |c| q::list(c, limit)).await
    }

    /// Changes a draft's mapping (and, for a CSV, its encoding).
    pub async fn set_mapping(
        &self,
        by: &Actor,
        id: i64,
        mapping: Mapping,
        encoding: Option<Encoding>,
    ) -> DomainResult<()> {
        let b = self.get(id).await?;
        if b.state != "draft" {
            return Err(DomainError::conflict("err.import.not_draft"));
        }
        if mapping.columns.len() > MAX_COLUMNS {
            return Err(DomainError::invalid(
                Msg::new("err.import.too_many_columns").with("max", MAX_COLUMNS),
            ));
        }
        mapping.check()?;
        let content = self.content(id).await?;
        // A chosen encoding must read the file.
        let enc = if b.format == "csv" {
            let enc = encoding.or(b
                .encoding
                .as_deref()
                .and_then(|e| Encoding::parse(e).ok().flatten()));
            let sheet = tokio::task::spawn_blocking(move || read_sheet(&content, enc))
                .await
                .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))??;
            sheet.encoding
        } else {
            None
        };
        let json = serde_json::to_string(&mapping).unwrap_or_default();
        self.store
            .write(by, move |tx| {
                if !q::set_mapping(tx, id, &json, enc.map(Encoding::code))? {
                    return Err(DomainError::conflict("err.import.not_draft"));
                }
                tx.log(
                    "map",
                    "import",
                    id,
                    serde_json::json!({"columns": mapping.columns.iter().map(|f| f.code()).collect::<Vec<_>>(),
                                       "header": mapping.header, "encoding": enc.map(Encoding::code)}),
                );
                tx.emit(changed_event(id));
                Ok(())
            })
            .await
    }

    async fn content(&self, id: i64) -> DomainResult<Vec<u8>> {
        self.store
            .read(move |c| q::content(c, id))
            .await?
            .ok_or_else(|| DomainError::conflict("err.import.not_draft"))
    }

    /// A draft's preview under its current mapping.
    pub async fn preview(&self, by: &Actor, id: i64) -> DomainResult<(BatchRow, Preview)> {
        let b = self.get(id).await?;
        if b.state != "draft" {
            return Err(DomainError::conflict("err.import.not_draft"));
        }
        let content = self.content(id).await?;
        let mapping: Mapping = serde_json::from_str(&b.mapping)
            .map_err(|_| DomainError::invalid("err.import.bad_mapping"))?;
        let enc = b
            .encoding
            .as_deref()
            .and_then(|e| Encoding::parse(e).ok().flatten());
        let p = self
            .preview_of(content, enc, Some(mapping), Some(id), importer(by, None)?)
            .await?;
        Ok((b, p))
    }

    /// Reads a file and judges its rows without storing anything (`--dry-run`, the API's
    /// `dry_run`, and the page's preview).
    pub async fn preview_of(
        &self,
        bytes: Vec<u8>,
        encoding: Option<Encoding>,
        mapping: Option<Mapping>,
        batch: Option<i64>,
        importer: Option<Vec<i64>>,
    ) -> DomainResult<Preview> {
        let country = self.country().await?;
        let sha = sha256(&bytes);
        let sheet = tokio::task::spawn_blocking(move || read_sheet(&bytes, encoding))
            .await
            .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))??;
        let mapping = mapping.unwrap_or_else(|| guess_mapping(&sheet, country));
        mapping.check()?;
        self.store
            .read(move |c| {
                let plan =
                    plan(c, &sheet, &mapping, country, importer.as_deref()).map_err(into_db)?;
                let same_file = q::imported_with_sha(c, &sha, batch)?;
                Ok(Preview {
                    sheet_columns: sheet.columns,
                    header_cells: if mapping.header {
                        sheet.rows[0].1.clone()
                    } else {
                        vec![]
                    },
                    encoding: sheet.encoding,
                    format: sheet.format,
                    mapping,
                    plan,
                    same_file,
                })
            })
            .await
    }

    /// Imports a draft: its valid rows, in one unit of work.
    pub async fn run(&self, by: &Actor, id: i64) -> DomainResult<Outcome> {
        let b = self.get(id).await?;
        if b.state != "draft" {
            return Err(DomainError::conflict("err.import.not_draft"));
        }
        let country = self.country().await?;
        let content = self.content(id).await?;
        let mapping: Mapping = serde_json::from_str(&b.mapping)
            .map_err(|_| DomainError::invalid("err.import.bad_mapping"))?;
        mapping.check()?;
        let enc = b
            .encoding
            .as_deref()
            .and_then(|e| Encoding::parse(e).ok().flatten());
        let sheet = tokio::task::spawn_blocking(move || read_sheet(&content, enc))
            .await
            .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))??;
        let mapping_json = b.mapping.clone();
        self.store
            .write(by, move |tx| {
                // The draft may have been imported, cancelled or re-mapped meanwhile.
                let now_b = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                if now_b.state != "draft" || now_b.mapping != mapping_json {
                    return Err(DomainError::conflict("err.import.not_draft"));
                }
                let who = tx.who().branches().map(<[i64]>::to_vec);
                let p = plan(tx, &sheet, &mapping, country, who.as_deref())?;
                let o = apply(tx, id, &p, who.as_deref())?;
                q::finish_import(
                    tx,
                    id,
                    o.created as i64,
                    (o.merged + o.duplicates) as i64,
                    o.invalid as i64,
                    tx.now(),
                )?;
                log_import(tx, &o, &now_b.file_name, who.as_deref())?;
                Ok(o)
            })
            .await
    }

    /// Reads, judges and imports a file in one go (the API and `crm import customers`):
    /// the batch is stored already imported, so it can be undone. `branch` imports into
    /// that branch (`crm import customers --branch`); else into the importer's.
    pub async fn import_file(
        &self,
        by: Option<&Actor>,
        up: Upload,
        mapping: Option<Mapping>,
        branch: Option<i64>,
    ) -> DomainResult<(Outcome, Preview)> {
        let who = match by {
            Some(a) => importer(a, branch)?,
            None => branch.map(|b| vec![b]),
        };
        let country = self.country().await?;
        let file_name = up.file_name();
        let bytes = up.bytes;
        let sha = sha256(&bytes);
        let enc = up.encoding;
        let sheet = tokio::task::spawn_blocking(move || read_sheet(&bytes, enc))
            .await
            .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))??;
        let mapping = mapping.unwrap_or_else(|| guess_mapping(&sheet, country));
        mapping.check()?;
        let rows = sheet.rows.len() - usize::from(mapping.header);
        self.store
            .write(by, move |tx| {
                let same_file = q::imported_with_sha(tx, &sha, None)?;
                let id = q::insert_batch(
                    tx,
                    &q::NewBatch {
                        file_name: &file_name,
                        format: sheet.format,
                        encoding: sheet.encoding.map(Encoding::code),
                        sha256: &sha,
                        content: &[],
                        mapping: &serde_json::to_string(&mapping).unwrap_or_default(),
                        rows_total: rows as i64,
                        created_by: tx.actor_id(),
                    },
                    tx.now(),
                )?;
                if let Some(b) = branch {
                    crate::db::branches::get(tx, b)?
                        .ok_or_else(|| DomainError::invalid("err.order.unknown_branch"))?;
                }
                let p = plan(tx, &sheet, &mapping, country, who.as_deref())?;
                let o = apply(tx, id, &p, who.as_deref())?;
                q::finish_import(
                    tx,
                    id,
                    o.created as i64,
                    (o.merged + o.duplicates) as i64,
                    o.invalid as i64,
                    tx.now(),
                )?;
                log_import(tx, &o, &file_name, who.as_deref())?;
                Ok((
                    o,
                    Preview {
                        sheet_columns: sheet.columns,
                        header_cells: if mapping.header {
                            sheet.rows[0].1.clone()
                        } else {
                            vec![]
                        },
                        encoding: sheet.encoding,
                        format: sheet.format,
                        mapping,
                        plan: p,
                        same_file,
                    },
                ))
            })
            .await
    }

    /// Drops a draft (and its file).
    pub async fn cancel(&self, by: &Actor, id: i64) -> DomainResult<()> {
        self.store
            .write(by, move |tx| {
                let b = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                if !q::close_draft(tx, id, tx.now())? {
                    return Err(DomainError::conflict("err.import.not_draft"));
                }
                tx.log(
                    "cancel",
                    "import",
                    id,
                    serde_json::json!({"file": b.file_name}),
                );
                tx.emit(changed_event(id));
                Ok(())
            })
            .await
    }

    /// Undoes an imported batch: created customers go, merged ones get back what they
    /// had; a customer edited since (or, for a created one, with orders or calls) is kept.
    pub async fn undo(&self, by: Option<&Actor>, id: i64) -> DomainResult<Undone> {
        self.store
            .write(by, move |tx| {
                use crate::db::customers as cq;
                let b = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                if b.state != "imported" {
                    return Err(DomainError::conflict("err.import.not_imported"));
                }
                let mut u = Undone::default();
                for e in q::effects(tx, id)? {
                    let cur = cq::get(tx, e.customer_id)?;
                    let unchanged = cur.as_ref().is_some_and(|c| c.version == e.version_after);
                    if !unchanged {
                        u.kept += 1;
                        continue;
                    }
                    if e.created {
                        if q::has_history(tx, e.customer_id)? {
                            u.kept += 1;
                        } else {
                            q::delete_customer(tx, e.customer_id)?;
                            u.removed += 1;
                        }
                        continue;
                    }
                    let Some(before) = e
                        .before
                        .as_deref()
                        .and_then(|j| serde_json::from_str::<Before>(j).ok())
                    else {
                        u.kept += 1;
                        continue;
                    };
                    let f = cq::CustomerFields {
                        name: &before.name,
                        email: &before.email,
                        telegram: &before.telegram,
                        address: &before.address,
                        notes: &before.notes,
                        tags: &before.tags,
                        language: before.language.as_deref(),
                        kind: &before.kind,
                        company: &before.company,
                        birthday: before.birthday.as_deref(),
                        marketing_opt_in: before.marketing_opt_in,
                    };
                    // A phone it had may have gone to someone else since: kept then.
                    if cq::update(
                        tx,
                        e.customer_id,
                        e.version_after,
                        &f,
                        &before.phones,
                        tx.now(),
                    )? {
                        u.restored += 1;
                        let ev = cust::updated_event(tx, e.customer_id)?;
                        tx.emit(ev);
                    } else {
                        u.kept += 1;
                    }
                }
                q::finish_undo(tx, id, u.kept as i64, tx.now())?;
                tx.log(
                    "undo",
                    "import",
                    id,
                    serde_json::json!({"file": b.file_name, "removed": u.removed,
                                       "restored": u.restored, "kept": u.kept}),
                );
                tx.emit(changed_event(id));
                let who = tx.who().branches().map(<[i64]>::to_vec);
                let e = imported_event(
                    tx,
                    who.as_deref(),
                    serde_json::json!({"batch_id": id, "undone": true}),
                )?;
                tx.emit(e);
                Ok(u)
            })
            .await
    }
}

fn log_import(tx: &mut Tx, o: &Outcome, file: &str, importer: Option<&[i64]>) -> DomainResult<()> {
    tx.log(
        "import",
        "import",
        o.batch_id,
        serde_json::json!({"file": file, "created": o.created, "merged": o.merged,
                           "duplicates": o.duplicates, "invalid": o.invalid}),
    );
    tx.emit(changed_event(o.batch_id));
    let e = imported_event(
        tx,
        importer,
        serde_json::json!({"batch_id": o.batch_id, "created": o.created, "merged": o.merged}),
    )?;
    tx.emit(e);
    Ok(())
}

/// The plan runs on read connections too, whose closures speak `DbError`: a domain
/// refusal crosses as a task error and is turned back (only storage errors can occur
/// there: `plan` refuses nothing by itself, bad rows are verdicts).
fn into_db(e: DomainError) -> crate::db::DbError {
    match e {
        DomainError::Db(d) => d,
        other => crate::db::DbError::Task(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::phone::UZBEKISTAN;

    #[test]
    fn csv_quotes_delimiters_and_lines() {
        let rows = parse_csv("Ism;Telefon;Izoh\r\n\"Karimov; Aziz\";90 123 45 67;\"ikki\nqator \"\"a\"\"\"\r\n\r\nB;91 000 00 00;\n").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1].1,
            vec!["Karimov; Aziz", "90 123 45 67", "ikki\nqator \"a\""]
        );
        assert_eq!(rows[2].0, 5, "the row number counts the quoted line break");
        let e = parse_csv("a,b\n\"open,c\n").unwrap_err();
        assert_eq!(e.message().key(), "err.import.unclosed_quote");
    }

    #[test]
    fn encodings_are_detected() {
        let text = "Имя,Телефон\nЎткир Қодиров,901234567\n";
        let (s, e) = decode(text.as_bytes(), None).unwrap();
        assert_eq!((s.as_str(), e), (text, Encoding::Utf8));
        let (cp, _, _) = encoding_rs::WINDOWS_1251.encode("Имя,Телефон\nИван Петров,901234567\n");
        let (s, e) = decode(&cp, None).unwrap();
        assert_eq!(e, Encoding::Windows1251);
        assert!(s.contains("Иван Петров"));
        let mut le = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(
            decode(&le, None).unwrap(),
            (text.to_string(), Encoding::Utf16Le)
        );
        let be: Vec<u8> = "Name,Phone\nA,901234567\n"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(decode(&be, None).unwrap().1, Encoding::Utf16Be);
        // Chosen UTF-8 for a Windows-1251 file: refused with the line.
        let e = decode(&cp, Some(Encoding::Utf8)).unwrap_err();
        assert_eq!(e.message().key(), "err.import.bad_encoding");
        // Binary is not a table.
        assert!(decode(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", None).is_err());
    }

    #[test]
    fn the_header_suggests_the_mapping() {
        let sheet = read_sheet(
            "Ф.И.О;Телефон;Компания;Теги;Примечание\nA;901234567;X;vip;\n".as_bytes(),
            None,
        )
        .unwrap();
        let m = guess_mapping(&sheet, UZBEKISTAN);
        assert!(m.header);
        assert_eq!(
            m.columns,
            vec![
                Field::Name,
                Field::Phone,
                Field::Company,
                Field::Tags,
                Field::Notes
            ]
        );
        let sheet = read_sheet(b"+998 90 123 45 67,Aziz\n901112233,Bek\n", None).unwrap();
        let m = guess_mapping(&sheet, UZBEKISTAN);
        assert!(!m.header);
        assert_eq!(m.columns, vec![Field::Phone, Field::Name]);
    }

    #[test]
    fn a_row_becomes_a_customer_or_says_why_not() {
        let m = Mapping {
            header: false,
            columns: vec![Field::Name, Field::Phone, Field::OptIn, Field::Birthday],
        };
        let r = |cells: &[&str]| {
            row_input(
                &cells.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                &m,
                UZBEKISTAN,
            )
        };
        let c = r(&[
            "Ўткир",
            "8 (90) 123-45-67; +998 91 000 00 00",
            "ha",
            "17.05.1990",
        ])
        .unwrap();
        assert_eq!(c.phones, vec!["+998901234567", "+998910000000"]);
        assert!(c.marketing_opt_in);
        assert_eq!(c.birthday.as_deref(), Some("1990-05-17"));
        assert_eq!(
            r(&["=HYPERLINK(\"x\")", "901234567", "", ""])
                .unwrap_err()
                .key(),
            "err.import.formula"
        );
        assert_eq!(
            r(&["A", "12345", "", ""]).unwrap_err().key(),
            "err.phone.refused"
        );
        assert_eq!(
            r(&["A", "", "", ""]).unwrap_err().key(),
            "err.customer.phone_needed"
        );
        assert_eq!(
            r(&["A", "901234567", "maybe", ""]).unwrap_err().key(),
            "err.import.opt_in"
        );
        assert_eq!(
            r(&["A", "901234567", "", "31.02.1990"]).unwrap_err().key(),
            "err.customer.birthday"
        );
    }
}
