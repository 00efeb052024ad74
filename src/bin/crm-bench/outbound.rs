//! `outbound`: call lists and segments (issue 18), in process, every commit durable (the
//! default `Full` fsync).
//!
//! `crm-bench outbound [--customers N] [--orders M] [--queue-customers Q]
//!  [--operators K] [--per-operator P] [--rounds R]` prints:
//! - `seed_s`: the `crm seed` load of N customers and M orders (setup, for scale);
//! - `count_<filter>_ms`: a segment's live count over the N customers, median, p99 and
//!   max over R rounds (default 50), for each kind of condition a segment has and for
//!   combinations of them;
//! - `list_build_s`: a call list of Q customers built from a segment and shared out
//!   round-robin to K operators;
//! - `next_p50_ms` / `next_p99_ms`: the queue's "next item" (take the next due item in
//!   one unit of work, then read its card and script) with K operators working at once,
//!   each taking P items and recording an outcome for each;
//! - `reference_write_p50_ms` / `_p99_ms`: the same-run reference, a bare unit of work
//!   (one activity row) at the same concurrency: what a durable commit costs here;
//! - `order_create_per_s_{with,without}_facts` and `order_insert_us_{with,without}_facts`:
//!   order writes on the big shop with and without the triggers that keep the customer
//!   facts (`--write-rounds W` rounds of each, alternating, median; default 3): orders
//!   per second through `Orders::create` (8 clients, each order a durable unit of work,
//!   `--write-orders O` per round, default 400), and the microseconds of one bare
//!   `INSERT` among 2 000 in one transaction (what the triggers add, without the fsync).

use std::time::{Duration, Instant};

use crm::db::{Db, DbOptions};
use crm::domain::call_lists::{AgentInput, CallLists, ListSettings, NewList, OutcomeInput};
use crm::domain::clock::Clock;
use crm::domain::orders::{NewOrder, Orders};
use crm::domain::segments::{SegmentFilter, Segments};
use crm::domain::telephony::Telephony;
use crm::domain::work::Store;
use crm::domain::Actor;
use crm::events::EventBus;
use crm::model::{Language, Role};

use crate::stats::{median, ms, percentile};

fn arg(args: &[String], name: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn filters() -> Vec<(&'static str, SegmentFilter)> {
    let f = SegmentFilter::default;
    vec![
        ("all", f()),
        (
            "opted_in",
            SegmentFilter {
                opted_in: Some(true),
                ..f()
            },
        ),
        (
            "tags",
            SegmentFilter {
                tags: vec!["vip".into(), "optom".into()],
                ..f()
            },
        ),
        (
            "kind_language",
            SegmentFilter {
                kind: Some("person".into()),
                language: Some("ru".into()),
                ..f()
            },
        ),
        (
            "kind",
            SegmentFilter {
                kind: Some("company".into()),
                ..f()
            },
        ),
        (
            "language",
            SegmentFilter {
                language: Some("en".into()),
                ..f()
            },
        ),
        (
            "not_opted_in",
            SegmentFilter {
                opted_in: Some(false),
                ..f()
            },
        ),
        (
            "branch",
            SegmentFilter {
                branch_id: Some(1),
                ..f()
            },
        ),
        (
            "has_open_order",
            SegmentFilter {
                has_open_order: Some(true),
                ..f()
            },
        ),
        (
            "no_open_order",
            SegmentFilter {
                has_open_order: Some(false),
                ..f()
            },
        ),
        (
            "visited_within_365",
            SegmentFilter {
                visited_within_days: Some(365),
                ..f()
            },
        ),
        (
            "not_visited_365",
            SegmentFilter {
                not_visited_days: Some(365),
                ..f()
            },
        ),
        (
            "min_spent",
            SegmentFilter {
                min_spent: Some(1_000_000),
                ..f()
            },
        ),
        (
            "ready_7_days",
            SegmentFilter {
                ready_days: Some(7),
                ..f()
            },
        ),
        (
            "warranty_30_days",
            SegmentFilter {
                warranty_ending_days: Some(30),
                ..f()
            },
        ),
        // Combinations a shop makes: last year's customers who agreed to promotions, the
        // tagged ones who agreed, a branch's lapsed customers, big spenders by language,
        // and what a broadcast adds to any segment (opted in).
        (
            "opted_in+visited_within_365",
            SegmentFilter {
                opted_in: Some(true),
                visited_within_days: Some(365),
                ..f()
            },
        ),
        (
            "tags+opted_in",
            SegmentFilter {
                tags: vec!["vip".into(), "optom".into()],
                opted_in: Some(true),
                ..f()
            },
        ),
        (
            "branch+not_visited_365+opted_in",
            SegmentFilter {
                branch_id: Some(1),
                not_visited_days: Some(365),
                opted_in: Some(true),
                ..f()
            },
        ),
        (
            "language+min_spent",
            SegmentFilter {
                language: Some("ru".into()),
                min_spent: Some(1_000_000),
                ..f()
            },
        ),
        (
            "warranty_30_days+opted_in",
            SegmentFilter {
                warranty_ending_days: Some(30),
                opted_in: Some(true),
                ..f()
            },
        ),
        (
            "all+archived",
            SegmentFilter {
                include_archived: true,
                ..f()
            },
        ),
        (
            "open_order+branch+opted_in",
            SegmentFilter {
                has_open_order: Some(true),
                branch_id: Some(1),
                opted_in: Some(true),
                ..f()
            },
        ),
    ]
}

fn open() -> anyhow::Result<(tempfile::TempDir, Db, Store)> {
    let dir = tempfile::tempdir()?;
    let db = Db::open(&dir.path().join("crm.db"), &DbOptions::default())?;
    let store = Store::with_clock(db.clone(), EventBus::default(), Clock::default());
    Ok((dir, db, store))
}

fn actor(id: i64, role: Role) -> Actor {
    Actor::builtin(id, &format!("u{id}"), role, Language::UzLatn)
}

async fn users(db: &Db, n: usize) -> anyhow::Result<(Actor, Vec<Actor>)> {
    let ids = db
        .write(move |c| {
            let now = crm::db::now();
            let mut ids = Vec::new();
            for i in 0..=n {
                let name = format!("bench{i}");
                ids.push(crm::db::accounts::insert_user(
                    c,
                    &crm::db::accounts::NewUserRow {
                        username: &name,
                        display_name: &name,
                        role: if i == 0 { Role::Admin } else { Role::Operator },
                        role_id: None,
                        language: Language::UzLatn,
                        password_hash: "-",
                    },
                    now,
                )?);
            }
            Ok(ids)
        })
        .await?;
    Ok((
        actor(ids[0], Role::Admin),
        ids[1..].iter().map(|i| actor(*i, Role::Operator)).collect(),
    ))
}

/// Order writes with the customer-fact triggers and without them, alternating rounds on
/// one database (so both see the same data, cache and box load).
async fn order_writes(
    db: &Db,
    store: &Store,
    customers: usize,
    rounds: usize,
    per_round: usize,
) -> anyhow::Result<()> {
    const CLIENTS: usize = 8;
    const RAW: usize = 2_000;
    let (admin, _) = users(db, 0).await?;
    let orders = Orders::new(store.clone());
    // [with, without]: orders per second, microseconds per bare insert.
    let mut per_s: [Vec<f64>; 2] = Default::default();
    let mut raw_us: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds * 2 {
        let off = round % 2;
        let saved = if off == 1 {
            db.write(crm::db::segments::drop_fact_triggers).await?
        } else {
            Vec::new()
        };
        // Customers spread over the whole shop (a stride prime to any shop size here).
        let pick = move |k: usize| 1 + ((round * per_round + k) * 7_919 % customers) as i64;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let (orders, admin) = (orders.clone(), admin.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..per_round / CLIENTS {
                    let n = NewOrder {
                        customer_id: Some(pick(client * per_round + i)),
                        device_category: "phone".into(),
                        complaint: "Bench".into(),
                        prepayment: 10_000,
                        ..Default::default()
                    };
                    orders.create(&admin, n).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        per_s[off].push((per_round / CLIENTS * CLIENTS) as f64 / t.elapsed().as_secs_f64());
        let took = db
            .write(move |c| {
                let now = crm::db::now();
                let t = Instant::now();
                for i in 0..RAW {
                    let number = format!("BENCH-{round}-{i}");
                    crm::db::orders::insert(
                        c,
                        &crm::db::orders::NewOrderRow {
                            number: &number,
                            branch_id: 1,
                            customer_id: pick(1_000_000 + i),
                            status_id: 1,
                            master_id: None,
                            device_category: "phone",
                            brand: "",
                            model: "",
                            serial: "",
                            complaint: "Bench",
                            condition: "",
                            accessories: "",
                            urgent: false,
                            promised_at: None,
                            estimate: 0,
                            warranty_days: 0,
                            created_by: None,
                        },
                        now,
                    )?;
                }
                Ok(t.elapsed())
            })
            .await?;
        raw_us[off].push(took.as_secs_f64() * 1e6 / RAW as f64);
        if off == 1 {
            db.write(move |c| crm::db::segments::restore_fact_triggers(c, &saved))
                .await?;
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (i, name) in ["with", "without"].iter().enumerate() {
        println!(
            "order_create_per_s_{name}_facts={:.0} order_insert_us_{name}_facts={:.1} rounds={}",
            med(&mut per_s[i]),
            med(&mut raw_us[i]),
            per_s[i].len()
        );
    }
    Ok(())
}

fn p(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    (percentile(v, 50.0), percentile(v, 99.0))
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let customers = arg(args, "--customers").unwrap_or(1_000_000);
    let orders = arg(args, "--orders").unwrap_or(customers);
    let queue_customers = arg(args, "--queue-customers").unwrap_or(100_000);
    let operators = arg(args, "--operators").unwrap_or(20);
    let per_op = arg(args, "--per-operator").unwrap_or(100);
    let rounds = arg(args, "--rounds").unwrap_or(50);
    let write_rounds = arg(args, "--write-rounds").unwrap_or(3);
    let write_orders = arg(args, "--write-orders").unwrap_or(400);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "customers={customers} orders={orders} queue_customers={queue_customers} operators={operators} per_operator={per_op} rounds={rounds}"
    );
    rt.block_on(async {
        // Segment counts over the big shop.
        let (_dir, db, store) = open()?;
        let t = Instant::now();
        crm::domain::seed::seed(&db, customers, orders, 18).await?;
        println!("seed_s={:.1}", t.elapsed().as_secs_f64());
        let segs = Segments::new(store.clone());
        // `--customers 0`: the queue part only.
        for (name, f) in filters().into_iter().filter(|_| customers > 0) {
            let mut times = Vec::new();
            let mut count = 0;
            for _ in 0..rounds {
                let t = Instant::now();
                count = segs.count(&actor(1, Role::Admin), f.clone()).await?;
                times.push(t.elapsed());
            }
            let max = times.iter().max().copied().unwrap_or_default();
            let (_, p99) = p(&mut times);
            println!(
                "count_{name}_ms={} p99={} max={} customers={count}",
                ms(median(times)),
                ms(p99),
                ms(max)
            );
        }
        // After the counts: without the triggers the facts drift.
        if customers > 0 && write_rounds > 0 {
            order_writes(&db, &store, customers, write_rounds, write_orders).await?;
        }
        drop(segs);
        drop(store);
        drop(db);

        // The queue, on a shop of its own.
        let (_dir, db, store) = open()?;
        crm::domain::seed::seed(&db, queue_customers, 0, 19).await?;
        let (admin, ops) = users(&db, operators).await?;
        let tel = Telephony::new(store.clone(), Clock::default());
        let lists = CallLists::new(store.clone(), tel);
        let t = Instant::now();
        let seg = Segments::new(store.clone())
            .save(&admin, None, "Hammasi", SegmentFilter::default())
            .await?;
        let id = lists
            .create(
                &admin,
                NewList {
                    name: "Bench".into(),
                    source: "segment".into(),
                    source_ref: Some(seg),
                    branch_id: None,
                    assignment: Some("round_robin".into()),
                    agents: ops
                        .iter()
                        .map(|a| AgentInput {
                            user_id: a.user_id,
                            branch_id: None,
                        })
                        .collect(),
                    settings: ListSettings::default(),
                },
            )
            .await?;
        println!(
            "list_build_s={:.2} items={}",
            t.elapsed().as_secs_f64(),
            lists.get(&actor(1, Role::Admin), id).await?.list.pending
        );
        let mut tasks = Vec::new();
        for a in ops.clone() {
            let lists = lists.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_op);
                for i in 0..per_op {
                    let t = Instant::now();
                    let q = lists.next(&a).await?;
                    lat.push(t.elapsed());
                    let Some(q) = q else { break };
                    let outcome = if i % 3 == 0 { "no_answer" } else { "reached" };
                    lists
                        .record(
                            &a,
                            q.item.id,
                            OutcomeInput {
                                outcome: outcome.into(),
                                ..Default::default()
                            },
                        )
                        .await?;
                }
                anyhow::Ok(lat)
            }));
        }
        let mut next = Vec::new();
        for t in tasks {
            next.extend(t.await??);
        }
        let (p50, p99) = p(&mut next);
        println!(
            "next_p50_ms={} next_p99_ms={} samples={}",
            ms(p50),
            ms(p99),
            next.len()
        );
        // The reference: a bare unit of work at the same concurrency.
        let mut tasks = Vec::new();
        for a in ops.clone() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_op);
                for _ in 0..per_op {
                    let t = Instant::now();
                    store
                        .write(&a, |tx| {
                            tx.log("bench", "bench", None, serde_json::json!({}));
                            Ok(())
                        })
                        .await?;
                    lat.push(t.elapsed());
                }
                anyhow::Ok(lat)
            }));
        }
        let mut refs = Vec::new();
        for t in tasks {
            refs.extend(t.await??);
        }
        let (r50, r99) = p(&mut refs);
        println!(
            "reference_write_p50_ms={} reference_write_p99_ms={}",
            ms(r50),
            ms(r99)
        );
        anyhow::Ok(())
    })
}
