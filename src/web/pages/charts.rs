//! Server-drawn SVG charts. Only SVG presentation attributes and classes are used (the
//! CSP forbids inline `style`), and every bar carries a `<title>` so its value shows on
//! hover and reaches screen readers.

use maud::{html, Markup};

/// One bar: its axis label, its value, and the text shown for the value.
pub struct Bar {
    pub label: String,
    pub value: i64,
    pub text: String,
}

const W: i64 = 640;
const H: i64 = 180;
const PAD_BOTTOM: i64 = 22;
const PAD_TOP: i64 = 14;

/// A vertical bar chart scaled to its largest value; labels thin out so they never
/// overlap.
pub fn bars(id: &str, caption: &str, bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let n = bars.len().max(1) as i64;
    let slot = W as f64 / n as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let label_every = ((n as f64 * 42.0) / W as f64).ceil().max(1.0) as usize;
    let plot_h = (H - PAD_BOTTOM - PAD_TOP) as f64;
    html! {
        figure.chart #(id) {
            figcaption { (caption) }
            svg viewBox=(format!("0 0 {W} {H}")) width="100%" role="img" aria-label=(caption)
                preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg" {
                line x1="0" y1=(H - PAD_BOTTOM) x2=(W) y2=(H - PAD_BOTTOM) stroke="currentColor" stroke-opacity="0.3" {}
                text x="2" y="10" font-size="10" fill="currentColor" { (bars.iter().find(|b| b.value == max).map(|b| b.text.as_str()).unwrap_or("")) }
                @for (i, b) in bars.iter().enumerate() {
                    @let h = (b.value.max(0) as f64 / max as f64) * plot_h;
                    @let x = i as f64 * slot + (slot - bar_w) / 2.0;
                    rect.bar x=(format!("{x:.1}")) y=(format!("{:.1}", (H - PAD_BOTTOM) as f64 - h))
                        width=(format!("{bar_w:.1}")) height=(format!("{h:.1}")) fill="currentColor" {
                        title { (b.label) ": " (b.text) }
                    }
                    @if i % label_every == 0 {
                        text x=(format!("{:.1}", i as f64 * slot + slot / 2.0)) y=(H - 6) font-size="10"
                            text-anchor="middle" fill="currentColor" { (b.label) }
                    }
                }
            }
        }
    }
}

/// Horizontal bars with their labels, for a few categories (orders per status).
pub fn hbars(id: &str, caption: &str, bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let row = 22;
    let h = row * bars.len().max(1) as i64;
    let label_w = 170;
    let plot = (W - label_w - 60) as f64;
    html! {
        figure.chart #(id) {
            figcaption { (caption) }
            svg viewBox=(format!("0 0 {W} {h}")) width="100%" role="img" aria-label=(caption)
                xmlns="http://www.w3.org/2000/svg" {
                @for (i, b) in bars.iter().enumerate() {
                    @let y = i as i64 * row;
                    @let w = (b.value.max(0) as f64 / max as f64) * plot;
                    text x="0" y=(y + 15) font-size="12" fill="currentColor" { (b.label) }
                    rect.bar x=(label_w) y=(y + 4) width=(format!("{w:.1}")) height=(row - 8) fill="currentColor" {
                        title { (b.label) ": " (b.text) }
                    }
                    text x=(format!("{:.1}", label_w as f64 + w + 6.0)) y=(y + 15) font-size="12" fill="currentColor" { (b.text) }
                }
            }
        }
    }
}
