//! Realistic demo and benchmark data for `crm seed`: Uzbek names, `+998` mobile numbers,
//! the devices a repair shop sees, and orders spread over three years with statuses,
//! masters, lines and payments that fit their age (old orders are mostly handed back;
//! recent ones are spread over the workflow).

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::accounts::Accounts;
use super::accounts::NewUser;
use super::orders::Orders;
use super::{DomainError, DomainResult};
use crate::db::seed::{self as q, SeedCustomer, SeedLine, SeedOrder, SeedPayment};
use crate::db::Db;
use crate::model::{Language, Role};

const MALE: &[&str] = &[
    "Aziz",
    "Bekzod",
    "Jasur",
    "Sardor",
    "Otabek",
    "Sherzod",
    "Dilshod",
    "Rustam",
    "Anvar",
    "Farrux",
    "Javlon",
    "Ulugʻbek",
    "Shoxrux",
    "Bobur",
    "Doston",
    "Eldor",
    "Islom",
    "Jamshid",
    "Laziz",
    "Mirzo",
    "Nodir",
    "Oybek",
    "Temur",
    "Akmal",
    "Abdulla",
    "Sanjar",
    "Husan",
];
const FEMALE: &[&str] = &[
    "Dilnoza",
    "Gulnora",
    "Madina",
    "Nigora",
    "Shahnoza",
    "Zarina",
    "Malika",
    "Feruza",
    "Kamola",
    "Nilufar",
    "Sevara",
    "Dildora",
    "Mohira",
    "Umida",
    "Yulduz",
    "Gulchehra",
    "Lola",
    "Mavluda",
    "Nodira",
    "Ozoda",
];
/// Surnames in their male form; the female form adds "a" (Karimov → Karimova).
const SURNAMES: &[&str] = &[
    "Karimov",
    "Rahimov",
    "Toshmatov",
    "Aliyev",
    "Yusupov",
    "Saidov",
    "Qodirov",
    "Ismoilov",
    "Nazarov",
    "Xolmatov",
    "Ergashev",
    "Mirzayev",
    "Sobirov",
    "Tursunov",
    "Abdullayev",
    "Hasanov",
    "Umarov",
    "Raximov",
    "Jurayev",
    "Normatov",
    "Usmonov",
    "Xoʻjayev",
    "Qosimov",
    "Mahmudov",
    "Salimov",
    "Fayzullayev",
    "Gʻofurov",
    "Ochilov",
    "Boboyev",
    "Sultonov",
];
const MOBILE_CODES: &[&str] = &[
    "90", "91", "93", "94", "95", "97", "98", "99", "33", "88", "77", "50",
];
const DISTRICTS: &[&str] = &[
    "Chilonzor",
    "Yunusobod",
    "Mirzo Ulugʻbek",
    "Yakkasaroy",
    "Shayxontohur",
    "Olmazor",
    "Sergeli",
    "Uchtepa",
    "Yashnobod",
    "Mirobod",
    "Bektemir",
];

struct Device {
    category: &'static str,
    brand: &'static str,
    models: &'static [&'static str],
    /// Relative frequency.
    weight: u32,
}

#[rustfmt::skip]
const DEVICES: &[Device] = &[
    Device { category: "phone", brand: "Samsung", models: &["Galaxy A12", "Galaxy A32", "Galaxy A52", "Galaxy A54", "Galaxy S21", "Galaxy S23", "Galaxy Note 10"], weight: 22 },
    Device { category: "phone", brand: "Apple", models: &["iPhone 11", "iPhone 12", "iPhone 13", "iPhone 13 Pro", "iPhone 14", "iPhone 15 Pro Max", "iPhone XR"], weight: 16 },
    Device { category: "phone", brand: "Xiaomi", models: &["Redmi Note 10", "Redmi Note 11", "Redmi Note 12", "Redmi 9A", "Poco X3", "Mi 11 Lite"], weight: 18 },
    Device { category: "phone", brand: "Honor", models: &["X8", "X7a", "90 Lite"], weight: 4 },
    Device { category: "tablet", brand: "Apple", models: &["iPad 9", "iPad Air 4"], weight: 3 },
    Device { category: "tablet", brand: "Samsung", models: &["Galaxy Tab A8", "Galaxy Tab S6 Lite"], weight: 2 },
    Device { category: "laptop", brand: "HP", models: &["Pavilion 15", "250 G8", "ProBook 450"], weight: 4 },
    Device { category: "laptop", brand: "Lenovo", models: &["IdeaPad 3", "ThinkPad E14", "Legion 5"], weight: 4 },
    Device { category: "laptop", brand: "Asus", models: &["VivoBook 15", "TUF Gaming F15"], weight: 3 },
    Device { category: "laptop", brand: "Acer", models: &["Aspire 5", "Nitro 5"], weight: 2 },
    Device { category: "tv", brand: "Artel", models: &["UA43H3502", "UA50H3401"], weight: 4 },
    Device { category: "tv", brand: "Samsung", models: &["UE43T5300", "UE55AU7100"], weight: 3 },
    Device { category: "tv", brand: "LG", models: &["43LM5772", "55UP7500"], weight: 2 },
    Device { category: "washer", brand: "Artel", models: &["WF60F010", "TE80L"], weight: 3 },
    Device { category: "washer", brand: "LG", models: &["F2J3NS0W", "F4V5VS0W"], weight: 2 },
    Device { category: "fridge", brand: "Artel", models: &["HD 395 FWEN", "HD 455 RWENE"], weight: 2 },
    Device { category: "ac", brand: "Artel", models: &["Shahrisabz 12", "Inverter 18"], weight: 2 },
    Device { category: "microwave", brand: "Samsung", models: &["ME81KRW-1"], weight: 1 },
    Device { category: "desktop", brand: "Assembled", models: &["Intel i5 / GTX 1650", "Ryzen 5 / RX 580"], weight: 2 },
];

const COMPLAINTS: &[&str] = &[
    "Ekran singan, sensor ishlamayapti",
    "Zaryad olmayapti",
    "Yoqilmayapti",
    "Batareya tez tugaydi",
    "Dinamik ovozi xirillaydi",
    "Suv tushgan",
    "Kamera fokus qilmayapti",
    "Wi-Fi ulanmayapti",
    "Qizib ketadi va oʻchib qoladi",
    "Tugma bosilmayapti",
    "Tasvir yoʻq, ovoz bor",
    "Suv oqizyapti",
    "Sovutmayapti",
    "Shovqin qilyapti",
    "Klaviatura ishlamayapti",
    "Operatsion tizim yuklanmayapti",
    "Mikrofon ishlamayapti, suhbatdosh eshitmaydi",
    "SIM-kartani koʻrmayapti",
];
const CONDITIONS: &[&str] = &[
    "Korpusda tirnalgan joylar bor",
    "Ekranda darz",
    "Yangi holatda",
    "Orqa qopqoq singan",
    "",
];
const ACCESSORIES: &[&str] = &[
    "",
    "Zaryadlovchi",
    "Gʻilof",
    "Quti va hujjatlar",
    "Pult",
    "",
];
const PARTS: &[(&str, i64, i64)] = &[
    ("Displey moduli", 350_000, 2_400_000),
    ("Batareya", 150_000, 650_000),
    ("Zaryad razyomi", 60_000, 180_000),
    ("Dinamik", 50_000, 150_000),
    ("Kamera moduli", 200_000, 900_000),
    ("Termopasta", 20_000, 40_000),
    ("Kompressor", 1_200_000, 2_500_000),
    ("Nasos", 250_000, 450_000),
    ("Quvvat bloki", 300_000, 700_000),
];
const LABOUR: &[(&str, i64, i64)] = &[
    ("Diagnostika", 50_000, 100_000),
    ("Almashtirish ishi", 100_000, 300_000),
    ("Tozalash va profilaktika", 80_000, 200_000),
    ("Dasturiy taʼminot oʻrnatish", 100_000, 150_000),
    ("Payvandlash (paxta)", 150_000, 400_000),
];

#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    pub customers: usize,
    pub orders: usize,
    /// Masters to create when the shop has none.
    pub masters: usize,
    /// Random seed, so runs are repeatable.
    pub seed: u64,
}

#[derive(Debug, Default)]
pub struct SeedReport {
    pub customers: usize,
    pub orders: usize,
    /// Masters created, with the password they share (shown once).
    pub masters_created: Vec<String>,
    pub master_password: Option<String>,
}

const BATCH: usize = 20_000;
const YEAR: i64 = 365 * 86_400;

fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.gen_range(0..xs.len())]
}

fn money(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    // Shops price in thousands of so'm.
    rng.gen_range(lo / 1000..=hi / 1000) * 1000
}

fn person(rng: &mut StdRng) -> String {
    let surname = pick(rng, SURNAMES);
    if rng.gen_bool(0.62) {
        format!("{} {}", pick(rng, MALE), surname)
    } else {
        format!("{} {}a", pick(rng, FEMALE), surname)
    }
}

fn unique_phone(rng: &mut StdRng, taken: &mut HashSet<String>) -> String {
    loop {
        let p = format!(
            "+998{}{:07}",
            pick(rng, MOBILE_CODES),
            rng.gen_range(0..10_000_000)
        );
        if taken.insert(p.clone()) {
            return p;
        }
    }
}

fn serial(rng: &mut StdRng, category: &str) -> String {
    if category == "phone" || category == "tablet" {
        // An IMEI: 15 digits starting with a plausible TAC.
        format!("35{:013}", rng.gen_range(0..10_000_000_000_000i64))
    } else {
        const ALNUM: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
        (0..12)
            .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
            .collect()
    }
}

fn device(rng: &mut StdRng, total_weight: u32) -> &'static Device {
    let mut x = rng.gen_range(0..total_weight);
    for d in DEVICES {
        if x < d.weight {
            return d;
        }
        x -= d.weight;
    }
    &DEVICES[0]
}

/// Final status of an order of this age (seconds), as (code, hours it took to get there).
fn outcome(rng: &mut StdRng, age: i64) -> &'static str {
    let r: f64 = rng.gen();
    if age > 30 * 86_400 {
        match r {
            r if r < 0.86 => "delivered",
            r if r < 0.95 => "cancelled",
            r if r < 0.98 => "ready",
            _ => "awaiting_parts",
        }
    } else if age > 7 * 86_400 {
        match r {
            r if r < 0.55 => "delivered",
            r if r < 0.62 => "cancelled",
            r if r < 0.75 => "ready",
            r if r < 0.85 => "awaiting_parts",
            r if r < 0.93 => "in_repair",
            _ => "awaiting_approval",
        }
    } else {
        match r {
            r if r < 0.15 => "new",
            r if r < 0.35 => "diagnostics",
            r if r < 0.45 => "awaiting_approval",
            r if r < 0.55 => "awaiting_parts",
            r if r < 0.75 => "in_repair",
            r if r < 0.88 => "ready",
            _ => "delivered",
        }
    }
}

/// Generates and stores `plan`'s customers and orders in large transactions.
pub async fn run(
    db: &Db,
    accounts: &Accounts,
    orders: &Orders,
    plan: SeedPlan,
) -> DomainResult<SeedReport> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut report = SeedReport::default();

    let mut masters: Vec<i64> = orders.masters().await?.into_iter().map(|m| m.0).collect();
    if masters.is_empty() && plan.masters > 0 {
        let password = super::accounts::random_token(12);
        for i in 0..plan.masters {
            let username = format!("usta{}", i + 1);
            let id = accounts
                .create_user(
                    None,
                    NewUser {
                        username: username.clone(),
                        display_name: format!("Usta {}", pick(&mut rng, MALE)),
                        role: Role::Master,
                        language: Language::UzLatn,
                        password: password.clone(),
                    },
                    false,
                )
                .await?;
            masters.push(id);
            report.masters_created.push(username);
        }
        report.master_password = Some(password);
    }
    let creator: Option<i64> = accounts
        .list_users()
        .await?
        .into_iter()
        .find(|u| u.role != Role::Master && u.active)
        .map(|u| u.id);

    let statuses: HashMap<String, i64> = orders
        .statuses()
        .await?
        .into_iter()
        .map(|s| (s.code, s.id))
        .collect();
    for code in [
        "new",
        "diagnostics",
        "awaiting_approval",
        "awaiting_parts",
        "in_repair",
        "ready",
        "delivered",
        "cancelled",
    ] {
        if !statuses.contains_key(code) {
            return Err(DomainError::invalid(format!(
                "the workflow has no {code:?} status; seed needs the default statuses"
            )));
        }
    }
    let shop = super::shop::load(db).await?;
    let now = crate::db::now();
    let start = now - 3 * YEAR;

    // Customers, oldest first.
    let mut taken: HashSet<String> = db.read(q::existing_phones).await?.into_iter().collect();
    let mut customer_ids: Vec<(i64, i64)> = Vec::with_capacity(plan.customers);
    let mut left = plan.customers;
    let mut made = 0usize;
    while left > 0 {
        let n = left.min(BATCH);
        let mut rows = Vec::with_capacity(n);
        for i in 0..n {
            let at = start + ((made + i) as i64 * 3 * YEAR) / plan.customers.max(1) as i64;
            let mut phones = vec![unique_phone(&mut rng, &mut taken)];
            if rng.gen_bool(0.1) {
                phones.push(unique_phone(&mut rng, &mut taken));
            }
            let name = person(&mut rng);
            let telegram = if rng.gen_bool(0.3) {
                format!(
                    "{}_{}",
                    name.split(' ').next().unwrap_or("user").to_lowercase(),
                    rng.gen_range(10..9999)
                )
            } else {
                String::new()
            };
            let address = format!(
                "Toshkent, {} tumani, {}-uy",
                pick(&mut rng, DISTRICTS),
                rng.gen_range(1..120)
            );
            rows.push(SeedCustomer {
                name,
                phones,
                telegram: telegram.replace('ʻ', ""),
                address,
                created_at: at,
            });
        }
        let created: Vec<i64> = rows.iter().map(|r| r.created_at).collect();
        let ids = db.write(move |c| q::insert_customers(c, &rows)).await?;
        customer_ids.extend(ids.into_iter().zip(created));
        left -= n;
        made += n;
    }
    report.customers = made;
    if customer_ids.is_empty() && plan.orders > 0 {
        return Err(DomainError::invalid(
            "orders need customers: pass --customers",
        ));
    }

    // Orders, oldest first, each for a customer who already existed at intake.
    let total_weight: u32 = DEVICES.iter().map(|d| d.weight).sum();
    let mut counters: HashMap<i32, i64> = HashMap::new();
    let mut left = plan.orders;
    let mut made = 0usize;
    while left > 0 {
        let n = left.min(BATCH);
        let mut rows = Vec::with_capacity(n);
        for i in 0..n {
            let created_at = start
                + ((made + i) as i64 * 3 * YEAR) / plan.orders.max(1) as i64
                + rng.gen_range(0..600);
            let created_at = created_at.min(now - 60);
            // Customers who existed by then: a prefix of the (time-ordered) list.
            let known = customer_ids
                .partition_point(|(_, at)| *at <= created_at)
                .max(1);
            let customer_id = customer_ids[rng.gen_range(0..known)].0;
            let year = time::OffsetDateTime::from_unix_timestamp(created_at)
                .map(|t| t.year())
                .unwrap_or(2026);
            let seq = match counters.get_mut(&year) {
                Some(v) => v,
                None => {
                    let last = db.read(move |c| q::counter(c, year)).await?;
                    counters.entry(year).or_insert(last)
                }
            };
            *seq += 1;
            let number = format!("{}{:02}-{:05}", shop.order_prefix, year % 100, *seq);
            let d = device(&mut rng, total_weight);
            let age = now - created_at;
            let code = outcome(&mut rng, age);
            let closed = matches!(code, "delivered" | "cancelled");
            let worked = !matches!(code, "new" | "diagnostics" | "cancelled");
            let took = rng.gen_range(3_600..(10 * 86_400)).min(age.max(61) - 60);
            let status_since = created_at + took;
            let master_id = if code == "new" && rng.gen_bool(0.6) || masters.is_empty() {
                None
            } else {
                Some(pick(&mut rng, &masters))
            };
            let mut lines = Vec::new();
            if worked || code == "delivered" {
                let (name, lo, hi) = pick(&mut rng, LABOUR);
                lines.push(SeedLine {
                    kind: "labour",
                    name: name.into(),
                    qty: 1,
                    unit_price: money(&mut rng, lo, hi),
                });
                if rng.gen_bool(0.6) {
                    let (name, lo, hi) = pick(&mut rng, PARTS);
                    lines.push(SeedLine {
                        kind: "part",
                        name: name.into(),
                        qty: 1,
                        unit_price: money(&mut rng, lo, hi),
                    });
                }
            }
            let total: i64 = lines.iter().map(|l| l.qty * l.unit_price).sum();
            let estimate = if total > 0 {
                total
            } else {
                money(&mut rng, 100_000, 800_000)
            };
            let mut payments = Vec::new();
            let prepayment = if rng.gen_bool(0.3) {
                (estimate / 4 / 1000) * 1000
            } else {
                0
            };
            if prepayment > 0 {
                payments.push(SeedPayment {
                    kind: "prepayment",
                    amount: prepayment,
                    method: "cash",
                    at: created_at,
                });
            }
            if code == "delivered" && total > prepayment {
                let method = pick(&mut rng, &["cash", "cash", "card", "transfer"]);
                payments.push(SeedPayment {
                    kind: "payment",
                    amount: total - prepayment,
                    method,
                    at: status_since,
                });
            }
            if code == "cancelled" && prepayment > 0 {
                payments.push(SeedPayment {
                    kind: "refund",
                    amount: prepayment,
                    method: "cash",
                    at: status_since,
                });
            }
            rows.push(SeedOrder {
                number,
                customer_id,
                status_id: statuses[code],
                status_code: code,
                status_since,
                master_id,
                device_category: d.category,
                brand: d.brand,
                model: pick(&mut rng, d.models),
                serial: serial(&mut rng, d.category),
                complaint: pick(&mut rng, COMPLAINTS),
                condition: pick(&mut rng, CONDITIONS),
                accessories: pick(&mut rng, ACCESSORIES),
                urgent: rng.gen_bool(0.07),
                promised_at: Some(created_at + rng.gen_range(2..8) * 86_400),
                estimate,
                warranty_days: if code == "delivered" {
                    pick(&mut rng, &[0, 14, 30, 90])
                } else {
                    0
                },
                created_by: creator,
                created_at,
                closed_at: closed.then_some(status_since),
                lines,
                payments,
            });
        }
        let years: Vec<(i32, i64)> = counters.iter().map(|(y, l)| (*y, *l)).collect();
        db.write(move |c| {
            q::insert_orders(c, &rows)?;
            for (y, last) in years {
                q::advance_counter(c, y, last)?;
            }
            Ok(())
        })
        .await?;
        left -= n;
        made += n;
    }
    report.orders = made;
    db.write(q::finish).await?;
    Ok(report)
}
