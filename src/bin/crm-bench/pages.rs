//! `pages`: the front desk's pages on a large database (issue 20's goals: first byte under
//! 30 ms and usable under 300 ms with 1 000 000 orders, at 1366 px and at a 390 px phone;
//! no page loads more than 150 KB of JS and CSS).
//!
//! `crm-bench pages [--data-dir DIR] [--customers N] [--orders M] [--rounds R]`
//!
//! Two views of each page:
//! - over a raw socket: time to the response's first byte, and to its last, signed in as
//!   the admin (the role that sees the most);
//! - in headless Chromium over chromedriver (Debian's chromium, chromium-driver): the
//!   Navigation Timing of each visit (first byte, DOMContentLoaded = usable: deferred
//!   scripts have run, and load), and the JS and CSS the page pulled in (decoded bytes).
//!
//! The reference in the same run is `/healthz`: the server's floor for one request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::core::{login, prepare};
use crate::httpc::request;
use crate::server::{crm_binary, free_addr, serve, stop, wait_healthy};
use crate::stats::{ms, percentile};

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Time to the first byte of the answer and to its end, on a fresh connection.
fn first_byte(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
) -> anyhow::Result<(Duration, Duration, u16)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept-Language: ru\r\nConnection: close\r\n\r\n"
    );
    let t = Instant::now();
    s.write_all(req.as_bytes())?;
    let mut one = [0u8; 1];
    s.read_exact(&mut one)?;
    let first = t.elapsed();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    let all = t.elapsed();
    let head = String::from_utf8_lossy(&rest[..rest.len().min(16)]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((first, all, status))
}

/// One WebDriver request. chromedriver keeps connections open whatever the request says,
/// so the answer is read by its Content-Length, not to the end of the stream.
fn wd(addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "webdriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                })
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                return Ok((
                    status,
                    String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).to_string(),
                ));
            }
        }
    }
}

/// A WebDriver session on a chromedriver of our own.
struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
}

impl Driver {
    fn start(width: u32, height: u32, profile: &std::path::Path) -> anyhow::Result<Driver> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("chromedriver: {e} (apt-get install chromium-driver)"))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-background-networking", "--disable-sync",
                         format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        // chromedriver keeps its connections open, so every request goes through `wd`
        // (which reads by Content-Length); the last error is what a failure reports.
        let started = Instant::now();
        let session = loop {
            let last = match wd(addr, "POST", "/session", &caps.to_string()) {
                Ok((_, body)) => {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if let Some(id) = v["value"]["sessionId"].as_str() {
                        break id.to_string();
                    }
                    format!("no session: {body}")
                }
                Err(e) => format!("chromedriver does not answer: {e}"),
            };
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "{last}");
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok(Driver {
            child,
            addr,
            session,
        })
    }

    fn call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, text) = wd(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            &body.to_string(),
        )?;
        let v: Value = serde_json::from_str(&text)?;
        anyhow::ensure!(status == 200, "webdriver {path}: {text}");
        Ok(v["value"].clone())
    }

    fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", "/url", json!({ "url": url })).map(|_| ())
    }

    fn script(&self, js: &str) -> anyhow::Result<Value> {
        self.call("POST", "/execute/sync", json!({ "script": js, "args": [] }))
    }

    fn quit(mut self) {
        let _ = wd(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            "",
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one visit measured, in ms and bytes.
const TIMING: &str = r#"
const n = performance.getEntriesByType('navigation')[0];
const own = performance.getEntriesByType('resource')
  .filter(e => /\.(js|css)(\?|$)/.test(new URL(e.name).pathname));
return {
  ttfb: n.responseStart - n.startTime,
  usable: n.domContentLoadedEventEnd - n.startTime,
  load: n.loadEventEnd - n.startTime,
  jscss: own.reduce((a, e) => a + (e.decodedBodySize || 0), 0),
  status: n.responseStatus || 0,
  width: document.documentElement.scrollWidth,
  viewport: window.innerWidth
};
"#;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let bin = crm_binary()?;
    let (dir, _keep) = prepare(args, &bin)?;
    let rounds: usize = arg(args, "--rounds").unwrap_or("30").parse()?;
    let addr = free_addr()?;
    let child = serve(&bin, &dir, addr)?;
    wait_healthy(addr, Duration::from_secs(120))?;
    let result = measure(addr, rounds);
    stop(child);
    result
}

fn measure(addr: SocketAddr, rounds: usize) -> anyhow::Result<()> {
    let cookie = login(addr)?;
    // Real ids to open: the newest order and its customer, the newest import/segment if any.
    let list = request(
        addr,
        "GET",
        "/api/v1/orders?per_page=1",
        &[("Cookie", &cookie)],
        "",
    )?;
    let v: Value = serde_json::from_str(&list.body)?;
    let order = v["items"][0]["id"].as_i64().unwrap_or(1);
    let customer = v["items"][0]["customer_id"].as_i64().unwrap_or(1);
    let pages: Vec<String> = [
        "/",
        "/orders",
        "/orders?overdue=1",
        &format!("/orders/{order}"),
        "/orders/new",
        "/my",
        "/workload",
        "/customers",
        &format!("/customers/{customer}"),
        "/search?q=Dilnoza",
        "/calls",
        "/calls/missed",
        "/inbox",
        "/telephony",
        "/users",
        "/settings",
        "/audit/activity",
        "/segments",
        "/imports",
        "/backups",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // The floor: /healthz over the same kind of connection.
    let mut floor = Vec::new();
    for _ in 0..rounds {
        floor.push(first_byte(addr, "/healthz", "")?.0);
    }
    floor.sort();
    println!("healthz_first_byte_p50_ms={}", ms(percentile(&floor, 50.0)));

    println!("# over a socket, signed in as admin, {rounds} rounds per page");
    for p in &pages {
        let (mut firsts, mut alls) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (f, a, status) = first_byte(addr, p, &cookie)?;
            anyhow::ensure!(status == 200, "{p} answered {status}");
            firsts.push(f);
            alls.push(a);
        }
        firsts.sort();
        alls.sort();
        println!(
            "page {p:<28} first_byte_p50_ms={} p99_ms={} whole_p50_ms={}",
            ms(percentile(&firsts, 50.0)),
            ms(percentile(&firsts, 99.0)),
            ms(percentile(&alls, 50.0)),
        );
    }

    let Some((name, value)) = cookie.split(';').next().and_then(|c| c.split_once('=')) else {
        anyhow::bail!("no session cookie");
    };
    for (w, h) in [(1366u32, 768u32), (390, 844)] {
        let profile = tempfile::tempdir()?;
        let d = Driver::start(w, h, profile.path())?;
        d.goto(&format!("http://{addr}/login"))?;
        d.call(
            "POST",
            "/cookie",
            json!({"cookie": {"name": name.trim(), "value": value.trim(), "path": "/"}}),
        )?;
        println!("# Chromium at {w}x{h}: median of 5 visits (the first, cold, apart)");
        let mut worst_usable: f64 = 0.0;
        let mut most_jscss: f64 = 0.0;
        for p in &pages {
            let url = format!("http://{addr}{p}");
            let (mut ttfb, mut usable, mut load) = (Vec::new(), Vec::new(), Vec::new());
            let mut cold: f64 = 0.0;
            let mut jscss: f64 = 0.0;
            let mut overflow = false;
            for i in 0..6 {
                d.goto(&url)?;
                let t = d.script(TIMING)?;
                let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
                if i == 0 {
                    cold = f("usable");
                    continue;
                }
                ttfb.push(f("ttfb"));
                usable.push(f("usable"));
                load.push(f("load"));
                jscss = jscss.max(f("jscss"));
                overflow |= f("width") > f("viewport") + 1.0;
            }
            let u = median(&mut usable);
            worst_usable = worst_usable.max(u);
            most_jscss = most_jscss.max(jscss);
            println!(
                "browser {w} {p:<28} ttfb_ms={:.1} usable_ms={u:.1} load_ms={:.1} cold_usable_ms={cold:.1} js_css_kb={:.1}{}",
                median(&mut ttfb),
                median(&mut load),
                jscss / 1024.0,
                if overflow { " WIDER_THAN_SCREEN" } else { "" }
            );
        }
        println!(
            "browser_{w}_worst_usable_median_ms={worst_usable:.1} most_js_css_kb={:.1}",
            most_jscss / 1024.0
        );
        d.quit();
    }
    Ok(())
}
