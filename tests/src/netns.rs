//! Network namespaces for an ensemble: one namespace per member, each with a
//! veth pair into a bridge that lives in a namespace of its own, and one more
//! veth pair from the bridge to the root namespace, where the test's clients
//! run. Addresses are a private /24 chosen per run (`10.231.S.0/24`): the
//! root namespace is `.1`, member `i` (from 0) is `.(11 + i)`. Nothing is
//! routed anywhere else: the members' only route is their /24, and the root
//! namespace gets only the connected route of its veth.
//!
//! Faults are packets dropped by iptables rules in the receiving member's
//! namespace (`filter INPUT -s <sender> -j DROP`), so a link can be cut one
//! way only, and TCP connections across a cut hang (as on a real network)
//! instead of being reset.
//!
//! Names: namespaces `cj<pid>-<k>-<i>` (members, from 1) and
//! `cj<pid>-<k>-br` (the bridge), the root namespace's veth `cj<pid>-<k>`;
//! `<pid>` is the creating process's, `<k>` counts the [`Netns`] it
//! created. [`Netns`]'s `Drop` removes all of it (deleting a namespace
//! deletes its interfaces and rules); [`remove_stale`], which
//! [`Netns::create`] calls first, removes what a process that has died
//! left behind. Nothing else is ever touched.
//!
//! Needs root, iproute2's `ip netns` and iptables ([`available`]).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The prefix of every name this module gives.
pub const PREFIX: &str = "cj";

/// The /16 the per-run /24s are taken from.
const NET16: [u8; 2] = [10, 231];

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Every namespace and root-namespace interface of this process's live
/// networks, for [`remove_live`].
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn live(name: &str, add: bool) {
    let mut l = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if add {
        l.push(name.to_owned());
    } else {
        l.retain(|n| n != name);
    }
}

/// Removes every network this process has made and not yet removed, with
/// whatever runs in it: for a signal handler about to exit, where no
/// destructor will run.
pub fn remove_live() {
    let names = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for name in names.iter().rev() {
        if owner(name).is_some() {
            kill_inside(name);
            let _ = ip(&["netns", "del", name]);
            if std::path::Path::new(&format!("/sys/class/net/{name}")).exists() {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// Runs a command, returning its stdout, or what went wrong.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    run_input(program, args, None)
}

fn run_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
    if let Some(text) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).map_err(|e| format!("{program} stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {}: {}{}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim(), String::from_utf8_lossy(&out.stdout).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Whether namespaces can be used here: root, `ip netns` works, and
/// iptables (with `iptables-restore`) works inside a namespace (tried in a
/// throwaway one). `Err` says what is missing.
pub fn available() -> Result<(), String> {
    if !is_root() {
        return Err("not root".into());
    }
    ip(&["netns", "list"]).map_err(|e| format!("`ip netns` does not work: {e}"))?;
    for tool in ["iptables", "iptables-restore"] {
        run(tool, &["--version"]).map_err(|e| format!("no {tool} ({e}): apt-get install iptables"))?;
    }
    let probe = format!("{PREFIX}{}-{}-probe", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    ip(&["netns", "add", &probe]).map_err(|e| format!("cannot create a namespace: {e}"))?;
    let tried = run("ip", &["netns", "exec", &probe, "iptables", "-S", "INPUT"]);
    let _ = ip(&["netns", "del", &probe]);
    tried.map(|_| ()).map_err(|e| format!("iptables does not work inside a namespace: {e}"))
}

/// The pid in one of our names (`cj<pid>-...`), if it is one of ours.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, tail) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `<k>-<i>`, `<k>-br`, `<k>-probe`, or `<k>` (the root veth).
    let mut parts = tail.split('-');
    let k = parts.next()?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match (parts.next(), parts.next()) {
        (None, _) => {}
        (Some(last), None) if last == "br" || last == "probe" || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) => {}
        _ => return None,
    }
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Our namespaces now (`ip netns list`).
pub fn our_namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| owner(n).is_some())
        .map(str::to_owned)
        .collect()
}

/// Our interfaces in the root namespace now (`ip link`).
pub fn our_links() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .filter(|n| owner(n).is_some())
        .collect()
}

/// Kills (SIGKILL, by pid) what still runs in namespace `ns`: members we
/// started there.
fn kill_inside(ns: &str) {
    for pid in ip(&["netns", "pids", ns]).unwrap_or_default().split_whitespace() {
        if pid.parse::<u32>().is_ok() {
            let _ = Command::new("kill").arg("-KILL").arg(pid).stderr(Stdio::null()).status();
        }
    }
}

/// Removes the namespaces and root-namespace interfaces that a process of
/// ours left behind when it died (killed before its cleanup ran), with any
/// member still running in them. Returns what it removed.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in our_namespaces() {
        if owner(&ns).is_some_and(|pid| !alive(pid)) {
            kill_inside(&ns);
            if ip(&["netns", "del", &ns]).is_ok() {
                removed.push(ns);
            }
        }
    }
    for link in our_links() {
        if owner(&link).is_some_and(|pid| !alive(pid)) && ip(&["link", "del", &link]).is_ok() {
            removed.push(link);
        }
    }
    removed
}

/// The namespaces, bridge and addresses of one ensemble, and the packet
/// drops now in force. Removed when dropped.
pub struct Netns {
    tag: String,
    n: usize,
    subnet: u8,
    /// Directed drops in force: `(from, to)`, packets from member `from` to
    /// member `to` are dropped (by `to`'s INPUT chain).
    drops: Mutex<std::collections::BTreeSet<(usize, usize)>>,
    /// What has been created, to remove.
    created_ns: Vec<String>,
    created_link: Option<String>,
}

impl Netns {
    /// Creates the namespaces of `n` members, their bridge and addresses.
    pub fn create(n: usize) -> Result<Netns, String> {
        assert!((1..=200).contains(&n), "1 to 200 members");
        let stale = remove_stale();
        if !stale.is_empty() {
            eprintln!("netns: removed what a dead run left: {}", stale.join(" "));
        }
        let tag = format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut net = Netns { tag: tag.clone(), n, subnet: 0, drops: Default::default(), created_ns: Vec::new(), created_link: None };
        // The /24 is chosen, and the root namespace's address on it set,
        // under a lock shared by every run on this machine, so that two
        // runs never take the same one.
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open("/run/corral-jepsen-netns.lock").map_err(|e| format!("lock file: {e}"))?;
        lock.lock().map_err(|e| format!("lock: {e}"))?;
        let taken = ip(&["-4", "-o", "addr", "show"])? + &ip(&["-4", "route", "show", "table", "all"])?;
        let start = (std::process::id() as usize).wrapping_mul(7).wrapping_add(NEXT.load(Ordering::Relaxed));
        let free = (0..250).map(|a| ((start + a) % 250 + 1) as u8).find(|s| {
            let net = format!("{}.{}.{s}.", NET16[0], NET16[1]);
            !taken.contains(&net)
        });
        net.subnet = free.ok_or("no free 10.231.x.0/24 for the ensemble")?;
        let br = net.bridge_ns();
        let host_if = tag.clone();
        let cidr = |a: Ipv4Addr| format!("{a}/24");
        // The bridge's namespace, its bridge, and the veth to the root namespace.
        ip(&["netns", "add", &br])?;
        live(&br, true);
        net.created_ns.push(br.clone());
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", "host", "netns", &br])?;
        live(&host_if, true);
        net.created_link = Some(host_if.clone());
        ip(&["-n", &br, "link", "set", "host", "master", "br0", "up"])?;
        ip(&["addr", "add", &cidr(net.host_addr()), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        drop(lock);
        for i in 0..n {
            let ns = net.ns(i);
            ip(&["netns", "add", &ns])?;
            live(&ns, true);
            net.created_ns.push(ns.clone());
            let port = format!("m{}", i + 1);
            ip(&["-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "addr", "add", &cidr(net.addr(i)), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// `cj<pid>-<k>`: the prefix of every name of this network.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Member `i`'s namespace (`i` from 0, named from 1 as in zoo.cfg).
    pub fn ns(&self, i: usize) -> String {
        format!("{}-{}", self.tag, i + 1)
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.tag)
    }

    /// Every namespace and root-namespace interface of this network.
    pub fn names(&self) -> (Vec<String>, Vec<String>) {
        let mut ns: Vec<String> = (0..self.n).map(|i| self.ns(i)).collect();
        ns.push(self.bridge_ns());
        (ns, vec![self.tag.clone()])
    }

    /// The root namespace's address on the bridge (clients come from here).
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(NET16[0], NET16[1], self.subnet, 1)
    }

    /// Member `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(NET16[0], NET16[1], self.subnet, 11 + i as u8)
    }

    /// `10.231.S.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}.{}.{}.0/24", NET16[0], NET16[1], self.subnet)
    }

    /// A command that runs `program` inside member `i`'s namespace: `ip
    /// netns exec` execs it, so the child's pid is the program's.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns").arg("exec").arg(self.ns(i)).arg(program);
        c
    }

    /// Drops exactly the packets from member `from` to member `to` for each
    /// `(from, to)` in `drops` (indexes), and no others: the rules of each
    /// member whose set changes are replaced at once (`iptables-restore`).
    pub fn set_drops(&self, drops: &[(usize, usize)]) -> Result<(), String> {
        let new: std::collections::BTreeSet<(usize, usize)> = drops.iter().copied().filter(|(a, b)| a != b && *a < self.n && *b < self.n).collect();
        let mut cur = self.drops.lock().unwrap();
        for to in 0..self.n {
            let from_new: Vec<usize> = new.iter().filter(|(_, t)| *t == to).map(|(f, _)| *f).collect();
            let from_cur: Vec<usize> = cur.iter().filter(|(_, t)| *t == to).map(|(f, _)| *f).collect();
            if from_new == from_cur {
                continue;
            }
            let mut rules = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
            for f in &from_new {
                rules += &format!("-A INPUT -s {}/32 -j DROP\n", self.addr(*f));
            }
            rules += "COMMIT\n";
            run_input("ip", &["netns", "exec", &self.ns(to), "iptables-restore"], Some(&rules))?;
            cur.retain(|(_, t)| *t != to);
            cur.extend(from_new.iter().map(|f| (*f, to)));
        }
        Ok(())
    }

    /// The drops in force.
    pub fn drops(&self) -> Vec<(usize, usize)> {
        self.drops.lock().unwrap().iter().copied().collect()
    }

    /// Member `i`'s iptables rules as `iptables -S` lists them.
    pub fn rules(&self, i: usize) -> Result<String, String> {
        run("ip", &["netns", "exec", &self.ns(i), "iptables", "-S", "INPUT"])
    }

    /// Removes every drop.
    pub fn heal(&self) -> Result<(), String> {
        self.set_drops(&[])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Members are normally stopped by now (their owners drop first); a
        // member that is not is ours, and would keep its namespace alive.
        for ns in self.created_ns.iter().rev() {
            kill_inside(ns);
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netns: could not remove {ns}: {e}");
            }
            live(ns, false);
        }
        // Gone with its peer in the bridge's namespace; removed here if not.
        if let Some(link) = &self.created_link {
            if std::path::Path::new(&format!("/sys/class/net/{link}")).exists() {
                let _ = ip(&["link", "del", link]);
            }
            live(link, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn only_our_names_are_ours() {
        assert_eq!(owner("cj123-0-1"), Some(123));
        assert_eq!(owner("cj123-4-br"), Some(123));
        assert_eq!(owner("cj123-4"), Some(123));
        assert_eq!(owner("cj123-4-probe"), Some(123));
        for other in ["cj-1-1", "cjx-1", "cj12", "docker0", "cj123-a-1", "cj123-1-1-1", "cj123-1-eth", "xcj123-1"] {
            assert_eq!(owner(other), None, "{other}");
        }
    }
}
