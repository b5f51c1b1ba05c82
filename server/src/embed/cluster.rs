//! An ensemble of N members in one process: each a full server (its own
//! data directory, client port, processor and store), replicating over real
//! TCP links on loopback, with faults a test can inject through the handle.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use futures_util::future::select_all;

use super::{serving, stop_in_background, ServerBuilder, TempDir, START_TIMEOUT};
use crate::config::{Config, Peer, PeerRole};
use crate::net;

/// How long `start` waits, once a leader is elected, for every member to
/// take sessions: well above the round trip a follower needs to learn the
/// ensemble's first commit, well below a client's patience.
const SERVING_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The settings of an embedded cluster: every member gets the server
/// settings of [`ClusterBuilder::server`] and its own data directory under
/// the cluster's.
pub struct ClusterBuilder {
    members: usize,
    server: ServerBuilder,
    first_client_port: u16,
}

impl ClusterBuilder {
    /// The settings every member shares (tick time, timeouts, read
    /// consistency, data directory: each member uses `m<i>` under it).
    pub fn server(mut self, server: ServerBuilder) -> Self {
        self.server = server;
        self
    }

    /// Member `i` listens for clients on `port + i` (default: free ports).
    pub fn client_ports_from(mut self, port: u16) -> Self {
        self.first_client_port = port;
        self
    }

    /// Starts every member and returns once they have elected a leader.
    pub async fn start(self) -> anyhow::Result<Cluster> {
        anyhow::ensure!((1..=255).contains(&self.members), "a cluster has 1 to 255 members");
        let (base, temp) = self.server.resolve("cluster")?;
        // Every quorum port is bound before any member starts: no port is
        // picked twice, however many clusters start at once.
        let mut listeners = Vec::new();
        for _ in 0..self.members {
            let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
        let peers: Vec<Peer> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                Peer { id: i as u64 + 1, host: "127.0.0.1".into(), peer_port: port, election_port: 0, role: PeerRole::Participant, client_addr: None }
            })
            .collect();
        let mut members = Vec::new();
        let mut starting = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut cfg = base.clone();
            cfg.my_id = i as u64 + 1;
            cfg.peers = peers.clone();
            cfg.data_dir = base.data_dir.join(format!("m{}", i + 1));
            cfg.data_log_dir = cfg.data_dir.clone();
            std::fs::create_dir_all(&cfg.data_dir)?;
            if self.first_client_port != 0 {
                let port = u16::try_from(self.first_client_port as usize + i).map_err(|_| anyhow::anyhow!("client ports beyond 65535"))?;
                cfg.client_addr.set_port(port);
            }
            let listener = tokio::net::TcpListener::from_std(listener)?;
            starting.push(net::Server::start_with(cfg.clone(), Some(listener)));
            members.push(Member { cfg, running: None, cut: Vec::new() });
        }
        // A new ensemble's lowest member stands for election as soon as one
        // other member has told it the term (0), but members still learning
        // the term themselves drop its vote requests, and the election then
        // waits out raft's 1-2 s timeout. Each asks on its first raft tick,
        // one tick after it started: started last, member 1 asks last and
        // finds the others ready to vote.
        let first = starting.remove(0);
        starting.reverse();
        let mut started = futures_util::future::join_all(starting).await;
        started.reverse();
        started.insert(0, first.await);
        let mut cluster = Cluster { members, _temp: temp };
        for (m, s) in cluster.members.iter_mut().zip(started) {
            let s = s?;
            m.cfg.client_addr = s.local_addr;
            m.running = Some(s);
        }
        cluster.wait_for_leader().await?;
        cluster.wait_serving(SERVING_GRACE).await;
        Ok(cluster)
    }
}

struct Member {
    cfg: Config,
    running: Option<net::Server>,
    /// Members (by index) this one cannot reach (see [`Cluster::partition`]).
    cut: Vec<usize>,
}

impl Member {
    fn status(&self) -> Option<net::processor::Status> {
        self.running.as_ref().map(|r| *r.status().borrow())
    }

    fn apply_cut(&self) {
        if let Some(p) = self.running.as_ref().and_then(|r| r.peers()) {
            let ids: Vec<u64> = self.cut.iter().map(|j| *j as u64 + 1).collect();
            p.cut_off(&ids);
        }
    }
}

/// An embedded ensemble. Members are numbered from 0 here (member `i` is
/// `server.<i+1>`). Dropping it stops every member (without waiting);
/// [`Cluster::shutdown`] stops them and waits.
pub struct Cluster {
    members: Vec<Member>,
    _temp: Option<TempDir>,
}

impl Cluster {
    /// A cluster of `members` (3 for a drop-in ZooKeeper ensemble).
    pub fn builder(members: usize) -> ClusterBuilder {
        ClusterBuilder { members, server: ServerBuilder::default(), first_client_port: 0 }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member, comma-separated: a ZooKeeper client's connect string.
    pub fn connect_string(&self) -> String {
        self.members.iter().map(|m| m.cfg.client_addr.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Member `i`'s client address alone.
    pub fn member_connect_string(&self, i: usize) -> String {
        self.members[i].cfg.client_addr.to_string()
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.members[i].cfg.client_addr
    }

    /// Asks member `i` a four-letter word (`srvr`, `mntr`, ...).
    pub async fn four_letter_word(&self, i: usize, word: &str) -> std::io::Result<String> {
        super::four_letter_word(self.addr(i), word).await
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.members[i].cfg.data_dir.clone()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].running.is_some()
    }

    /// The member that leads, as the running members see it: one that
    /// believes it leads, in the highest term any running member knows of.
    pub fn leader(&self) -> Option<usize> {
        let statuses: Vec<_> = self.members.iter().map(Member::status).collect();
        let top = statuses.iter().flatten().map(|s| s.term).max()?;
        statuses.iter().enumerate().find_map(|(i, s)| s.filter(|s| s.term == top && s.leader == i as u64 + 1).map(|_| i))
    }

    /// Waits until a leader is known to a majority of all members (up to 30 s).
    pub async fn wait_for_leader(&self) -> anyhow::Result<usize> {
        let wait = async {
            let mut rxs: Vec<_> = self.members.iter().filter_map(|m| m.running.as_ref().map(|r| r.status())).collect();
            loop {
                if let Some(l) = self.agreed_leader() {
                    return Ok(l);
                }
                if rxs.is_empty() {
                    anyhow::bail!("no member is running");
                }
                let changes = rxs.iter_mut().map(|rx| Box::pin(rx.changed()));
                let (r, i, _) = select_all(changes).await;
                if r.is_err() {
                    rxs.remove(i); // that member stopped
                }
            }
        };
        match tokio::time::timeout(START_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) => anyhow::bail!("no leader within {START_TIMEOUT:?}"),
        }
    }

    /// Waits, at most `grace`, until every running member takes new
    /// sessions (see [`serving`]): a client given any member's address
    /// then connects at its first attempt. A member still behind after
    /// `grace` catches up on its own; the ensemble already serves.
    async fn wait_serving(&self, grace: std::time::Duration) {
        let all = async {
            for m in &self.members {
                if let Some(r) = &m.running {
                    let _ = r.status().wait_for(serving).await;
                }
            }
        };
        let _ = tokio::time::timeout(grace, all).await;
    }

    /// A leader a majority of all members follow, in one term.
    fn agreed_leader(&self) -> Option<usize> {
        let l = self.leader()?;
        let s = self.members[l].status()?;
        let agree = self.members.iter().filter_map(Member::status).filter(|o| o.leader == s.leader && o.term == s.term).count();
        (agree > self.members.len() / 2).then_some(l)
    }

    /// Stops member `i` as kill -9 would (nothing after its last fsync
    /// survives). Its clients' sessions live on in the others.
    pub async fn kill(&mut self, i: usize) {
        if let Some(r) = self.members[i].running.take() {
            r.kill().await;
        }
    }

    /// Stops member `i` gracefully.
    pub async fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        match self.members[i].running.take() {
            Some(r) => r.shutdown().await.map_err(anyhow::Error::msg),
            None => Ok(()),
        }
    }

    /// Starts member `i` again on its data and ports (stopping it first if
    /// it runs); it rejoins as the partition in force allows.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.stop(i).await?;
        let m = &mut self.members[i];
        m.running = Some(net::Server::start(m.cfg.clone()).await?);
        m.apply_cut();
        Ok(())
    }

    /// Cuts the network into `groups` (indexes of members): members reach
    /// only those of their own group; a member in no group is alone.
    /// Replaces any earlier partition. The links stay up and messages are
    /// lost, as a cut cable would do it.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let n = self.members.len();
        for i in 0..n {
            let mine = groups.iter().find(|g| g.contains(&i));
            self.members[i].cut = (0..n).filter(|j| *j != i && !mine.is_some_and(|g| g.contains(j))).collect();
            self.members[i].apply_cut();
        }
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        for m in &mut self.members {
            m.cut.clear();
            m.apply_cut();
        }
    }

    /// Stops every member gracefully and waits.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let stops = self.members.iter_mut().filter_map(|m| m.running.take()).map(|r| r.shutdown());
        let results = futures_util::future::join_all(stops).await;
        results.into_iter().collect::<Result<Vec<()>, String>>().map(drop).map_err(anyhow::Error::msg)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let temp = self._temp.take();
        let running: Vec<_> = self.members.iter_mut().filter_map(|m| m.running.take()).collect();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    futures_util::future::join_all(running.into_iter().map(|r| r.shutdown())).await;
                    drop(temp);
                });
            }
            Err(_) => {
                for r in running {
                    stop_in_background(Some(r), None);
                }
            }
        }
    }
}
