//! Reports of a run for people: a timeline of every op (`timeline.html`)
//! and latency and throughput plots (`latency.svg`, `rate.svg`), written
//! beside the history. The verdict is `results.json`'s; these are for
//! finding *why*: which ops, when, under which fault.
//!
//! Everything here is a pure function from the ops, the nemesis's events
//! and the verdict to text, except [`write`], which puts the text in a
//! directory. The files need no network: styles, drawings and scripts are
//! inline.

pub mod plot;
pub mod timeline;

use crate::check::history::{Kind, Op, Outcome, FINAL_PROCESS};
use crate::check::Checked;
use crate::cluster::Event;
use std::collections::BTreeSet;
use std::path::Path;

/// A fault in force, from the nemesis event that began it to the one that
/// ended it.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpan {
    pub from_s: f64,
    pub to_s: f64,
    pub what: String,
}

/// Whether a nemesis event begins a fault or ends one (`None`: neither).
/// The words are `cluster::run_nemesis`'s.
fn begins(what: &str) -> Option<bool> {
    const BEGIN: [&str; 6] = ["kill", "pause", "partition", "wipe", "skew", "power"];
    const END: [&str; 3] = ["restart", "resume", "heal"];
    let first = what.split_whitespace().next().unwrap_or("");
    if BEGIN.contains(&first) {
        Some(true)
    } else if END.contains(&first) {
        Some(false)
    } else {
        None
    }
}

/// Pairs the nemesis's events into the spans its faults were in force: each
/// end closes the oldest fault still open (the nemesis holds one at a time,
/// so that is the one it undid); a fault never undone lasts until `end_s`.
pub fn fault_spans(events: &[Event], end_s: f64) -> Vec<FaultSpan> {
    let mut open: std::collections::VecDeque<&Event> = Default::default();
    let mut spans = Vec::new();
    for e in events {
        match begins(&e.what) {
            Some(true) => open.push_back(e),
            Some(false) => {
                if let Some(b) = open.pop_front() {
                    spans.push(FaultSpan { from_s: b.at_s, to_s: e.at_s.max(b.at_s), what: b.what.clone() });
                }
            }
            None => {}
        }
    }
    spans.extend(open.into_iter().map(|b| FaultSpan { from_s: b.at_s, to_s: end_s.max(b.at_s), what: b.what.clone() }));
    spans
}

/// The ops a verdict's first violation implicates, and what it says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Highlight {
    /// Op indexes (`Op::index`).
    pub ops: BTreeSet<usize>,
    /// The checker's explanation, empty for a valid history.
    pub why: String,
}

/// The ops to highlight for `checked`'s first violation, by what each
/// checker reports: the register's op no linearization places; the
/// counter's first read out of bounds; the first duplicate id or the pair
/// out of order; the first two overlapping (else misordered) holds; the
/// watch's, session's and queue's ops of their first violation; and for
/// lost or unexpected elements, their adds (puts, takes) and the final read.
pub fn implicated(checked: &Checked, ops: &[Op]) -> Highlight {
    let why = checked.explain().unwrap_or_default();
    if checked.valid() {
        return Highlight::default();
    }
    let mut out = BTreeSet::new();
    let with_value = |kind: Kind, v: i64| ops.iter().filter(move |o| o.f == kind && o.value == Some(v)).map(|o| o.index);
    let final_read = || ops.iter().filter(|o| o.f == Kind::Read && o.values.is_some()).max_by_key(|o| (o.process == FINAL_PROCESS, o.index)).map(|o| o.index);
    match checked {
        Checked::Register(r) => {
            out.extend(r.violation.iter().map(|v| v.op.index));
            out.extend(r.read_violation.iter().flat_map(|v| v.ops().map(|o| o.index)));
        }
        Checked::Counter(r) => out.extend(r.violations.first().map(|v| v.op.index)),
        Checked::UniqueIds(r) => match (r.duplicates.first(), &r.first_non_monotonic) {
            (Some(d), _) => out.extend(d.ops.iter().map(|o| o.index)),
            (None, Some(pair)) => out.extend([pair.0.index, pair.1.index]),
            (None, None) => {}
        },
        Checked::Lock(r) => {
            if let Some(pair) = r.first_overlap.as_ref().or(r.first_out_of_order.as_ref()) {
                for h in [&pair.0, &pair.1] {
                    out.insert(h.acquire.index);
                    out.extend(h.release.as_ref().map(|o| o.index));
                }
            }
        }
        Checked::Watch(r) => out.extend(r.violations.first().into_iter().flat_map(|v| v.ops.iter().map(|o| o.index))),
        Checked::Session(r) => {
            if let Some(v) = &r.first_violation {
                out.extend(v.iter().map(|o| o.index));
            } else if let Some(n) = r.leaked.first().or(r.unexpected.first()) {
                out.extend(with_value(Kind::Create, *n));
                out.extend(final_read());
            }
        }
        Checked::Queue(r) => {
            if let Some(v) = &r.first_unexplained {
                out.extend(v.iter().map(|o| o.index));
            } else if let Some(n) = r.lost.first() {
                out.extend(with_value(Kind::Put, *n));
            } else if let Some(n) = r.unexpected.first() {
                out.extend(with_value(Kind::Take, *n));
            }
        }
        Checked::TotalQueue(r) => {
            let q = &r.queue;
            if let Some(v) = &q.first_unexplained {
                out.extend(v.iter().map(|o| o.index));
            } else if let Some(n) = q.lost.first() {
                out.extend(with_value(Kind::Put, *n));
            } else if let Some(n) = q.unexpected.first() {
                out.extend(with_value(Kind::Take, *n));
            } else {
                // The totals: the drain's stats read.
                out.extend(final_read());
            }
        }
        Checked::Set(r) => {
            if let Some(n) = r.lost.first().or(r.unexpected.first()).or(r.failed_present.first()) {
                out.extend(with_value(Kind::Add, *n));
            }
            out.extend(final_read());
        }
    }
    Highlight { ops: out, why }
}

/// `s` for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The colour of an outcome, the same in every report.
pub fn outcome_colour(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "#5cb85c",
        Outcome::Fail => "#e06666",
        Outcome::Info => "#e6b422",
    }
}

/// When the history ends, in seconds: its last invocation or completion,
/// or the last nemesis event.
pub fn end_s(ops: &[Op], events: &[Event]) -> f64 {
    let ops_end = ops.iter().map(|o| o.complete_ns.unwrap_or(o.invoke_ns).max(o.invoke_ns)).max().unwrap_or(0) as f64 / 1e9;
    events.iter().map(|e| e.at_s).fold(ops_end, f64::max).max(0.001)
}

/// A tick step (seconds) giving about `n` ticks over `span` seconds.
pub fn tick_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-3);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

/// Writes `timeline.html`, `latency.svg` and `rate.svg` into `dir`.
pub fn write(dir: &Path, title: &str, ops: &[Op], events: &[Event], checked: &Checked) -> Result<(), String> {
    let end = end_s(ops, events);
    let spans = fault_spans(events, end);
    let highlight = implicated(checked, ops);
    let files = [
        ("timeline.html", timeline::html(title, ops, &spans, &highlight)),
        ("latency.svg", plot::latency(title, ops, &spans)),
        ("rate.svg", plot::rate(title, ops, &spans)),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).map_err(|e| format!("write {}: {e}", dir.join(name).display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
