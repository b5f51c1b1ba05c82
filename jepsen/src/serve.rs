//! `corral-jepsen serve`: the store's runs over HTTP on loopback, so a
//! run's timeline and plots can be opened in a browser on another machine
//! through an SSH tunnel. A minimal HTTP/1.1 responder (GET and HEAD, one
//! request a connection): a handful of people reading reports need no
//! more, and no web framework is worth its build time for that.
//!
//! Only files under the store are served: a request path is decoded,
//! refused if any segment is `..` or hidden, and the file it names must
//! still be under the store once symbolic links are resolved.

use crate::report::escape;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once; more are answered 503 (a browser opens a
/// few; anything beyond is not a person reading reports).
const CONNECTIONS_MAX: usize = 32;
/// The longest request head read (the request line and headers).
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request path is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Malformed, or it leaves the store (`..`, an absolute path, a link out).
    Forbidden,
    NotFound,
}

/// Decodes `%XX` escapes; `None` if one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file or directory `url_path` names under `store` (canonical).
pub fn resolve(store: &Path, url_path: &str) -> Result<PathBuf, Refused> {
    let path = url_path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path).ok_or(Refused::Forbidden)?;
    let rel = decoded.strip_prefix('/').ok_or(Refused::Forbidden)?;
    if rel.contains('\0') || rel.contains('\\') {
        return Err(Refused::Forbidden);
    }
    let mut out = store.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(seg) if !seg.to_string_lossy().starts_with('.') => out.push(seg),
            Component::CurDir => {}
            _ => return Err(Refused::Forbidden),
        }
    }
    let real = out.canonicalize().map_err(|_| Refused::NotFound)?;
    if !real.starts_with(store) {
        return Err(Refused::Forbidden);
    }
    Ok(real)
}

/// A run in the store: `<test>/<time>/` holding a `results.json`.
struct Run {
    test: String,
    time: String,
    valid: Option<bool>,
    summary: String,
    files: Vec<String>,
}

fn runs(store: &Path) -> Vec<Run> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        v.sort();
        v
    };
    for test in dirs(store) {
        for run in dirs(&test) {
            let results: Option<serde_json::Value> = std::fs::read_to_string(run.join("results.json")).ok().and_then(|s| serde_json::from_str(&s).ok());
            if results.is_none() && !run.join("history.jsonl").exists() {
                continue;
            }
            let mut files: Vec<String> = std::fs::read_dir(&run).into_iter().flatten().flatten().filter(|e| e.path().is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            // The reports first, in the order one reads them.
            let rank = |f: &str| ["timeline.html", "latency.svg", "rate.svg", "results.json", "history.jsonl"].iter().position(|x| *x == f).unwrap_or(9);
            files.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
            let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let summary = results
                .as_ref()
                .map(|r| format!("{} ops, {} nemesis events; {}", r["ops"]["total"], r["nemesis"].as_array().map_or(0, Vec::len), r["command"].as_str().unwrap_or("")))
                .unwrap_or_else(|| "no results.json (a harness error?)".into());
            out.push(Run { test: name(&test), time: name(&run), valid: results.as_ref().and_then(|r| r["valid"].as_bool()), summary, files });
        }
    }
    // Newest first: the time stamps sort as text.
    out.sort_by(|a, b| b.time.cmp(&a.time).then(a.test.cmp(&b.test)));
    out
}

/// The index page: every run, newest first, with links to its files.
pub fn index(store: &Path) -> String {
    let mut rows = String::new();
    for r in runs(store) {
        let verdict = match r.valid {
            Some(true) => "<td class=\"valid\">valid</td>",
            Some(false) => "<td class=\"invalid\">INVALID</td>",
            None => "<td>?</td>",
        };
        let base = format!("/{}/{}/", url_escape(&r.test), url_escape(&r.time));
        let links: Vec<String> = r.files.iter().map(|f| format!("<a href=\"{base}{}\">{}</a>", url_escape(f), escape(f))).collect();
        rows += &format!("<tr><td>{}</td><td>{}</td>{verdict}<td>{}</td><td class=\"cmd\">{}</td></tr>\n", escape(&r.test), escape(&r.time), links.join(" "), escape(&r.summary));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>corral-jepsen: {store}</title><style>body{{font:13px sans-serif;margin:12px}}td,th{{padding:3px 8px;text-align:left;vertical-align:top}}\
tr:nth-child(even){{background:#f4f4f4}}.valid{{color:#2e7d32}}.invalid{{color:#b71c1c;font-weight:bold}}.cmd{{font:11px monospace;color:#555}}</style></head><body>\n\
<h1>{store}</h1>\n<table><tr><th>test</th><th>time (UTC)</th><th>verdict</th><th>files</th><th>run</th></tr>\n{rows}</table>\n</body></html>\n",
        store = escape(&store.display().to_string())
    )
}

/// A path segment for a link: everything but unreserved characters escaped.
fn url_escape(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// A directory's listing, for a run's directory opened without a file.
fn listing(dir: &Path, url_path: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect();
    names.sort();
    let base = if url_path.ends_with('/') { url_path.to_owned() } else { format!("{url_path}/") };
    let items: String = names.iter().map(|n| format!("<li><a href=\"{}{}\">{}</a></li>", escape(&base), url_escape(n), escape(n))).collect();
    format!("<!doctype html><html><head><meta charset=\"utf-8\"></head><body><p><a href=\"/\">all runs</a></p><ul>{items}</ul></body></html>\n")
}

/// What to answer a request line: status, content type, body.
fn answer(store: &Path, method: &str, target: &str) -> (u16, &'static str, Vec<u8>) {
    let text = |code: u16, msg: &str| (code, "text/plain; charset=utf-8", format!("{msg}\n").into_bytes());
    if method != "GET" && method != "HEAD" {
        return text(405, "only GET and HEAD");
    }
    if target == "/" || target.starts_with("/?") {
        return (200, "text/html; charset=utf-8", index(store).into_bytes());
    }
    match resolve(store, target) {
        Err(Refused::Forbidden) => text(403, "forbidden"),
        Err(Refused::NotFound) => text(404, "not found"),
        Ok(p) if p.is_dir() => (200, "text/html; charset=utf-8", listing(&p, target.split('?').next().unwrap_or("/")).into_bytes()),
        Ok(p) => match std::fs::read(&p) {
            Ok(body) => (200, content_type(&p), body),
            Err(_) => text(404, "not found"),
        },
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    }
}

fn respond(mut s: &TcpStream, code: u16, ctype: &str, body: &[u8], head_only: bool) -> std::io::Result<()> {
    write!(s, "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-cache\r\n\r\n", reason(code), body.len())?;
    if !head_only {
        s.write_all(body)?;
    }
    s.flush()
}

/// Reads one request and answers it.
fn handle(store: &Path, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(REQUEST_HEAD_BYTES_MAX as u64);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Headers are read and ignored, up to the blank line.
    let mut header = String::new();
    loop {
        header.clear();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return respond(&stream, 400, "text/plain", b"bad request\n", false);
    };
    let (code, ctype, body) = answer(store, method, target);
    respond(&stream, code, ctype, &body, method == "HEAD")
}

/// Serves `store` on 127.0.0.1:`port` (0: any free port) until killed;
/// `ready` is told the address once it listens.
pub fn serve(store: &Path, port: u16, ready: impl FnOnce(std::net::SocketAddr)) -> Result<(), String> {
    let store = store.canonicalize().map_err(|e| format!("{}: {e}", store.display()))?;
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("listen on 127.0.0.1:{port}: {e}"))?;
    ready(listener.local_addr().map_err(|e| e.to_string())?);
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if busy.fetch_add(1, Ordering::SeqCst) >= CONNECTIONS_MAX {
            busy.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(&stream, 503, "text/plain", b"busy\n", false);
            continue;
        }
        let (store, busy) = (store.clone(), busy.clone());
        std::thread::spawn(move || {
            let _ = handle(&store, stream);
            busy.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!("corral-serve-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let run = d.join("store").join("register-corral").join("20260101T000000");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("results.json"), r#"{"valid": false, "ops": {"total": 7}, "nemesis": [], "command": "corral-jepsen test <x>"}"#).unwrap();
        std::fs::write(run.join("timeline.html"), "<p>t</p>").unwrap();
        std::fs::write(d.join("secret"), "outside").unwrap();
        d
    }

    #[test]
    fn paths_outside_the_store_are_refused() {
        let d = store();
        let s = d.join("store").canonicalize().unwrap();
        assert_eq!(resolve(&s, "/register-corral/20260101T000000/timeline.html"), Ok(s.join("register-corral/20260101T000000/timeline.html")));
        assert_eq!(resolve(&s, "/register-corral/20260101T000000/timeline.html?x=1"), Ok(s.join("register-corral/20260101T000000/timeline.html")));
        for bad in ["/../secret", "/register-corral/../../secret", "/%2e%2e/secret", "/%2E%2E%2Fsecret", "//etc/passwd", "/..%5csecret", "/a/%00", "/.hidden", "relative", "/%zz"] {
            assert_eq!(resolve(&s, bad), Err(Refused::Forbidden), "{bad}");
        }
        assert_eq!(resolve(&s, "/nothing-here"), Err(Refused::NotFound));
        // A link that leads out of the store is refused too.
        std::os::unix::fs::symlink(d.join("secret"), s.join("link")).unwrap();
        assert_eq!(resolve(&s, "/link"), Err(Refused::Forbidden));
        let (code, _, body) = answer(&s, "GET", "/%2e%2e/secret");
        assert_eq!((code, body), (403, b"forbidden\n".to_vec()));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_index_lists_runs_with_their_verdict_and_files() {
        let d = store();
        let s = d.join("store").canonicalize().unwrap();
        let page = index(&s);
        assert!(page.contains("<td>register-corral</td><td>20260101T000000</td><td class=\"invalid\">INVALID</td>"), "{page}");
        assert!(page.contains("<a href=\"/register-corral/20260101T000000/timeline.html\">timeline.html</a> <a href=\"/register-corral/20260101T000000/results.json\">"), "{page}");
        assert!(page.contains("7 ops, 0 nemesis events; corral-jepsen test &lt;x&gt;"), "{page}");
        let (code, ctype, body) = answer(&s, "GET", "/register-corral/20260101T000000/timeline.html");
        assert_eq!((code, ctype, body), (200, "text/html; charset=utf-8", b"<p>t</p>".to_vec()));
        assert_eq!(answer(&s, "POST", "/").0, 405);
        let _ = std::fs::remove_dir_all(&d);
    }
}
