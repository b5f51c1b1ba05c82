//! How the members are networked (`--net`): in network namespaces, a
//! bridge between them and packets dropped by iptables
//! (`corral_tests::netns`), or on loopback behind fault-injecting TCP
//! proxies (`corral_tests::LinkProxy`). Namespaces are the default where
//! they work (root, `ip netns`, iptables); proxies are the fallback.

use serde::Serialize;

pub use corral_tests::netns::{available, our_links, our_namespaces, remove_live, remove_stale, Netns};

/// What `--net` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    /// One namespace per member; partitions drop packets, one way if asked.
    Netns,
    /// Loopback, every link through a proxy; partitions close connections.
    Proxy,
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Net, String> {
        match s {
            "netns" => Ok(Net::Netns),
            "proxy" => Ok(Net::Proxy),
            _ => Err(format!("unknown --net {s:?} (netns, proxy)")),
        }
    }
}

impl Net {
    pub fn name(self) -> &'static str {
        match self {
            Net::Netns => "netns",
            Net::Proxy => "proxy",
        }
    }

    /// The network to use: the one asked for (an error if namespaces were
    /// asked for and do not work here), else namespaces where they work,
    /// else proxies, saying why.
    pub fn choose(asked: Option<Net>) -> Result<Net, String> {
        match asked {
            Some(Net::Proxy) => Ok(Net::Proxy),
            Some(Net::Netns) => available().map(|()| Net::Netns).map_err(|e| format!("--net netns: network namespaces do not work here: {e}")),
            None => match available() {
                Ok(()) => Ok(Net::Netns),
                Err(e) => {
                    eprintln!("network namespaces do not work here ({e}): members on loopback behind proxies");
                    Ok(Net::Proxy)
                }
            },
        }
    }
}

/// Runs `f` on a thread of its own inside network namespace `ns` (its
/// sockets are that namespace's), and returns what it returns: for tests
/// that look at the network from a member's side.
pub fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("namespace {ns}: {e}"))?;
    std::thread::spawn(move || {
        // setns moves this thread only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "the thread in the namespace panicked".to_string())?
}
