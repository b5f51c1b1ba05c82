//! `timeline.html`: one lane per process, each op a bar from its invocation
//! to its completion coloured by outcome, the nemesis's faults shaded
//! behind, the first violation's ops outlined, the details of an op under
//! the pointer.
//!
//! Drawn to stay usable on 100k-op histories: the bars are one SVG path per
//! outcome (not an element per op), in a coordinate system of milliseconds
//! by lanes, so zooming is only a wider drawing and the browser redraws
//! nothing but the paths. What the pointer is over is found by the script
//! from a compact table of the ops, by lane and time, with a binary search.

use super::{escape, outcome_colour, tick_step, FaultSpan, Highlight};
use crate::check::history::{Op, Outcome, FINAL_PROCESS, SETUP_PROCESS};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A bar's height and top within its lane (lane units), so lanes stay apart.
const BAR: (f64, f64) = (0.7, 0.15);
/// An indeterminate op's bar runs to the end (it may take effect any time
/// after its invocation) and is drawn thinner, so the lane's later ops of
/// other processes stay readable.
const OPEN_BAR: (f64, f64) = (0.3, 0.35);

fn lane_name(process: u64) -> String {
    match process {
        SETUP_PROCESS => "setup".into(),
        FINAL_PROCESS => "final".into(),
        p => format!("p{p}"),
    }
}

/// A number of milliseconds for a path, short: 1 decimal, no trailing `.0`.
fn ms(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// JSON for inside a `<script>`: no `<` can end it early.
fn script_json(v: &serde_json::Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

/// The page for `ops` (any order), titled `title`.
pub fn html(title: &str, ops: &[Op], spans: &[FaultSpan], highlight: &Highlight) -> String {
    let end_ms = 1000.0 * super::end_s(ops, &[]).max(spans.iter().map(|s| s.to_s).fold(0.0, f64::max));
    let mut by_process: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for o in ops {
        by_process.entry(o.process).or_default().push(o);
    }
    let lanes = by_process.len().max(1);
    // Lanes shrink on histories with many processes (each indeterminate op
    // starts a new one) so the whole run stays on a screen or two.
    let lane_px = if lanes <= 60 { 14 } else { (840 / lanes).max(3) };
    let height_px = lanes * lane_px;

    let mut paths: BTreeMap<(u8, bool), (Outcome, String)> = BTreeMap::new();
    let mut violation = String::new();
    let mut marks = String::new();
    let mut table = Vec::with_capacity(ops.len());
    let mut labels = String::new();
    for (lane, (process, lane_ops)) in by_process.iter_mut().enumerate() {
        lane_ops.sort_by_key(|o| (o.invoke_ns, o.index));
        let member = lane_ops.iter().find_map(|o| o.member).map(|m| format!(" m{m}")).unwrap_or_default();
        let _ = write!(labels, "<div style=\"height:{lane_px}px\">{}{member}</div>", escape(&lane_name(*process)));
        for o in lane_ops.iter() {
            let x0 = o.invoke_ns as f64 / 1e6;
            let (x1, open) = match o.complete_ns {
                Some(c) => ((c as f64 / 1e6).max(x0), false),
                None => (end_ms, true),
            };
            let (h, top) = if open { OPEN_BAR } else { BAR };
            let rect = format!("M{} {}h{}v{h}h-{}z", ms(x0), lane as f64 + top, ms(x1 - x0), ms(x1 - x0));
            if highlight.ops.contains(&o.index) {
                violation += &rect;
                let _ = write!(marks, "M{} 0V{lanes}", ms(x0));
            } else {
                paths.entry((o.outcome as u8, open)).or_insert((o.outcome, String::new())).1.push_str(&rect);
            }
            table.push(serde_json::json!([lane, (x0 * 10.0).round() / 10.0, if open { -1.0 } else { (x1 * 10.0).round() / 10.0 }, o.describe()]));
        }
    }

    let step = tick_step(end_ms / 1000.0, 12.0);
    let mut grid = String::new();
    let mut ticks = String::new();
    let mut t = 0.0;
    while t <= end_ms / 1000.0 + 1e-9 {
        let _ = write!(grid, "M{} 0V{lanes}", ms(t * 1000.0));
        let _ = write!(ticks, "<span class=\"tick\" style=\"left:{:.4}%\">{}s</span>", 100.0 * t * 1000.0 / end_ms, trim_s(t));
        t += step;
    }

    let mut svg = String::new();
    let _ = write!(svg, "<svg id=\"tl\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {lanes}\" preserveAspectRatio=\"none\" width=\"100%\" height=\"{height_px}\"><style>{SVG_STYLE}</style>", ms(end_ms));
    for lane in (1..lanes).step_by(2) {
        let _ = write!(svg, "<rect class=\"stripe\" x=\"0\" y=\"{lane}\" width=\"{}\" height=\"1\"/>", ms(end_ms));
    }
    for s in spans {
        let _ = write!(
            svg,
            "<rect class=\"fault\" x=\"{}\" y=\"0\" width=\"{}\" height=\"{lanes}\"><title>{}</title></rect>",
            ms(s.from_s * 1000.0),
            ms(((s.to_s - s.from_s) * 1000.0).max(0.0)),
            escape(&s.what)
        );
    }
    let _ = write!(svg, "<path class=\"grid\" d=\"{grid}\"/>");
    for ((_, open), (outcome, d)) in &paths {
        let class = format!("{}{}", outcome_name(*outcome), if *open { " open" } else { "" });
        let _ = write!(svg, "<path class=\"{class}\" fill=\"{}\" d=\"{d}\"/>", outcome_colour(*outcome));
    }
    if !violation.is_empty() {
        let _ = write!(svg, "<path class=\"violation-mark\" d=\"{marks}\"/><path class=\"violation\" d=\"{violation}\"/>");
    }
    svg += "</svg>";

    let mut faults = String::new();
    for s in spans {
        let _ = write!(faults, "<span class=\"flabel\" style=\"left:{:.4}%\" title=\"{}\">{}</span>", 100.0 * s.from_s * 1000.0 / end_ms, escape(&s.what), escape(&s.what));
    }
    let counts = [Outcome::Ok, Outcome::Fail, Outcome::Info].map(|k| ops.iter().filter(|o| o.outcome == k).count());
    let verdict = if highlight.why.is_empty() {
        "<p class=\"verdict valid\">VALID</p>".to_string()
    } else {
        format!(
            "<p class=\"verdict invalid\">INVALID: first violation outlined in black (ops {}) <button id=\"toviol\">show it</button></p><pre class=\"why\">{}</pre>",
            highlight.ops.iter().map(|i| format!("#{i}")).collect::<Vec<_>>().join(", "),
            escape(&highlight.why)
        )
    };
    let viol_range = highlight_range(ops, highlight, end_ms);
    let data = serde_json::json!({ "end": (end_ms * 10.0).round() / 10.0, "lanePx": lane_px, "ops": table, "viol": viol_range });

    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title_e}</title><style>{STYLE}</style></head><body>\n\
<h1>{title_e}</h1>\n{verdict}\n\
<p class=\"legend\">{total} ops in {lanes} processes over {secs:.1} s: \
<span class=\"key\" style=\"background:{ok_c}\"></span>ok {ok} \
<span class=\"key\" style=\"background:{fail_c}\"></span>fail {fail} \
<span class=\"key\" style=\"background:{info_c}\"></span>info {info} (thin to the end: never answered) \
<span class=\"key fault\"></span>fault in force ({nspans}) \
<button id=\"zin\">zoom in</button><button id=\"zout\">zoom out</button><button id=\"fit\">fit</button></p>\n\
<div class=\"wrap\"><div class=\"labels\"><div class=\"axis\"></div>{labels}</div>\
<div class=\"scroll\" id=\"scroll\"><div class=\"inner\" id=\"inner\"><div class=\"axis\">{ticks}{faults}</div>{svg}</div></div></div>\n\
<div id=\"tip\"></div>\n<script>const DATA={data};\n{SCRIPT}</script>\n</body></html>\n",
        title_e = escape(title),
        total = ops.len(),
        secs = end_ms / 1000.0,
        ok_c = outcome_colour(Outcome::Ok),
        fail_c = outcome_colour(Outcome::Fail),
        info_c = outcome_colour(Outcome::Info),
        ok = counts[0],
        fail = counts[1],
        info = counts[2],
        nspans = spans.len(),
        data = script_json(&data),
    )
}

/// The time range (ms) the highlighted ops cover, for "show it".
fn highlight_range(ops: &[Op], highlight: &Highlight, end_ms: f64) -> serde_json::Value {
    let hl: Vec<&Op> = ops.iter().filter(|o| highlight.ops.contains(&o.index)).collect();
    if hl.is_empty() {
        return serde_json::Value::Null;
    }
    let from = hl.iter().map(|o| o.invoke_ns).min().unwrap_or(0) as f64 / 1e6;
    let to = hl.iter().map(|o| o.complete_ns.map(|c| c as f64 / 1e6).unwrap_or(end_ms)).fold(from, f64::max);
    serde_json::json!([from, to])
}

fn trim_s(t: f64) -> String {
    let s = format!("{t:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Info => "info",
    }
}

const STYLE: &str = "body{font:13px sans-serif;margin:12px;color:#222}h1{font-size:16px;margin:0 0 6px}\
.verdict{font-weight:bold}.valid{color:#2e7d32}.invalid{color:#b71c1c}\
.why{background:#f6f0f8;border-left:4px solid #6a1b9a;padding:6px;max-height:16em;overflow:auto;font-size:12px}\
.key{display:inline-block;width:12px;height:10px;margin:0 3px 0 10px;vertical-align:middle}.key.fault{background:rgba(220,0,0,.15)}\
button{margin-left:6px}.wrap{display:flex;border:1px solid #ccc}\
.labels{flex:none;width:80px;font-size:10px;overflow:hidden;border-right:1px solid #ccc}\
.labels div{line-height:1;white-space:nowrap;overflow:hidden;padding-left:3px;box-sizing:border-box;display:flex;align-items:center}\
.scroll{flex:auto;overflow-x:auto;overflow-y:hidden}.inner{width:100%;position:relative}\
.axis{height:30px;position:relative;font-size:10px;border-bottom:1px solid #ccc}\
.tick{position:absolute;top:2px;transform:translateX(-50%);white-space:nowrap}\
.flabel{position:absolute;top:15px;white-space:nowrap;color:#b71c1c;font-size:9px;max-width:160px;overflow:hidden}\
svg{display:block}#tip{position:fixed;display:none;background:#fffde7;border:1px solid #999;padding:4px 6px;font:12px monospace;pointer-events:none;max-width:60em;white-space:pre-wrap}";

/// The drawing's own style, inside it, so the SVG alone (cut out of the
/// page, rasterised for a document) looks the same.
const SVG_STYLE: &str = ".stripe{fill:#f4f4f4}.fault{fill:rgba(220,0,0,.13)}\
.grid{stroke:#ddd;stroke-width:1;vector-effect:non-scaling-stroke;fill:none}\
.open{opacity:.6}.violation{fill:#8e24aa;stroke:#000;stroke-width:2;vector-effect:non-scaling-stroke}\
.violation-mark{stroke:#8e24aa;stroke-width:1;stroke-dasharray:4 3;vector-effect:non-scaling-stroke;fill:none}";

/// Zoom (a wider drawing, scrolled), and the op under the pointer: the
/// lane from the height, the time from the width, then a binary search of
/// the lane's ops by invocation.
const SCRIPT: &str = r#"(function(){
const end=DATA.end, lanePx=DATA.lanePx, lanes=[];
for (const o of DATA.ops) { (lanes[o[0]] = lanes[o[0]] || []).push(o); }
const scroll=document.getElementById('scroll'), inner=document.getElementById('inner'), svg=document.getElementById('tl'), tip=document.getElementById('tip');
let zoom=1;
function setZoom(z, centreMs){
  z=Math.max(1, Math.min(z, 20000));
  const c = centreMs!==undefined ? centreMs : (scroll.scrollLeft+scroll.clientWidth/2)/inner.clientWidth*end;
  zoom=z; inner.style.width=(100*z)+'%';
  scroll.scrollLeft = c/end*inner.clientWidth - scroll.clientWidth/2;
}
document.getElementById('zin').onclick=()=>setZoom(zoom*2);
document.getElementById('zout').onclick=()=>setZoom(zoom/2);
document.getElementById('fit').onclick=()=>setZoom(1);
const tv=document.getElementById('toviol');
if (tv && DATA.viol) tv.onclick=()=>{ const w=Math.max(DATA.viol[1]-DATA.viol[0], 1); setZoom(end/(w*3), (DATA.viol[0]+DATA.viol[1])/2); };
scroll.addEventListener('wheel', e=>{ if(!e.ctrlKey) return; e.preventDefault(); const r=svg.getBoundingClientRect(); setZoom(e.deltaY<0?zoom*1.25:zoom/1.25, (e.clientX-r.left)/r.width*end); }, {passive:false});
function fmt(x){ return (x/1000).toFixed(3)+'s'; }
svg.addEventListener('mousemove', e=>{
  const r=svg.getBoundingClientRect(), t=(e.clientX-r.left)/r.width*end, lane=Math.floor((e.clientY-r.top)/lanePx);
  const ops=lanes[lane]||[], slack=4/r.width*end;
  let lo=0, hi=ops.length-1, at=-1;
  while(lo<=hi){ const m=(lo+hi)>>1; if(ops[m][1]<=t+slack){at=m;lo=m+1;}else hi=m-1; }
  let found=null;
  for (let i=at; i>=0 && i>=at-50; i--) { const o=ops[i], c=o[2]<0?end:o[2]; if (o[1]<=t+slack && c>=t-slack) { found=o; break; } }
  if (!found) { tip.style.display='none'; return; }
  tip.textContent=found[3]+'\nlatency '+(found[2]<0?'none (never answered)':(found[2]-found[1]).toFixed(1)+' ms');
  tip.style.display='block'; tip.style.left=Math.min(e.clientX+12, innerWidth-420)+'px'; tip.style.top=(e.clientY+14)+'px';
});
svg.addEventListener('mouseleave', ()=>{ tip.style.display='none'; });
})();"#;
