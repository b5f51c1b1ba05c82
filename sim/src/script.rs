//! Golden scenario transcripts, in the style of etcd raft's and raft-rs's
//! datadriven tests: a file of commands, each followed by `----` and the
//! output it must produce, up to a blank line. [`run_script`] executes the
//! commands against a scripted [`World`] (the real replicas, a virtual clock,
//! fixed latencies, no random faults) and returns the file with the output
//! it actually got, so a test compares it with the file and `REWRITE=1`
//! writes it back.
//!
//! Commands (members are numbered from 1, clients are named):
//!
//! ```text
//! start nodes=3 [seed=S] [snap-count=N] [linearizable]
//! run ms=N                         let time pass
//! run-until leader|converged [max-ms=N]
//! run-until leader member=3       until member 3 knows a leader
//! state                            role, term, leader, commit, applied per member
//! tree                             the znodes (once if every member agrees)
//! crash 1 | wipe 1 | restart 1
//! partition 1 | 2 3                cut every link between the groups
//! heal                             restore every link
//! slow 1->3 ms=N                   messages from 1 to 3 take N ms more (0: normal)
//! slow-disk 1 ms=N                 each sync of member 1 takes N ms (default 1)
//! connect client=a member=2        connect, resuming a's session if it has one
//! disconnect client=a              drop the connection (the session lives on)
//! create client=a path=/x [data=D] [ephemeral] [sequential] [nowait]
//! set client=a path=/x data=D [version=V] [nowait]
//! get client=a path=/x [watch] | exists client=a path=/x [watch]
//! delete client=a path=/x | sync client=a | close client=a
//! burst client=a path=/x n=N       N setData one after another
//! replies client=a                 what a received since last shown
//! check                            the end-of-run checks, now
//! ```
//!
//! A request waits (up to 2 s of virtual time) for its reply and prints what
//! the client received meanwhile; `nowait` only sends it. Any violation of
//! the simulator's checks is printed after the command that met it.

use std::collections::BTreeMap;

use corral::core::tree::owner;
use protocol::{CreateRequest, DeleteRequest, ExistsRequest, GetDataRequest, Request, SetDataRequest, SyncRequest};

use crate::world::{SimConfig, World};

/// How long a request or a connect waits for its answer.
const WAIT_MS: i64 = 2_000;

struct Script {
    world: Option<World>,
    clients: BTreeMap<String, usize>,
    /// Session ids by the name they print as: `a#1` is a's first session.
    session_names: BTreeMap<i64, String>,
    violation_shown: bool,
}

/// One command: its name, positional words and `key=value` arguments.
struct Command {
    name: String,
    words: Vec<String>,
    args: BTreeMap<String, String>,
}

impl Command {
    fn parse(line: &str) -> Command {
        let mut parts = line.split_whitespace();
        let name = parts.next().unwrap_or_default().to_string();
        let (mut words, mut args) = (Vec::new(), BTreeMap::new());
        for p in parts {
            match p.split_once('=') {
                Some((k, v)) => {
                    args.insert(k.to_string(), v.to_string());
                }
                None => words.push(p.to_string()),
            }
        }
        Command { name, words, args }
    }

    fn get(&self, key: &str) -> Result<&str, String> {
        self.args.get(key).map(String::as_str).ok_or_else(|| format!("{}: missing {key}=", self.name))
    }

    fn num(&self, key: &str, default: Option<i64>) -> Result<i64, String> {
        match (self.args.get(key), default) {
            (Some(v), _) => v.parse().map_err(|_| format!("{}: {key}={v} is not a number", self.name)),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("{}: missing {key}=", self.name)),
        }
    }

    fn flag(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }
}

/// Runs a transcript and returns it with each command's actual output.
pub fn run_script(text: &str) -> String {
    let mut s = Script { world: None, clients: BTreeMap::new(), session_names: BTreeMap::new(), violation_shown: false };
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // A command, then `----`, then its old output up to a blank line.
        out.push_str(line);
        out.push('\n');
        if lines.peek() == Some(&"----") {
            lines.next();
            while lines.peek().is_some_and(|l| !l.trim().is_empty()) {
                lines.next();
            }
        }
        let result = s.exec(&Command::parse(line)).unwrap_or_else(|e| vec![format!("error: {e}")]);
        out.push_str("----\n");
        let mut shown = if result.is_empty() { vec!["ok".to_string()] } else { result };
        if let (Some(v), false) = (s.world.as_ref().and_then(|w| w.violation()), s.violation_shown) {
            shown.push(format!("VIOLATION: {v}"));
            s.violation_shown = true;
        }
        for l in shown {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

impl Script {
    fn world(&mut self) -> Result<&mut World, String> {
        self.world.as_mut().ok_or_else(|| "no world yet: start first".to_string())
    }

    fn member(&mut self, word: Option<&String>) -> Result<usize, String> {
        let n = self.world()?.nodes();
        match word.and_then(|w| w.parse::<usize>().ok()) {
            Some(m) if (1..=n).contains(&m) => Ok(m - 1),
            _ => Err(format!("expected a member number between 1 and {n}")),
        }
    }

    fn client(&mut self, cmd: &Command) -> Result<usize, String> {
        let name = cmd.get("client")?.to_string();
        if let Some(c) = self.clients.get(&name) {
            return Ok(*c);
        }
        let c = self.world()?.add_client();
        self.clients.insert(name, c);
        Ok(c)
    }

    fn client_name(&self, c: usize) -> String {
        self.clients.iter().find(|(_, i)| **i == c).map_or_else(|| format!("client{c}"), |(n, _)| n.clone())
    }

    fn session_name(&self, id: i64) -> String {
        self.session_names.get(&id).cloned().unwrap_or_else(|| format!("{id:#x}"))
    }

    /// Lines noted by the world since the last command that are worth a
    /// transcript: elections, snapshots, restarts, expiries.
    fn milestones(&mut self) -> Vec<String> {
        let notes = self.world.as_mut().map(|w| std::mem::take(&mut w.script_notes)).unwrap_or_default();
        let notes: Vec<String> = notes.into_iter().map(|(at, n)| format!("{at} ms: {n}")).collect();
        let notable = ["leads", "snapshot", "starts", "expired (zxid"];
        let lines: Vec<String> = notes.into_iter().filter(|n| notable.iter().any(|k| n.contains(k))).collect();
        lines.into_iter().map(|l| self.rename_sessions(&l)).collect()
    }

    fn rename_sessions(&self, line: &str) -> String {
        let mut l = line.to_string();
        for (id, name) in &self.session_names {
            l = l.replace(&format!("{id:#x}"), name);
        }
        l
    }

    /// What each client received since last shown, `a: ...` per line, and
    /// names for sessions first seen.
    fn client_lines(&mut self, only: Option<usize>) -> Vec<String> {
        let Some(w) = self.world.as_mut() else { return Vec::new() };
        let mut taken = Vec::new();
        for (c, lines) in w.inbox.iter_mut() {
            if only.is_none_or(|o| o == *c) {
                taken.push((*c, std::mem::take(lines)));
            }
        }
        let mut out = Vec::new();
        for (c, lines) in taken {
            let name = self.client_name(c);
            let w = self.world.as_ref().expect("checked above");
            let cl = w.client(c);
            if cl.session_id != 0 && !self.session_names.contains_key(&cl.session_id) {
                self.session_names.insert(cl.session_id, format!("{name}#{}", cl.sessions_started));
            }
            for l in lines {
                out.push(format!("{name}: {l}"));
            }
        }
        out
    }

    /// Waits until client `c` has nothing in flight and is not connecting.
    fn wait_for(&mut self, c: usize) -> Result<(), String> {
        let w = self.world()?;
        w.run_until(WAIT_MS, |w| {
            let cl = w.client(c);
            cl.in_flight.iter().all(|f| matches!(f.req, Request::Ping)) && !matches!(cl.state, crate::client::ClientState::Connecting { .. })
        });
        Ok(())
    }

    fn request(&mut self, cmd: &Command, req: Request) -> Result<Vec<String>, String> {
        let c = self.client(cmd)?;
        let Some(xid) = self.world()?.script_send(c, req) else { return Ok(vec![format!("{}: not connected", cmd.get("client")?)]) };
        if cmd.flag("nowait") {
            return Ok(vec![format!("{}: sent xid {xid}", cmd.get("client")?)]);
        }
        self.wait_for(c)?;
        let mut out = self.client_lines(Some(c));
        out.extend(self.milestones());
        Ok(out)
    }

    fn exec(&mut self, cmd: &Command) -> Result<Vec<String>, String> {
        let path = || cmd.get("path").map(str::to_string);
        let open = || vec![protocol::Acl { perms: 31, id: protocol::Id { scheme: "world".into(), id: "anyone".into() } }];
        let data = || cmd.args.get("data").map(|d| d.clone().into_bytes());
        match cmd.name.as_str() {
            "start" => {
                let mut cfg = SimConfig { nodes: cmd.num("nodes", Some(3))? as usize, ..SimConfig::default() };
                cfg.snap_count = cmd.num("snap-count", Some(cfg.snap_count as i64))? as u64;
                cfg.linearizable = Some(cmd.flag("linearizable"));
                self.world = Some(World::scripted(cmd.num("seed", Some(1))? as u64, cfg));
                Ok(self.milestones())
            }
            "run" => {
                let ms = cmd.num("ms", None)?;
                self.world()?.run_for(ms);
                let mut out = self.milestones();
                out.extend(self.client_lines(None));
                Ok(out)
            }
            "run-until" => {
                let max = cmd.num("max-ms", Some(10_000))?;
                let what = cmd.words.first().cloned().unwrap_or_default();
                let took = match what.as_str() {
                    "leader" if cmd.args.contains_key("member") => {
                        let m = self.member(cmd.args.get("member"))?;
                        self.world()?.run_until(max, |w| w.knows_leader(m))
                    }
                    "leader" => self.world()?.run_until(max, |w| w.leader().is_some()),
                    "converged" => self.world()?.run_until(max, |w| w.all_converged()),
                    other => return Err(format!("run-until: unknown condition {other:?} (leader, converged)")),
                };
                let mut out = vec![match took {
                    Some(ms) => format!("{what} after {ms} ms"),
                    None => format!("no {what} within {max} ms"),
                }];
                out.extend(self.milestones());
                out.extend(self.client_lines(None));
                Ok(out)
            }
            "state" => {
                let w = self.world()?;
                let mut out = vec![format!("at {} ms", w.now_ms())];
                out.extend(w.member_lines());
                Ok(out)
            }
            "tree" => Ok(self.tree()),
            "crash" | "wipe" => {
                let m = self.member(cmd.words.first())?;
                let w = self.world()?;
                w.script_crash(m, cmd.name == "wipe");
                let mut out = vec![format!("member {} down at {} ms", m + 1, w.now_ms())];
                out.extend(self.milestones());
                out.extend(self.client_lines(None));
                Ok(out)
            }
            "restart" => {
                let m = self.member(cmd.words.first())?;
                self.world()?.script_restart(m);
                Ok(self.milestones())
            }
            "partition" => {
                let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
                for w in &cmd.words {
                    if w == "|" {
                        groups.push(Vec::new());
                    } else {
                        let m = self.member(Some(w))?;
                        groups.last_mut().expect("one group at least").push(m);
                    }
                }
                self.world()?.partition(&groups);
                let mut out = self.milestones();
                out.extend(self.client_lines(None));
                Ok(out)
            }
            "heal" => {
                self.world()?.heal();
                Ok(Vec::new())
            }
            "slow" => {
                let link = cmd.words.first().cloned().unwrap_or_default();
                let (a, b) = link.split_once("->").ok_or("slow: expected FROM->TO")?;
                let (a, b) = (self.member(Some(&a.to_string()))?, self.member(Some(&b.to_string()))?);
                let ms = cmd.num("ms", None)?;
                self.world()?.set_slow(a, b, ms);
                Ok(Vec::new())
            }
            "slow-disk" => {
                let m = self.member(cmd.words.first())?;
                let ms = cmd.num("ms", None)?;
                self.world()?.set_sync_ms(m, ms);
                Ok(Vec::new())
            }
            "connect" => {
                let c = self.client(cmd)?;
                let m = self.member(cmd.args.get("member"))?;
                self.world()?.script_connect(c, m);
                self.wait_for(c)?;
                let mut out = self.client_lines(Some(c));
                out.extend(self.milestones());
                Ok(out)
            }
            "disconnect" => {
                let c = self.client(cmd)?;
                let w = self.world()?;
                w.script_disconnect(c);
                let at = w.now_ms();
                let mut out = self.client_lines(Some(c));
                out.push(format!("{}: gone at {at} ms (its session lives on)", cmd.get("client")?));
                Ok(out)
            }
            "replies" => {
                let c = self.client(cmd)?;
                Ok(self.client_lines(Some(c)))
            }
            "create" => {
                let flags = i32::from(cmd.flag("ephemeral")) | if cmd.flag("sequential") { 2 } else { 0 };
                self.request(cmd, Request::Create(CreateRequest { path: path()?, data: data(), acl: open(), flags }))
            }
            "set" => {
                let version = cmd.num("version", Some(-1))? as i32;
                self.request(cmd, Request::SetData(SetDataRequest { path: path()?, data: data(), version }))
            }
            "get" => self.request(cmd, Request::GetData(GetDataRequest { path: path()?, watch: cmd.flag("watch") })),
            "exists" => self.request(cmd, Request::Exists(ExistsRequest { path: path()?, watch: cmd.flag("watch") })),
            "delete" => self.request(cmd, Request::Delete(DeleteRequest { path: path()?, version: -1 })),
            "sync" => self.request(cmd, Request::Sync(SyncRequest { path: "/".into() })),
            "close" => self.request(cmd, Request::CloseSession),
            "burst" => {
                let c = self.client(cmd)?;
                let n = cmd.num("n", None)?;
                let mut acked = 0;
                for i in 0..n {
                    let req = Request::SetData(SetDataRequest { path: path()?, data: Some(format!("{i}").into_bytes()), version: -1 });
                    if self.world()?.script_send(c, req).is_none() {
                        break;
                    }
                    self.wait_for(c)?;
                    let lines = self.world()?.inbox.remove(&c).unwrap_or_default();
                    if lines.iter().all(|l| l.contains(": Ok at")) && !lines.is_empty() {
                        acked += 1;
                    } else {
                        self.world()?.inbox.insert(c, lines);
                        break;
                    }
                }
                let zxid = self.world()?.client(c).last_zxid;
                let mut out = vec![format!("{}: {acked} of {n} writes acknowledged, last zxid {zxid:#x}", cmd.get("client")?)];
                out.extend(self.client_lines(Some(c)));
                out.extend(self.milestones());
                Ok(out)
            }
            "check" => {
                let r = self.world()?.script_check();
                Ok(vec![match r {
                    Ok(()) => "checks pass: every acknowledged write is in the log once, every read matched, every member holds the reference state".into(),
                    Err(e) => format!("check failed: {e}"),
                }])
            }
            other => Err(format!("unknown command {other:?}")),
        }
    }

    /// The znodes outside /zookeeper: once if every running member holds
    /// the same, else per member.
    fn tree(&mut self) -> Vec<String> {
        let Some(w) = self.world.as_ref() else { return vec!["error: no world yet".into()] };
        let mut by_member: Vec<(usize, Vec<String>)> = Vec::new();
        for (i, core) in w.cores() {
            let lines: Vec<String> = core
                .tree
                .nodes()
                .filter(|(p, _)| p.as_str() != "/" && !p.starts_with("/zookeeper"))
                .map(|(p, n)| {
                    let data = String::from_utf8_lossy(n.data.as_deref().unwrap_or_default()).into_owned();
                    let eph = if owner::is_session(n.ephemeral_owner) { format!(" ephemeral of {}", self.session_name(n.ephemeral_owner)) } else { String::new() };
                    format!("  {p} {data:?} v{}{eph}", n.version)
                })
                .collect();
            by_member.push((i, lines));
        }
        let mut out = Vec::new();
        if by_member.windows(2).all(|p| p[0].1 == p[1].1) {
            let who: Vec<String> = by_member.iter().map(|(i, _)| (i + 1).to_string()).collect();
            out.push(format!("members {} agree:", who.join(" ")));
            out.extend(by_member.into_iter().next().map(|(_, l)| l).unwrap_or_default());
        } else {
            for (i, lines) in by_member {
                out.push(format!("member {}:", i + 1));
                out.extend(lines);
            }
        }
        if out.len() == 1 {
            out.push("  (no znodes)".into());
        }
        out
    }
}
