//! Realistic demo and benchmark data: Uzbek names, +998 numbers, devices, orders spread
//! over three years through the whole workflow.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::DomainResult;
use crate::db::seed::{self as q, SeedCustomer, SeedOrder};
use crate::db::{now, Db};
use crate::model::PhoneNumber;

const MALE: &[&str] = &[
    "Aziz",
    "Bobur",
    "Jasur",
    "Sardor",
    "Otabek",
    "Dilshod",
    "Sherzod",
    "Rustam",
    "Anvar",
    "Farrux",
    "Javlon",
    "Ulugʻbek",
    "Shoxrux",
    "Nodir",
    "Islom",
    "Bekzod",
    "Temur",
    "Akmal",
    "Sanjar",
    "Oybek",
];
const FEMALE: &[&str] = &[
    "Dilnoza",
    "Gulnora",
    "Malika",
    "Nilufar",
    "Shahnoza",
    "Zarina",
    "Madina",
    "Kamola",
    "Feruza",
    "Sevara",
    "Munisa",
    "Nodira",
    "Aziza",
    "Zuhra",
    "Dildora",
    "Mohira",
    "Laylo",
    "Sabina",
    "Gulchehra",
    "Nigora",
];
const SURNAMES: &[&str] = &[
    "Karimov",
    "Rahimov",
    "Aliyev",
    "Tursunov",
    "Yusupov",
    "Qodirov",
    "Ismoilov",
    "Abdullayev",
    "Nazarov",
    "Saidov",
    "Ergashev",
    "Xolmatov",
    "Mirzayev",
    "Sobirov",
    "Rasulov",
    "Hamidov",
    "Usmonov",
    "Jurayev",
    "Sultonov",
    "Norqulov",
];
const PREFIXES: &[&str] = &[
    "90", "91", "93", "94", "95", "97", "98", "99", "33", "88", "77", "50",
];
const DEVICES: &[(&str, &str, &[&str])] = &[
    (
        "phone",
        "Samsung",
        &["Galaxy A52", "Galaxy A14", "Galaxy S21", "Galaxy A34"],
    ),
    (
        "phone",
        "Apple",
        &["iPhone 11", "iPhone 12", "iPhone 13", "iPhone XR"],
    ),
    (
        "phone",
        "Xiaomi",
        &["Redmi Note 11", "Redmi 10", "Poco X3", "Redmi 12"],
    ),
    (
        "laptop",
        "Lenovo",
        &["IdeaPad 3", "ThinkPad E14", "Legion 5"],
    ),
    ("laptop", "HP", &["Pavilion 15", "ProBook 450", "Victus 16"]),
    ("tv", "Artel", &["UA43H3401", "A55LU8500"]),
    ("washer", "Artel", &["WF60L010", "TE80L"]),
    ("fridge", "Samsung", &["RB37", "RT38"]),
    ("ac", "Artel", &["Shahrisabz 12", "Optima 9"]),
    ("microwave", "LG", &["MS2042", "MH6535"]),
];
const COMPLAINTS: &[&str] = &[
    "Ekran yorilgan",
    "Zaryad olmayapti",
    "Yoqilmaydi",
    "Batareya tez tugaydi",
    "Suv tegdi",
    "Ovoz yoʻq",
    "Qizib ketadi",
    "Sovitmaydi",
    "Shovqin qiladi",
    "Tugma ishlamaydi",
    "Не включается",
    "Разбит экран",
];

pub struct SeedReport {
    pub customers: usize,
    pub orders: usize,
}

/// Adds `customers` customers and `orders` orders. Deterministic for a given `seed`.
pub async fn seed(db: &Db, customers: usize, orders: usize, seed: u64) -> DomainResult<SeedReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let now = now();
    let three_years = 3 * 365 * 86_400;
    let masters: Vec<i64> = db
        .read(crate::db::orders::masters)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let prefix = super::shop::load(db).await?.order_prefix;
    let mut ids: Vec<i64> = Vec::with_capacity(customers);
    const BATCH: usize = 20_000;
    let mut made = 0;
    while made < customers {
        let n = BATCH.min(customers - made);
        let rows: Vec<SeedCustomer> = (0..n)
            .map(|_| {
                let female = rng.gen_bool(0.5);
                let first = if female {
                    FEMALE[rng.gen_range(0..FEMALE.len())]
                } else {
                    MALE[rng.gen_range(0..MALE.len())]
                };
                let sur = SURNAMES[rng.gen_range(0..SURNAMES.len())];
                let sur = if female {
                    format!("{sur}a")
                } else {
                    sur.to_string()
                };
                let phone = format!(
                    "+998{}{:07}",
                    PREFIXES[rng.gen_range(0..PREFIXES.len())],
                    rng.gen_range(0..10_000_000)
                );
                SeedCustomer {
                    name: format!("{first} {sur}"),
                    phone,
                    created_at: now - rng.gen_range(0..three_years),
                }
            })
            .collect();
        let batch_ids = db
            .write(move |c| {
                q::customers(c, &rows, |p| {
                    PhoneNumber::from_e164_unchecked(p.to_string()).search_tokens()
                })
            })
            .await?;
        ids.extend(batch_ids);
        made += n;
    }
    let mut made = 0;
    while made < orders {
        let n = BATCH.min(orders - made);
        let mut rows: Vec<SeedOrder> = (0..n)
            .map(|_| {
                let created = now - rng.gen_range(0..three_years);
                let age_days = (now - created) / 86_400;
                // Old orders are closed; recent ones are spread over the workflow.
                let status = if age_days > 30 {
                    if rng.gen_bool(0.93) {
                        7
                    } else {
                        8
                    }
                } else {
                    rng.gen_range(1..=8)
                };
                let (cat, brand, models) = DEVICES[rng.gen_range(0..DEVICES.len())];
                let estimate = rng.gen_range(5..200) * 10_000;
                let total = if status >= 5 { estimate } else { 0 };
                let closed = matches!(status, 7 | 8)
                    .then(|| (created + rng.gen_range(1..10) * 86_400).min(now));
                SeedOrder {
                    customer_id: ids
                        .get(rng.gen_range(0..ids.len().max(1)))
                        .copied()
                        .unwrap_or(1),
                    status_id: status,
                    master_id: (!masters.is_empty())
                        .then(|| masters[rng.gen_range(0..masters.len())]),
                    category: cat,
                    brand,
                    model: models[rng.gen_range(0..models.len())],
                    serial: format!(
                        "{:015}",
                        rng.gen_range(100_000_000_000_000u64..999_999_999_999_999)
                    ),
                    complaint: COMPLAINTS[rng.gen_range(0..COMPLAINTS.len())],
                    estimate,
                    total,
                    paid: if status == 7 { total } else { 0 },
                    created_at: created,
                    closed_at: closed,
                }
            })
            .collect();
        // Numbers follow creation order within a year.
        rows.sort_by_key(|r| r.created_at);
        let prefix = prefix.clone();
        db.write(move |c| {
            let first = q::max_order_id(c)? + 1;
            q::orders(c, &rows, &prefix, |t| {
                time::OffsetDateTime::from_unix_timestamp(t)
                    .map(|d| d.year())
                    .unwrap_or(2026)
            })?;
            for (i, r) in rows.iter().enumerate() {
                if r.paid > 0 {
                    q::payment(
                        c,
                        first + i as i64,
                        r.paid,
                        r.closed_at.unwrap_or(r.created_at),
                    )?;
                }
            }
            Ok(())
        })
        .await?;
        made += n;
    }
    // Statistics for the planner, then fold the WAL back into the file.
    db.checkpoint().await.ok();
    Ok(SeedReport { customers, orders })
}
