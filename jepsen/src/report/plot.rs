//! `latency.svg` and `rate.svg`: what the clients saw over the run, with
//! the nemesis's faults shaded, so a stall or a burst of errors can be put
//! next to the fault that caused it. Hand-written SVG: two plots do not
//! need a plotting crate, and the files open anywhere.
//!
//! Points and lines are one path per series (an op kind and outcome), not
//! an element per op, so a 100k-op history gives a file of a few MB.

use super::{escape, tick_step, FaultSpan};
use crate::check::history::{Kind, Op, Outcome};
use std::collections::BTreeMap;
use std::fmt::Write;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 420.0;
/// Plot area: left, right, top, bottom edges in px.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 830.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 370.0;

/// One colour per op kind, by `Kind`'s order, so a kind keeps its colour
/// across plots and runs.
fn kind_colour(k: Kind) -> &'static str {
    const PALETTE: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    let all = [Kind::Read, Kind::Write, Kind::Cas, Kind::Add, Kind::Incr, Kind::Generate, Kind::Acquire, Kind::Release, Kind::Put, Kind::Take, Kind::Ack, Kind::Observe, Kind::Event, Kind::Create, Kind::Check, Kind::Close];
    PALETTE[all.iter().position(|x| *x == k).unwrap_or(0) % PALETTE.len()]
}

fn kind_name(k: Kind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Info => "info",
    }
}

/// The frame every plot shares: title, faults shaded, the time axis.
fn frame(title: &str, subtitle: &str, end_s: f64, spans: &[FaultSpan]) -> String {
    let x = |t: f64| LEFT + (RIGHT - LEFT) * t / end_s;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">\
<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>\
<text x=\"{LEFT}\" y=\"18\" font-size=\"14\">{}</text><text x=\"{LEFT}\" y=\"33\" fill=\"#555\">{}</text>",
        escape(title),
        escape(subtitle)
    );
    for sp in spans {
        let (a, b) = (x(sp.from_s), x(sp.to_s.max(sp.from_s)));
        let _ = write!(s, "<rect class=\"fault\" x=\"{a:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{}\" fill=\"#dc0000\" fill-opacity=\"0.12\"><title>{}</title></rect>", (b - a).max(0.5), BOTTOM - TOP, escape(&sp.what));
        // A label as wide as the span allows (about 5.5 px a character).
        let room = ((b - a - 4.0) / 5.5).max(0.0) as usize;
        let label: String = sp.what.chars().take(room).collect();
        if !label.is_empty() {
            let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" fill=\"#b71c1c\">{}</text>", a + 2.0, TOP + 10.0, escape(&label));
        }
    }
    let step = tick_step(end_s, 10.0);
    let mut t = 0.0;
    while t <= end_s + 1e-9 {
        let _ = write!(s, "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{BOTTOM}\" y2=\"{1}\" stroke=\"#888\"/><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{3}</text>", x(t), BOTTOM + 4.0, BOTTOM + 16.0, format_num(t));
        t += step;
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">time since the test began (s)</text><rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>",
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 32.0,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    s
}

fn format_num(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn legend_entry(s: &mut String, row: usize, swatch: &str, label: &str) {
    let y = TOP + 6.0 + 16.0 * row as f64;
    let _ = write!(s, "{swatch}<text x=\"{}\" y=\"{:.1}\">{}</text>", RIGHT + 30.0, y + 4.0, escape(label));
}

/// Op latency over time: one point per completed op at its invocation,
/// its latency on a log scale; colour by kind, shape by outcome (ok a dot,
/// fail a square, info a cross). Ops never answered have no latency and
/// are only counted.
pub fn latency(title: &str, ops: &[Op], spans: &[FaultSpan]) -> String {
    let end_s = super::end_s(ops, &[]).max(spans.iter().map(|s| s.to_s).fold(0.0, f64::max));
    let lat_ms = |o: &Op| o.complete_ns.map(|c| c.saturating_sub(o.invoke_ns) as f64 / 1e6);
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for l in ops.iter().filter_map(lat_ms) {
        lo = lo.min(l.max(0.01));
        hi = hi.max(l.max(0.01));
    }
    if hi == 0.0 {
        (lo, hi) = (1.0, 10.0);
    }
    // Whole decades, so the ticks are powers of ten.
    let (dlo, dhi) = (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0));
    let x = |t: f64| LEFT + (RIGHT - LEFT) * t / end_s;
    let y = |l: f64| BOTTOM - (BOTTOM - TOP) * (l.max(0.01).log10() - dlo) / (dhi - dlo);

    let mut series: BTreeMap<(usize, u8), (Kind, Outcome, String, usize)> = BTreeMap::new();
    let mut unanswered = 0;
    for o in ops {
        let Some(l) = lat_ms(o) else {
            unanswered += 1;
            continue;
        };
        let (px, py) = (x(o.invoke_ns as f64 / 1e9), y(l));
        let e = series.entry((o.f as usize, o.outcome as u8)).or_insert((o.f, o.outcome, String::new(), 0));
        e.3 += 1;
        let _ = match o.outcome {
            Outcome::Ok | Outcome::Fail => write!(e.2, "M{px:.1} {py:.1}h0"),
            Outcome::Info => write!(e.2, "M{:.1} {:.1}l4 4m0 -4l-4 4", px - 2.0, py - 2.0),
        };
    }
    let subtitle = format!("op latency (ms, log scale) by invocation time; {unanswered} ops never answered are not drawn");
    let mut s = frame(title, &subtitle, end_s, spans);
    let mut d = dlo;
    while d <= dhi + 1e-9 {
        let l = 10f64.powf(d);
        let _ = write!(s, "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\">{3}</text>", y(l), LEFT - 5.0, y(l) + 4.0, format_num(l));
        d += 1.0;
    }
    let _ = write!(s, "<text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">latency (ms)</text>", (TOP + BOTTOM) / 2.0);
    for (kind, outcome, d, _) in series.values() {
        let c = kind_colour(*kind);
        let style = match outcome {
            Outcome::Ok => format!("stroke=\"{c}\" stroke-width=\"3\" stroke-linecap=\"round\" stroke-opacity=\"0.55\""),
            Outcome::Fail => format!("stroke=\"{c}\" stroke-width=\"4\" stroke-linecap=\"square\" stroke-opacity=\"0.8\""),
            Outcome::Info => format!("stroke=\"{c}\" stroke-width=\"1.2\""),
        };
        let _ = write!(s, "<path class=\"{}-{}\" fill=\"none\" {style} d=\"{d}\"/>", kind_name(*kind), outcome_name(*outcome));
    }
    for (row, (kind, outcome, _, n)) in series.values().enumerate() {
        let (cx, cy) = (RIGHT + 18.0, TOP + 6.0 + 16.0 * row as f64);
        let swatch = match outcome {
            Outcome::Ok => format!("<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{}\"/>", kind_colour(*kind)),
            Outcome::Fail => format!("<rect x=\"{}\" y=\"{}\" width=\"6\" height=\"6\" fill=\"{}\"/>", cx - 3.0, cy - 3.0, kind_colour(*kind)),
            Outcome::Info => format!("<path d=\"M{} {}l6 6m0 -6l-6 6\" stroke=\"{}\"/>", cx - 3.0, cy - 3.0, kind_colour(*kind)),
        };
        legend_entry(&mut s, row, &swatch, &format!("{} {} ({n})", kind_name(*kind), outcome_name(*outcome)));
    }
    s + "</svg>\n"
}

/// Completed ops per second over time, one line per kind (every outcome
/// with an answer: what the clients got through), in buckets of about a
/// hundredth of the run.
pub fn rate(title: &str, ops: &[Op], spans: &[FaultSpan]) -> String {
    let end_s = super::end_s(ops, &[]).max(spans.iter().map(|s| s.to_s).fold(0.0, f64::max));
    let bucket_s = tick_step(end_s, 100.0).max(0.01);
    let buckets = (end_s / bucket_s).ceil().max(1.0) as usize;
    let mut counts: BTreeMap<usize, (Kind, Vec<u32>)> = BTreeMap::new();
    for o in ops {
        let Some(c) = o.complete_ns else { continue };
        let b = ((c as f64 / 1e9 / bucket_s) as usize).min(buckets - 1);
        counts.entry(o.f as usize).or_insert_with(|| (o.f, vec![0; buckets])).1[b] += 1;
    }
    let max = counts.values().flat_map(|(_, v)| v.iter()).copied().max().unwrap_or(0) as f64 / bucket_s;
    let ymax = if max > 0.0 { max * 1.1 } else { 1.0 };
    let x = |t: f64| LEFT + (RIGHT - LEFT) * t / end_s;
    let y = |r: f64| BOTTOM - (BOTTOM - TOP) * r / ymax;
    let subtitle = format!("completed ops per second by kind, in {} s buckets", format_num(bucket_s));
    let mut s = frame(title, &subtitle, end_s, spans);
    let step = tick_step(ymax, 6.0);
    let mut r = 0.0;
    while r <= ymax + 1e-9 {
        let _ = write!(s, "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\">{3}</text>", y(r), LEFT - 5.0, y(r) + 4.0, format_num(r));
        r += step;
    }
    let _ = write!(s, "<text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">ops/s</text>", (TOP + BOTTOM) / 2.0);
    for (row, (kind, v)) in counts.values().enumerate() {
        let mut d = String::new();
        for (b, n) in v.iter().enumerate() {
            let _ = write!(d, "{}{:.1} {:.1}", if b == 0 { "M" } else { "L" }, x((b as f64 + 0.5) * bucket_s), y(f64::from(*n) / bucket_s));
        }
        let c = kind_colour(*kind);
        let _ = write!(s, "<path class=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" d=\"{d}\"/>", kind_name(*kind));
        let (cx, cy) = (RIGHT + 18.0, TOP + 6.0 + 16.0 * row as f64);
        let swatch = format!("<line x1=\"{}\" x2=\"{}\" y1=\"{cy}\" y2=\"{cy}\" stroke=\"{c}\" stroke-width=\"2\"/>", cx - 6.0, cx + 6.0);
        legend_entry(&mut s, row, &swatch, &format!("{} ({})", kind_name(*kind), v.iter().sum::<u32>()));
    }
    s + "</svg>\n"
}
