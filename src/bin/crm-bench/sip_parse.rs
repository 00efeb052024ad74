//! `crm-bench sip-parse`: our SIP parser (`crm::sip::message`) against rsip 0.4, the crate
//! the issue suggested, on the RFC 4475 torture messages (with the kit's manifest of which
//! a parser must accept and which refuse) and on SIPp-style messages as the bench sends
//! them. Per message: does each parser get the manifest's verdict, and do both read the
//! same fields a proxy routes by (start line, top Via branch, From/To tags, Call-ID,
//! CSeq, body length)? Then the time per message for both, median of rounds.
//!
//! "Accepted" means what a proxy needs, for both parsers: the message parses AND those
//! fields can be read (for rsip: `SipMessage::try_from` plus `.typed()` of Via, From,
//! To, CSeq). Datagram rules (UDP: Content-Length may be absent).
//!
//! Built only with `--features rsip-compare` (rsip is not a dependency of `crm` itself):
//!   cargo run --release --features rsip-compare --bin crm-bench -- sip-parse
//! Env: SIP_KIT (default ../shared/bench/sip), ROUNDS (default 7).

use std::path::PathBuf;
use std::time::Instant;

use crm::sip::message::{self, NameAddr, StartLine};

/// The fields a proxy routes by, as each parser reads them.
#[derive(Debug, PartialEq, Eq)]
struct View {
    start: String,
    branch: String,
    from_tag: String,
    to_tag: String,
    call_id: String,
    cseq: String,
    body_len: usize,
}

fn ours(b: &[u8]) -> Result<View, String> {
    let m = message::parse(b, true).map_err(|e| e.reason.to_string())?;
    let start = match &m.start {
        StartLine::Request {
            method_text, uri, ..
        } => format!("{method_text} {uri}"),
        StartLine::Response { code, .. } => code.to_string(),
    };
    let tag = |h: &str| {
        m.header(h)
            .and_then(NameAddr::parse)
            .map(|n| n.tag().unwrap_or("").to_string())
            .ok_or_else(|| format!("{h} unreadable"))
    };
    let (n, method) = m.cseq();
    Ok(View {
        branch: m
            .top_via()
            .ok_or("Via unreadable")?
            .branch()
            .unwrap_or("")
            .to_string(),
        from_tag: tag("from")?,
        to_tag: tag("to")?,
        call_id: m.call_id().to_string(),
        cseq: format!("{n} {method}"),
        body_len: m.body.len(),
        start,
    })
}

fn theirs(b: &[u8]) -> Result<View, String> {
    use rsip::prelude::*;
    let e = |e: rsip::Error| e.to_string();
    let m = rsip::SipMessage::try_from(b).map_err(e)?;
    let start = match &m {
        rsip::SipMessage::Request(r) => format!("{} {}", r.method, r.uri),
        rsip::SipMessage::Response(r) => r.status_code.code().to_string(),
    };
    let via = m.via_header().map_err(e)?.typed().map_err(e)?;
    let from = m.from_header().map_err(e)?.typed().map_err(e)?;
    let to = m.to_header().map_err(e)?.typed().map_err(e)?;
    let cseq = m.cseq_header().map_err(e)?.typed().map_err(e)?;
    Ok(View {
        start,
        branch: via.branch().map(|b| b.to_string()).unwrap_or_default(),
        from_tag: from.tag().map(|t| t.to_string()).unwrap_or_default(),
        to_tag: to.tag().map(|t| t.to_string()).unwrap_or_default(),
        call_id: m.call_id_header().map_err(e)?.value().to_string(),
        cseq: format!("{} {}", cseq.seq, cseq.method),
        body_len: m.body().len(),
    })
}

struct Case {
    name: String,
    bytes: Vec<u8>,
    /// "accept" or "reject" (manifest), "real" for the SIPp-style set (must accept).
    verdict: String,
    /// "must" or "may".
    strictness: String,
    /// What the element then does, per the manifest.
    handling: String,
}

fn torture(kit: &std::path::Path) -> anyhow::Result<Vec<Case>> {
    let dir = kit.join("torture");
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv"))?;
    let mut cases = Vec::new();
    for line in manifest.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(f.len() >= 8, "manifest line: {line}");
        cases.push(Case {
            name: f[2].to_string(),
            bytes: std::fs::read(dir.join("messages").join(f[0]))?,
            verdict: f[6].to_string(),
            strictness: f[7].to_string(),
            handling: f[8].to_string(),
        });
    }
    Ok(cases)
}

/// What the bench's SIPp scenarios and a proxy's other side put on the wire.
fn real() -> Vec<Case> {
    let via_ua = "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-4711-1-0";
    let sdp = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let msgs = [
        ("register", format!(
            "REGISTER sip:127.0.0.1:5070 SIP/2.0\r\n{via_ua}\r\nFrom: <sip:1000@127.0.0.1:5070>;tag=4711SIPpTag001\r\nTo: <sip:1000@127.0.0.1:5070>\r\nCall-ID: 1-4711@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:1000@127.0.0.1:5060;transport=UDP>\r\nExpires: 3600\r\nMax-Forwards: 70\r\nUser-Agent: SIPp\r\nContent-Length: 0\r\n\r\n")),
        ("register_auth", format!(
            "REGISTER sip:127.0.0.1:5070 SIP/2.0\r\n{via_ua}\r\nFrom: <sip:1000@127.0.0.1:5070>;tag=4711SIPpTag001\r\nTo: <sip:1000@127.0.0.1:5070>\r\nCall-ID: 1-4711@127.0.0.1\r\nCSeq: 2 REGISTER\r\nContact: <sip:1000@127.0.0.1:5060;transport=UDP>\r\nAuthorization: Digest username=\"1000\",realm=\"crm.local\",cnonce=\"6b8b4567\",nc=00000001,qop=auth,uri=\"sip:127.0.0.1:5070\",nonce=\"692e1a2b.1f.0123456789abcdef\",response=\"7d9c0e6d3b2a1f0e9d8c7b6a59483726\",algorithm=MD5\r\nExpires: 3600\r\nMax-Forwards: 70\r\nUser-Agent: SIPp\r\nContent-Length: 0\r\n\r\n")),
        ("invite_sdp", format!(
            "INVITE sip:1999@127.0.0.1:5070 SIP/2.0\r\n{via_ua}\r\nFrom: <sip:1000@127.0.0.1:5070>;tag=4711SIPpTag002\r\nTo: <sip:1999@127.0.0.1:5070>\r\nCall-ID: 2-4711@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@127.0.0.1:5060>\r\nMax-Forwards: 70\r\nProxy-Authorization: Digest username=\"1000\",realm=\"crm.local\",cnonce=\"6b8b4567\",nc=00000001,qop=auth,uri=\"sip:1999@127.0.0.1:5070\",nonce=\"692e1a2b.20.0123456789abcdef\",response=\"7d9c0e6d3b2a1f0e9d8c7b6a59483726\",algorithm=MD5\r\nSubject: Performance Test\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len())),
        ("ringing_180", "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcrm1f2e3d4c, SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-4711-1-0;rport=5060;received=127.0.0.1\r\nRecord-Route: <sip:127.0.0.1:5070;lr>\r\nFrom: <sip:1000@127.0.0.1:5070>;tag=4711SIPpTag002\r\nTo: <sip:1999@127.0.0.1:5070>;tag=4712SIPpTag011\r\nCall-ID: 2-4711@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5090;transport=UDP>\r\nContent-Length: 0\r\n\r\n".to_string()),
        ("ok_200_sdp", format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcrm1f2e3d4c, SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-4711-1-0;rport=5060;received=127.0.0.1\r\nRecord-Route: <sip:127.0.0.1:5070;lr>\r\nFrom: <sip:1000@127.0.0.1:5070>;tag=4711SIPpTag002\r\nTo: <sip:1999@127.0.0.1:5070>;tag=4712SIPpTag011\r\nCall-ID: 2-4711@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5090;transport=UDP>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len())),
        ("bye_routed", format!("BYE sip:127.0.0.1:5090;transport=UDP SIP/2.0\r\n{via_ua}\r\nRoute: <sip:127.0.0.1:5070;lr>\r\nFrom: <sip:1000@127.0.0.1:5070>;tag=4711SIPpTag002\r\nTo: <sip:1999@127.0.0.1:5070>;tag=4712SIPpTag011\r\nCall-ID: 2-4711@127.0.0.1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")),
    ];
    msgs.into_iter()
        .map(|(n, m)| Case {
            name: n.to_string(),
            bytes: m.into_bytes(),
            verdict: "real".into(),
            strictness: "must".into(),
            handling: "process normally".into(),
        })
        .collect()
}

/// Is `accepted` right for this case? (None: either is right.) A well-formed message
/// the element must answer "400 Bad Request" (insuf, multi01) may be refused by the
/// parser: the server answers an unparsable request 400 all the same.
fn right(c: &Case, accepted: bool) -> Option<bool> {
    match (c.verdict.as_str(), c.strictness.as_str()) {
        ("reject", "may") => None,
        ("accept", _) if c.handling.contains("400 Bad Request") => None,
        ("reject", _) => Some(!accepted),
        _ => Some(accepted),
    }
}

/// ns per call of `f` over `msgs`, median of `rounds` rounds.
fn time_per_msg(msgs: &[&[u8]], rounds: usize, f: &dyn Fn(&[u8]) -> bool) -> f64 {
    let iters = (200_000 / msgs.len().max(1)).max(1);
    let mut per = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let mut n = 0usize;
        for _ in 0..iters {
            for m in msgs {
                n += std::hint::black_box(f(std::hint::black_box(m))) as usize;
            }
        }
        std::hint::black_box(n);
        per.push(t.elapsed().as_nanos() as f64 / (iters * msgs.len()) as f64);
    }
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    let kit = PathBuf::from(std::env::var("SIP_KIT").unwrap_or("../shared/bench/sip".into()));
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut cases = torture(&kit)?;
    let n_torture = cases.len();
    cases.extend(real());
    let (mut ours_wrong, mut theirs_wrong, mut differ) = (Vec::new(), Vec::new(), Vec::new());
    println!("# message verdict ours rsip fields");
    for c in &cases {
        let (a, b) = (ours(&c.bytes), theirs(&c.bytes));
        let mark = |r: &Result<View, String>| match (r, right(c, r.is_ok())) {
            (Ok(_), Some(false)) | (Err(_), Some(false)) => "WRONG",
            (Ok(_), _) => "accept",
            (Err(_), _) => "reject",
        };
        let fields = match (&a, &b) {
            (Ok(x), Ok(y)) if x == y => "same".to_string(),
            (Ok(x), Ok(y)) => {
                differ.push(c.name.clone());
                format!("DIFFER ours={x:?} rsip={y:?}")
            }
            (Err(x), Err(y)) => format!("ours: {x}; rsip: {}", first_line(y)),
            (Err(x), _) => format!("ours: {x}"),
            (_, Err(y)) => format!("rsip: {}", first_line(y)),
        };
        if right(c, a.is_ok()) == Some(false) {
            ours_wrong.push(c.name.clone());
        }
        if right(c, b.is_ok()) == Some(false) {
            theirs_wrong.push(c.name.clone());
        }
        println!(
            "msg {} {}/{} ours={} rsip={} {}",
            c.name,
            c.verdict,
            c.strictness,
            mark(&a),
            mark(&b),
            fields
        );
    }
    println!("messages_torture={n_torture}");
    println!("messages_real={}", cases.len() - n_torture);
    println!("ours_wrong={} ({})", ours_wrong.len(), ours_wrong.join(","));
    println!(
        "rsip_wrong={} ({})",
        theirs_wrong.len(),
        theirs_wrong.join(",")
    );
    println!(
        "fields_differ_where_both_accept={} ({})",
        differ.len(),
        differ.join(",")
    );

    // Time on messages both accept, so both do the full work on the same input.
    let both = |from: &[Case]| -> Vec<Vec<u8>> {
        from.iter()
            .filter(|c| ours(&c.bytes).is_ok() && theirs(&c.bytes).is_ok())
            .map(|c| c.bytes.clone())
            .collect()
    };
    for (label, set) in [
        ("torture", both(&cases[..n_torture])),
        ("real", both(&cases[n_torture..])),
    ] {
        let refs: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
        let o = time_per_msg(&refs, rounds, &|m| ours(m).is_ok());
        let t = time_per_msg(&refs, rounds, &|m| theirs(m).is_ok());
        println!("parse_{label}_messages={}", refs.len());
        println!("parse_{label}_ours_ns={o:.0}");
        println!("parse_{label}_rsip_ns={t:.0}");
        println!("parse_{label}_rsip_over_ours={:.2}", t / o);
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(100).collect()
}
