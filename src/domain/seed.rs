//! Realistic demo and benchmark data: Uzbek names, +998 numbers, devices, orders spread
//! over three years through the whole workflow.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::DomainResult;
use crate::db::seed::{self as q, SeedCustomer, SeedOrder};
use crate::db::{now, Db};

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
/// One transaction: the shop gets all of it or, on failure, none of it.
pub async fn seed(db: &Db, customers: usize, orders: usize, seed: u64) -> DomainResult<SeedReport> {
    let masters: Vec<i64> = db
        .read(crate::db::orders::masters)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let shop = super::shop::load(db).await?;
    let prefix = shop.order_prefix;
    let clock = super::clock::ShopClock::new(&shop.time_zone).unwrap_or_default();
    db.write(move |c| {
        let load = q::BulkLoad::begin(c)?;
        let mut gen = Generator {
            rng: StdRng::seed_from_u64(seed),
            now: now(),
            masters,
            made: 0,
            orders_made: 0,
        };
        let mut ids: Vec<i64> = Vec::with_capacity(customers);
        let mut made = 0;
        while made < customers {
            let n = BATCH.min(customers - made);
            let rows: Vec<SeedCustomer> = (0..n).map(|_| gen.customer()).collect();
            ids.extend(load.customers(&rows)?);
            made += n;
        }
        let mut made = 0;
        while made < orders {
            let n = BATCH.min(orders - made);
            let mut rows: Vec<SeedOrder> = (0..n).map(|_| gen.order(&ids)).collect();
            // Numbers follow creation order within a batch.
            rows.sort_by_key(|r| r.created_at);
            load.orders(&rows, &prefix, |t| clock.year_of(t))?;
            made += n;
        }
        load.finish()
    })
    .await?;
    // Statistics for the planner, then fold the WAL back into the file.
    db.checkpoint().await.ok();
    Ok(SeedReport { customers, orders })
}

/// Rows are generated in batches of this many (orders sorted by date within one).
const BATCH: usize = 20_000;
const THREE_YEARS: i64 = 3 * 365 * 86_400;

struct Generator {
    rng: StdRng,
    now: i64,
    masters: Vec<i64>,
    /// Customers made so far: their tags, language, kind and opt-in follow from it (not
    /// from the random stream, which stays the data it was before these existed).
    made: u64,
    /// Orders made so far: their warranty follows from it, as the customers' tags do.
    orders_made: u64,
}

impl Generator {
    fn customer(&mut self) -> SeedCustomer {
        let rng = &mut self.rng;
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
        let created_at = self.now - rng.gen_range(0..THREE_YEARS);
        self.made += 1;
        let k = self.made;
        // About 5 % "vip", 3 % "optom" (some both), a shop's language mix, one in twelve a
        // company, two in three agreed to marketing.
        let tags = match (k.is_multiple_of(20), k.is_multiple_of(33)) {
            (true, true) => "vip,optom",
            (true, false) => "vip",
            (false, true) => "optom",
            (false, false) => "",
        };
        SeedCustomer {
            name: format!("{first} {sur}"),
            phone,
            created_at,
            tags,
            language: ["uz", "ru", "uz-Cyrl", "uz", "ru", "en"][(k % 6) as usize],
            kind: if k.is_multiple_of(12) {
                "company"
            } else {
                "person"
            },
            marketing_opt_in: !k.is_multiple_of(3),
        }
    }

    fn order(&mut self, customers: &[i64]) -> SeedOrder {
        let (rng, now) = (&mut self.rng, self.now);
        let created = now - rng.gen_range(0..THREE_YEARS);
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
        let closed =
            matches!(status, 7 | 8).then(|| (created + rng.gen_range(1..10) * 86_400).min(now));
        // Of the closed orders, one in three has a 30-day warranty and one in three 90 days.
        self.orders_made += 1;
        let warranty_days = if closed.is_some() {
            [0, 30, 90][(self.orders_made % 3) as usize]
        } else {
            0
        };
        SeedOrder {
            customer_id: customers
                .get(rng.gen_range(0..customers.len().max(1)))
                .copied()
                .unwrap_or(1),
            status_id: status,
            master_id: (!self.masters.is_empty())
                .then(|| self.masters[rng.gen_range(0..self.masters.len())]),
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
            warranty_days,
        }
    }
}
