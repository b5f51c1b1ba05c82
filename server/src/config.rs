//! `zoo.cfg` (+ `myid`) → typed configuration.
//!
//! Keys are ZooKeeper's own; fields carry their unit. Unknown keys are
//! warned about and ignored, as an operator moving from ZooKeeper will have
//! keys Corral does not need; a bad value is an error naming file, line and key.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::net::tls::{ClientAuth, StoreFile, StoreKind, TlsConfig};

/// The four-letter words Corral knows.
pub const FOUR_LETTER_WORDS: &[&str] =
    &["ruok", "srvr", "stat", "mntr", "conf", "cons", "envi", "wchs", "wchc", "wchp", "dump", "isro", "crst", "srst"];

/// A configuration error, pointing at its source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}: {key}: {message}")]
    BadValue { file: PathBuf, line: usize, key: String, message: String },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error("{file}: cannot read: {source}")]
    Io { file: PathBuf, source: std::io::Error },
}

/// One `server.N=host:quorumPort:electionPort[:participant|:observer][;[clientAddress:]clientPort]`
/// line, as ZooKeeper's `QuorumPeer.QuorumServer` parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `N`: 1..=255 (ZooKeeper keeps it in the top byte of session ids; 0 is raft's "none").
    pub id: u64,
    /// A host name or an IP address (an IPv6 literal without its brackets).
    pub host: String,
    /// The quorum port (ZooKeeper's `quorumPort`): Corral's peer transport
    /// listens and dials here, for replication and elections alike.
    pub peer_port: u16,
    /// ZooKeeper's leader-election port: parsed and checked as ZooKeeper
    /// does (it must differ from the quorum port), otherwise unused.
    pub election_port: u16,
    pub role: PeerRole,
    /// The client address after `;` (ZooKeeper 3.5+ form); `0.0.0.0` when
    /// only a port is given. This member's own one is where it listens when
    /// zoo.cfg has no `clientPort` (see [`Config::load`]).
    pub client_addr: Option<SocketAddr>,
}

/// A member's role in the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerRole {
    #[default]
    Participant,
    /// A non-voting member: parsed, but refused for now.
    Observer,
}

impl Peer {
    /// `host:quorumPort`, with an IPv6 literal in brackets: what to resolve and dial.
    pub fn quorum_host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.peer_port)
        } else {
            format!("{}:{}", self.host, self.peer_port)
        }
    }
}

/// Default of `maxOutputQueueBytes`: several replies of the largest size
/// (`jute.maxbuffer`, 1 MiB) behind one another.
pub const MAX_OUTPUT_QUEUE_BYTES_DEFAULT: usize = 8 << 20;

/// Server ids Corral accepts: raft reserves 0, session ids carry the id in one byte.
const SERVER_ID_MAX: u64 = 255;

/// Parses the value of a `server.N` line; the message names what is wrong.
fn parse_server(id: u64, value: &str) -> Result<Peer, String> {
    let format = "expected host:quorumPort:electionPort[:participant|:observer][;[clientAddress:]clientPort]";
    let server_client = split_java(value, ';');
    if server_client.is_empty() || server_client.len() > 2 {
        return Err(format!("{format}, found {value:?}"));
    }
    if server_client[0].contains('|') {
        return Err("multiple addresses per server are not supported".into());
    }
    let parts = split_with_leading_hostname(server_client[0])?;
    if !(3..=4).contains(&parts.len()) || parts[0].is_empty() {
        return Err(format!("{format}, found {value:?}"));
    }
    let port = |s: &str| match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("bad port {s:?} in {value:?}")),
    };
    let (peer_port, election_port) = (port(parts[1])?, port(parts[2])?);
    if peer_port == election_port {
        return Err(format!("the quorum and election ports must be different, found {value:?}"));
    }
    let role = match parts.get(3).map(|r| r.trim().to_ascii_lowercase()) {
        None => PeerRole::Participant,
        Some(r) if r == "participant" => PeerRole::Participant,
        Some(r) if r == "observer" => PeerRole::Observer,
        Some(r) => return Err(format!("unknown role {r:?}: expected participant or observer")),
    };
    let client_addr = match server_client.get(1) {
        None => None,
        Some(c) => {
            let cp = split_with_leading_hostname(c)?;
            if cp.is_empty() || cp.len() > 2 {
                return Err(format!("the client address should be a port or address:port, found {c:?}"));
            }
            let ip: IpAddr = match cp.len() {
                2 => cp[0].parse().map_err(|_| format!("the client address must be an IP address, found {:?}", cp[0]))?,
                _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            };
            let port = cp[cp.len() - 1].parse::<u16>().map_err(|_| format!("bad client port {:?}", cp[cp.len() - 1]))?;
            Some(SocketAddr::new(ip, port))
        }
    };
    Ok(Peer { id, host: parts[0].to_owned(), peer_port, election_port, role, client_addr })
}

/// Java's `String.split` on one character: trailing empty strings are dropped.
fn split_java(s: &str, sep: char) -> Vec<&str> {
    let mut v: Vec<&str> = s.split(sep).collect();
    while v.last() == Some(&"") {
        v.pop();
    }
    v
}

/// ZooKeeper's `ConfigUtils.splitWithLeadingHostname`: `[v6]:a:b` keeps the
/// bracketed address whole (without brackets); anything else splits on `:`.
fn split_with_leading_hostname(s: &str) -> Result<Vec<&str>, String> {
    let Some(rest) = s.strip_prefix('[') else { return Ok(split_java(s, ':')) };
    let Some(i) = rest.find("]:") else { return Err(format!("{s:?} starts with '[' but has no matching ']:'")) };
    let mut v = vec![&rest[..i]];
    v.extend(split_java(&rest[i + 2..], ':'));
    Ok(v)
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from, for messages (`<embedded default>` if none).
    pub source: PathBuf,
    pub tick_ms: u32,
    pub data_dir: PathBuf,
    /// `dataLogDir`: where the txn log lives; defaults to `data_dir`.
    pub data_log_dir: PathBuf,
    pub client_addr: SocketAddr,
    /// Whether zoo.cfg set `clientPort` (else this member's `server.N`
    /// line may give the client address, as in ZooKeeper 3.5+).
    pub client_port_set: bool,
    /// Per-IP connection limit; 0 means unlimited (`maxClientCnxns`).
    pub max_client_cnxns: u32,
    /// Connection limit over all addresses; 0 means unlimited (`maxCnxns`,
    /// ZooKeeper 3.6's key and default).
    pub max_cnxns: u32,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Enabled four-letter words (`4lw.commands.whitelist`).
    pub four_letter_words: Vec<String>,
    pub extended_types: bool,
    /// `jute.maxbuffer`: the largest frame accepted.
    pub max_frame_bytes: usize,
    /// `maxWatchesPerSession` (Corral's own key): watches one session may
    /// hold on this member; 0 means unlimited.
    pub max_watches_per_session: usize,
    /// `maxSetWatchesPaths` (Corral's own key): paths in one SetWatches or
    /// SetWatches2 request; 0 means unlimited.
    pub max_set_watches_paths: usize,
    /// `maxOutputQueueBytes` (Corral's own key): bytes of replies and events
    /// queued for one connection that its client has not taken yet; 0 means
    /// unlimited.
    pub max_output_queue_bytes: usize,
    pub super_digest: Option<String>,
    /// How often empty containers and expired TTL nodes are looked for
    /// (`znode.container.checkIntervalMs`, ZooKeeper's default 60 s).
    pub container_check_interval_ms: u64,
    /// Txns between snapshots (`snapCount`, ZooKeeper's default 100000).
    pub snap_count: u64,
    /// `preAllocSize` (KB in zoo.cfg, as ZooKeeper): log segments are
    /// zero-filled to this many bytes ahead of use, so that an fsync only
    /// flushes data (0: segments grow as written).
    pub prealloc_bytes: u64,
    /// `java.security.auth.login.config` (a JVM system property for
    /// ZooKeeper, a zoo.cfg key for Corral): the JAAS file whose `Server`
    /// section lists the SASL DIGEST-MD5 users; SASL is off without it.
    pub jaas_config: Option<PathBuf>,
    /// `superUser` (ZooKeeper's `zookeeper.superUser`): the SASL user that is super.
    pub sasl_super_user: Option<String>,
    /// `X509AuthenticationProvider.superUser`: the certificate DN that is super.
    pub x509_super_user: Option<String>,
    /// `secureClientPort` (+ `secureClientPortAddress`): the TLS listener.
    pub secure_client_addr: Option<SocketAddr>,
    /// The `ssl.*` settings, present exactly when `secure_client_addr` is.
    pub tls: Option<TlsConfig>,
    pub peers: Vec<Peer>,
    /// From `dataDir/myid`, 0 when absent (standalone).
    pub my_id: u64,
    /// `readConsistency=linearizable` (Corral's own key; default
    /// `sequential`, ZooKeeper's model): every data read is confirmed
    /// through the leader and a quorum first.
    pub linearizable_reads: bool,
    /// Test-only faults, from the command line's `--unsafe-test-bug` only
    /// (never from zoo.cfg): see [`crate::testbug`].
    pub unsafe_test_bugs: Vec<crate::testbug::TestBug>,
}

impl Config {
    /// The embedded default: standalone on 127.0.0.1:2181, data in
    /// `./corral-data`, every four-letter word enabled.
    pub fn embedded_default() -> Config {
        let data_dir = PathBuf::from("corral-data");
        Config {
            source: PathBuf::from("<embedded default>"),
            tick_ms: 2000,
            data_log_dir: data_dir.clone(),
            data_dir,
            client_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2181),
            client_port_set: false,
            max_client_cnxns: 60,
            max_cnxns: 0,
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            four_letter_words: FOUR_LETTER_WORDS.iter().map(|s| s.to_string()).collect(),
            extended_types: true,
            max_frame_bytes: protocol::DEFAULT_MAX_FRAME_BYTES,
            max_watches_per_session: crate::core::MAX_WATCHES_PER_SESSION_DEFAULT,
            max_set_watches_paths: crate::core::MAX_SET_WATCHES_PATHS_DEFAULT,
            max_output_queue_bytes: MAX_OUTPUT_QUEUE_BYTES_DEFAULT,
            super_digest: None,
            container_check_interval_ms: 60_000,
            snap_count: 100_000,
            prealloc_bytes: 64 << 20,
            secure_client_addr: None,
            tls: None,
            x509_super_user: None,
            jaas_config: None,
            sasl_super_user: None,
            peers: Vec::new(),
            my_id: 0,
            linearizable_reads: false,
            unsafe_test_bugs: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.into(), source })?;
        let mut cfg = Config::parse(path, &text)?;
        let myid = cfg.data_dir.join("myid");
        if let Ok(s) = std::fs::read_to_string(&myid) {
            cfg.my_id = s.trim().parse().map_err(|_| ConfigError::Invalid {
                file: myid.clone(),
                message: format!("myid must be a number, found {:?}", s.trim()),
            })?;
        }
        cfg.check_ensemble(&myid)?;
        cfg.use_own_client_address()?;
        Ok(cfg)
    }

    /// As ZooKeeper 3.5+: this member's `server.N=...;[address:]port` is its
    /// client address when zoo.cfg has no `clientPort`; when it has both,
    /// they must agree.
    pub fn use_own_client_address(&mut self) -> Result<(), ConfigError> {
        let Some(me) = self.peers.iter().find(|p| p.id == self.my_id) else { return Ok(()) };
        let Some(addr) = me.client_addr else { return Ok(()) };
        if !self.client_port_set {
            self.client_addr = addr;
        } else if addr.port() != self.client_addr.port() {
            return Err(ConfigError::Invalid {
                file: self.source.clone(),
                message: format!(
                    "server.{}: client port {} differs from clientPort={}",
                    me.id,
                    addr.port(),
                    self.client_addr.port()
                ),
            });
        }
        Ok(())
    }

    /// Checks this member's place in the ensemble once `my_id` is known
    /// (`myid_file` names where it came from, for messages): with more than
    /// one `server.N` line, `myid` must name one of them.
    pub fn check_ensemble(&self, myid_file: &Path) -> Result<(), ConfigError> {
        if self.peers.len() > 1 && self.my_id == 0 {
            return Err(ConfigError::Invalid {
                file: myid_file.into(),
                message: format!(
                    "missing: {} lists {} servers, so this member's id (one of its server.N) must be in dataDir/myid",
                    self.source.display(),
                    self.peers.len()
                ),
            });
        }
        if self.my_id != 0 && !self.peers.is_empty() && !self.peers.iter().any(|p| p.id == self.my_id) {
            return Err(ConfigError::Invalid {
                file: myid_file.into(),
                message: format!("myid is {}, but {} has no server.{} line", self.my_id, self.source.display(), self.my_id),
            });
        }
        Ok(())
    }

    /// Parses zoo.cfg text; relative paths stay relative to the working directory, as in ZooKeeper.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut values: Values = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(ConfigError::BadValue {
                    file: file.into(),
                    line: i + 1,
                    key: line.to_owned(),
                    message: "expected key=value".into(),
                });
            };
            // ZooKeeper turns zoo.cfg keys it does not know into "zookeeper."
            // system properties, so "zookeeper.X" and "X" name the same setting.
            let k = k.trim();
            let k = k.strip_prefix("zookeeper.").filter(|rest| KNOWN_KEYS.contains(rest)).unwrap_or(k);
            values.insert(k.to_owned(), (i + 1, v.trim().to_owned()));
        }
        let bad = |key: &str, line: usize, message: String| ConfigError::BadValue {
            file: file.into(),
            line,
            key: key.to_owned(),
            message,
        };
        fn num<T: std::str::FromStr>(
            values: &BTreeMap<String, (usize, String)>,
            key: &str,
            bad: &dyn Fn(&str, usize, String) -> ConfigError,
        ) -> Result<Option<T>, ConfigError> {
            match values.get(key) {
                None => Ok(None),
                Some((line, v)) => v.parse().map(Some).map_err(|_| bad(key, *line, format!("not a valid number: {v:?}"))),
            }
        }

        let mut cfg = Config::embedded_default();
        cfg.source = file.into();
        // ZooKeeper's defaults for a zoo.cfg differ from the embedded default.
        cfg.four_letter_words = vec!["srvr".into()];
        cfg.extended_types = false;
        cfg.tick_ms = num(&values, "tickTime", &bad)?.unwrap_or(3000);
        if cfg.tick_ms == 0 || i32::try_from(cfg.tick_ms).is_err() {
            return Err(bad("tickTime", values["tickTime"].0, format!("must be between 1 and {} ms", i32::MAX)));
        }
        match values.get("dataDir") {
            Some((_, v)) => cfg.data_dir = PathBuf::from(v),
            None => return Err(ConfigError::Invalid { file: file.into(), message: "dataDir is not set".into() }),
        }
        cfg.data_log_dir = values.get("dataLogDir").map_or(cfg.data_dir.clone(), |(_, v)| PathBuf::from(v));
        let port: u16 = num(&values, "clientPort", &bad)?.unwrap_or(2181);
        let ip = match values.get("clientPortAddress") {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some((line, v)) => v.parse().map_err(|_| bad("clientPortAddress", *line, format!("not an IP address: {v:?}")))?,
        };
        cfg.client_addr = SocketAddr::new(ip, port);
        cfg.client_port_set = values.contains_key("clientPort");
        cfg.max_client_cnxns = num(&values, "maxClientCnxns", &bad)?.unwrap_or(60);
        cfg.max_cnxns = num(&values, "maxCnxns", &bad)?.unwrap_or(0);
        cfg.max_watches_per_session = num(&values, "maxWatchesPerSession", &bad)?.unwrap_or(cfg.max_watches_per_session);
        cfg.max_set_watches_paths = num(&values, "maxSetWatchesPaths", &bad)?.unwrap_or(cfg.max_set_watches_paths);
        cfg.max_output_queue_bytes = num(&values, "maxOutputQueueBytes", &bad)?.unwrap_or(cfg.max_output_queue_bytes);
        // As ZooKeeperServer: absent or -1 means 2 × (min) or 20 × (max) tickTime.
        let session_timeout = |key: &str, ticks: u64| -> Result<i32, ConfigError> {
            match num::<i32>(&values, key, &bad)? {
                Some(ms) if ms >= 0 => Ok(ms),
                None | Some(-1) => i32::try_from(u64::from(cfg.tick_ms) * ticks).map_err(|_| {
                    let line = values.get("tickTime").map_or(0, |v| v.0);
                    bad("tickTime", line, format!("{ticks} × tickTime, the default {key}, exceeds {} ms; set {key}", i32::MAX))
                }),
                Some(ms) => Err(bad(key, values[key].0, format!("must be -1 (the default) or at least 0, found {ms}"))),
            }
        };
        cfg.min_session_timeout_ms = session_timeout("minSessionTimeout", 2)?;
        cfg.max_session_timeout_ms = session_timeout("maxSessionTimeout", 20)?;
        if cfg.min_session_timeout_ms > cfg.max_session_timeout_ms {
            let line = values.get("minSessionTimeout").or(values.get("maxSessionTimeout")).map_or(0, |v| v.0);
            return Err(bad("minSessionTimeout", line, "minSessionTimeout must not be larger than maxSessionTimeout".into()));
        }
        if let Some((line, v)) = values.get("4lw.commands.whitelist") {
            let mut words = Vec::new();
            for w in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                if w == "*" {
                    words = FOUR_LETTER_WORDS.iter().map(|s| s.to_string()).collect();
                    break;
                }
                if !FOUR_LETTER_WORDS.contains(&w) {
                    tracing::warn!("{}:{line}: 4lw.commands.whitelist: unknown command {w:?} ignored", file.display());
                    continue;
                }
                words.push(w.to_owned());
            }
            cfg.four_letter_words = words;
        }
        if let Some((line, v)) = values.get("readConsistency") {
            cfg.linearizable_reads = match v.as_str() {
                "linearizable" => true,
                "sequential" => false,
                other => return Err(bad("readConsistency", *line, format!("not linearizable or sequential: {other:?}"))),
            };
        }
        if let Some((line, v)) = values.get("extendedTypesEnabled") {
            cfg.extended_types = parse_bool(v).ok_or_else(|| bad("extendedTypesEnabled", *line, format!("not true/false: {v:?}")))?;
        }
        if let Some(n) = num::<usize>(&values, "jute.maxbuffer", &bad)? {
            if n < 1024 {
                return Err(bad("jute.maxbuffer", values["jute.maxbuffer"].0, "must be at least 1024".into()));
            }
            cfg.max_frame_bytes = n;
        }
        cfg.super_digest = values.get("DigestAuthenticationProvider.superDigest").map(|(_, v)| v.clone());
        cfg.x509_super_user = values.get("X509AuthenticationProvider.superUser").map(|(_, v)| v.clone());
        cfg.jaas_config = values.get("java.security.auth.login.config").map(|(_, v)| PathBuf::from(v));
        cfg.sasl_super_user = values.get("superUser").map(|(_, v)| v.clone());
        if let Some(port) = num::<u16>(&values, "secureClientPort", &bad)? {
            let ip = match values.get("secureClientPortAddress") {
                None => cfg.client_addr.ip(),
                Some((line, v)) => {
                    v.parse().map_err(|_| bad("secureClientPortAddress", *line, format!("not an IP address: {v:?}")))?
                }
            };
            cfg.secure_client_addr = Some(SocketAddr::new(ip, port));
            cfg.tls = Some(tls_config(&values, &bad, file)?);
        }
        cfg.container_check_interval_ms =
            num(&values, "znode.container.checkIntervalMs", &bad)?.unwrap_or(cfg.container_check_interval_ms);
        if let Some(kb) = num::<u64>(&values, "preAllocSize", &bad)? {
            cfg.prealloc_bytes = kb.checked_mul(1024).filter(|b| *b <= 1 << 40).ok_or_else(|| bad("preAllocSize", values["preAllocSize"].0, "at most 1073741824 (KB)".into()))?;
        }
        if let Some(n) = num::<u64>(&values, "snapCount", &bad)? {
            if n < 2 {
                return Err(bad("snapCount", values["snapCount"].0, "must be at least 2".into()));
            }
            cfg.snap_count = n;
        }
        cfg.peers = servers(&values, &bad, cfg.extended_types)?;
        if let Some((line, v)) = values.get("peerType") {
            match v.to_ascii_lowercase().as_str() {
                "participant" => {}
                "observer" => return Err(bad("peerType", *line, "observers are not supported yet".into())),
                _ => return Err(bad("peerType", *line, format!("expected participant or observer, found {v:?}"))),
            }
        }
        for (key, (line, _)) in &values {
            if !KNOWN_KEYS.contains(&key.as_str()) && !key.starts_with("server.") {
                tracing::warn!("{}:{line}: unknown key {key:?} ignored", file.display());
            }
        }
        Ok(cfg)
    }
}

type Values = BTreeMap<String, (usize, String)>;

/// The `server.N` lines, by id: each parsed as ZooKeeper does, ids in range and unique.
fn servers(values: &Values, bad: &dyn Fn(&str, usize, String) -> ConfigError, extended_types: bool) -> Result<Vec<Peer>, ConfigError> {
    let mut peers: BTreeMap<u64, (usize, Peer)> = BTreeMap::new();
    // In file order, so that a duplicate is reported on its later line.
    let mut lines: Vec<(&String, &(usize, String))> = values.iter().filter(|(k, _)| k.starts_with("server.")).collect();
    lines.sort_by_key(|(_, (line, _))| *line);
    for (key, (line, v)) in lines {
        let Some(n) = key.strip_prefix("server.") else { continue };
        let id: u64 = n.parse().map_err(|_| bad(key, *line, "server id must be a number".into()))?;
        if !(1..=SERVER_ID_MAX).contains(&id) {
            return Err(bad(key, *line, format!("server id must be between 1 and {SERVER_ID_MAX}")));
        }
        // ZooKeeper's EphemeralType.validateServerId: with extended types
        // (TTL nodes) the session id's top byte 0xff is reserved.
        if extended_types && id == SERVER_ID_MAX {
            return Err(bad(key, *line, format!("server id {SERVER_ID_MAX} is reserved when extendedTypesEnabled is true")));
        }
        let peer = parse_server(id, v).map_err(|m| bad(key, *line, m))?;
        if peer.role == PeerRole::Observer {
            return Err(bad(key, *line, "observers are not supported yet".into()));
        }
        if let Some((other, _)) = peers.get(&id) {
            return Err(bad(key, *line, format!("server id {id} is already defined on line {other}")));
        }
        peers.insert(id, (*line, peer));
    }
    Ok(peers.into_values().map(|(_, p)| p).collect())
}

/// The `ssl.*` keys of a secure client port, as ZooKeeper's `X509Util` reads them.
fn tls_config(values: &Values, bad: &dyn Fn(&str, usize, String) -> ConfigError, file: &Path) -> Result<TlsConfig, ConfigError> {
    let store = |prefix: &'static str| -> Result<Option<StoreFile>, ConfigError> {
        let loc_key = format!("{prefix}.location");
        let Some((line, loc)) = values.get(&loc_key) else { return Ok(None) };
        let path = PathBuf::from(loc);
        let type_key = format!("{prefix}.type");
        let kind = StoreKind::detect(values.get(&type_key).map(|(_, t)| t.as_str()), &path).ok_or_else(|| {
            let line = values.get(&type_key).map_or(*line, |(l, _)| *l);
            bad(&type_key, line, format!("the type of {loc} must be JKS, PKCS12 or PEM (inferred only from a .jks, .p12 or .pem file name)"))
        })?;
        let password = values.get(&format!("{prefix}.password")).map(|(_, p)| p.clone()).unwrap_or_default();
        Ok(Some(StoreFile { key: prefix, path, password, kind }))
    };
    let key_store = store("ssl.keyStore")?.ok_or_else(|| ConfigError::Invalid {
        file: file.into(),
        message: "secureClientPort is set but ssl.keyStore.location is not".into(),
    })?;
    let client_auth = match values.get("ssl.clientAuth") {
        None => ClientAuth::Need,
        Some((line, v)) => match v.to_ascii_lowercase().as_str() {
            "need" => ClientAuth::Need,
            "want" => ClientAuth::Want,
            "none" => ClientAuth::None,
            _ => return Err(bad("ssl.clientAuth", *line, format!("expected need, want or none, found {v:?}"))),
        },
    };
    Ok(TlsConfig { key_store, trust_store: store("ssl.trustStore")?, client_auth })
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

/// Keys Corral reads, or accepts silently because they only tune ZooKeeper's JVM internals.
const KNOWN_KEYS: &[&str] = &[
    "tickTime",
    "dataDir",
    "dataLogDir",
    "clientPort",
    "clientPortAddress",
    "maxClientCnxns",
    "maxCnxns",
    "maxWatchesPerSession",
    "maxSetWatchesPaths",
    "maxOutputQueueBytes",
    "minSessionTimeout",
    "maxSessionTimeout",
    "4lw.commands.whitelist",
    "extendedTypesEnabled",
    "readConsistency",
    "jute.maxbuffer",
    "DigestAuthenticationProvider.superDigest",
    "X509AuthenticationProvider.superUser",
    "java.security.auth.login.config",
    "superUser",
    "authProvider.sasl",
    "ssl.authProvider",
    "authProvider.1",
    "authProvider.x509",
    "secureClientPort",
    "secureClientPortAddress",
    "serverCnxnFactory",
    "ssl.keyStore.location",
    "ssl.keyStore.password",
    "ssl.keyStore.type",
    "ssl.trustStore.location",
    "ssl.trustStore.password",
    "ssl.trustStore.type",
    "ssl.clientAuth",
    "ssl.protocol",
    "ssl.enabledProtocols",
    "ssl.ciphersuites",
    "ssl.hostnameVerification",
    "client.secure",
    "snapCount",
    "preAllocSize",
    "znode.container.checkIntervalMs",
    "initLimit",
    "syncLimit",
    "admin.enableServer",
    "admin.serverPort",
    "autopurge.snapRetainCount",
    "autopurge.purgeInterval",
    "standaloneEnabled",
    "reconfigEnabled",
    "preAllocSize",
    "peerType",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("zoo.cfg"), text)
    }

    #[test]
    fn reads_zookeeper_keys() {
        let c = parse("tickTime=1000\ndataDir=/tmp/x\nclientPort=2999\nclientPortAddress=127.0.0.1\n4lw.commands.whitelist=ruok, mntr\nextendedTypesEnabled=true\nserver.1=127.0.0.1:2888:3888\nunknownKey=1\n").unwrap();
        assert_eq!(c.tick_ms, 1000);
        assert_eq!(c.min_session_timeout_ms, 2000);
        assert_eq!(c.max_session_timeout_ms, 20000);
        assert_eq!(c.client_addr, "127.0.0.1:2999".parse().unwrap());
        assert_eq!(c.four_letter_words, vec!["ruok", "mntr"]);
        assert!(c.extended_types);
        assert_eq!(
            c.peers,
            vec![Peer {
                id: 1,
                host: "127.0.0.1".into(),
                peer_port: 2888,
                election_port: 3888,
                role: PeerRole::Participant,
                client_addr: None
            }]
        );
    }

    #[test]
    fn secure_port_and_prefixed_keys() {
        let c = parse("dataDir=/x\nsecureClientPort=2281\nzookeeper.ssl.keyStore.location=/k.jks\nssl.keyStore.password=pw\nssl.trustStore.location=/t.pem\nssl.clientAuth=want\nzookeeper.DigestAuthenticationProvider.superDigest=super:abc\n").unwrap();
        assert_eq!(c.secure_client_addr, Some("0.0.0.0:2281".parse().unwrap()));
        let tls = c.tls.unwrap();
        assert_eq!(tls.key_store, StoreFile { key: "ssl.keyStore", path: "/k.jks".into(), password: "pw".into(), kind: StoreKind::Jks });
        assert_eq!(tls.trust_store.unwrap().kind, StoreKind::Pem);
        assert_eq!(tls.client_auth, ClientAuth::Want);
        assert_eq!(c.super_digest.as_deref(), Some("super:abc"));
        let e = parse("dataDir=/x\nsecureClientPort=2281\n").unwrap_err().to_string();
        assert!(e.contains("ssl.keyStore.location"), "{e}");
        let e = parse("dataDir=/x\nsecureClientPort=1\nssl.keyStore.location=/k.pfx\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:3: ssl.keyStore.type"), "{e}");
    }

    /// ZooKeeper 3.8's `KeyStoreFileType`: an explicit type (any case; empty
    /// is absent), else the extension `.jks`, `.pem` or `.p12`, case-sensitive.
    #[test]
    fn store_type_from_the_type_key_or_the_extension() {
        let kind = |extra: &str| {
            let c = parse(&format!("dataDir=/x\nsecureClientPort=1\n{extra}\n"))?;
            Ok::<_, ConfigError>(c.tls.unwrap().key_store.kind)
        };
        assert_eq!(kind("ssl.keyStore.location=/k.p12").unwrap(), StoreKind::Pkcs12);
        assert_eq!(kind("ssl.keyStore.location=/k.jks").unwrap(), StoreKind::Jks);
        assert_eq!(kind("ssl.keyStore.location=/k.pem").unwrap(), StoreKind::Pem);
        assert_eq!(kind("ssl.keyStore.location=/k.pfx\nssl.keyStore.type=pkcs12").unwrap(), StoreKind::Pkcs12);
        assert_eq!(kind("ssl.keyStore.location=/k.p12\nssl.keyStore.type=JKS").unwrap(), StoreKind::Jks);
        assert_eq!(kind("ssl.keyStore.location=/k.p12\nssl.keyStore.type=").unwrap(), StoreKind::Pkcs12);
        assert!(kind("ssl.keyStore.location=/k.P12").is_err());
        assert!(kind("ssl.keyStore.location=/k.p12\nssl.keyStore.type=BCFKS").is_err());
        let c = parse("dataDir=/x\nsecureClientPort=1\nssl.keyStore.location=/k.pem\nssl.trustStore.location=/t.p12\n").unwrap();
        let ts = c.tls.unwrap().trust_store.unwrap();
        assert_eq!((ts.key, ts.kind), ("ssl.trustStore", StoreKind::Pkcs12));
    }

    /// Found by the zoocfg fuzz target: `20 * tickTime as i32` overflowed
    /// (a panic in debug builds, a negative maxSessionTimeout in release).
    #[test]
    fn huge_tick_time_is_an_error_not_an_overflow() {
        // The fuzzer's input, reduced to the line that matters.
        let e = parse("tickTime=200035478\ndataDir=/var/lib/zookeeper\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:1: tickTime:") && e.contains("maxSessionTimeout"), "{e}");
        let e = parse("tickTime=2147483648\ndataDir=/x\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:1: tickTime: must be between 1 and 2147483647"), "{e}");
        let c = parse("tickTime=200035478\ndataDir=/x\nmaxSessionTimeout=2000000000\nminSessionTimeout=-1\n").unwrap();
        assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (400_070_956, 2_000_000_000));
        let c = parse("tickTime=2000\ndataDir=/x\nminSessionTimeout=-1\nmaxSessionTimeout=-1\n").unwrap();
        assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (4000, 40000));
        let e = parse("dataDir=/x\nminSessionTimeout=-5\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:2: minSessionTimeout: must be -1"), "{e}");
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let e = parse("dataDir=/tmp/x\n\ntickTime=fast\n").unwrap_err().to_string();
        assert_eq!(e, "zoo.cfg:3: tickTime: not a valid number: \"fast\"");
        let e = parse("dataDir=/tmp/x\nclientPortAddress=nowhere\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:2: clientPortAddress:"), "{e}");
        assert!(parse("tickTime=2000\n").unwrap_err().to_string().contains("dataDir"));
        let e = parse("dataDir=/x\nminSessionTimeout=5000\nmaxSessionTimeout=4000\n").unwrap_err().to_string();
        assert!(e.contains("minSessionTimeout"), "{e}");
        let e = parse("dataDir=/x\njust some words\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:2:"), "{e}");
    }

    fn server(value: &str) -> Result<Peer, String> {
        let c = parse(&format!("dataDir=/x\nserver.3={value}\n")).map_err(|e| e.to_string())?;
        Ok(c.peers.into_iter().next().expect("one server"))
    }

    #[test]
    fn server_lines_in_every_zookeeper_form() {
        let p = server("zk1.example:2888:3888").unwrap();
        assert_eq!((p.id, p.host.as_str(), p.peer_port, p.election_port), (3, "zk1.example", 2888, 3888));
        assert_eq!((p.role, p.client_addr), (PeerRole::Participant, None));
        assert_eq!(p.quorum_host_port(), "zk1.example:2888");
        assert_eq!(server("h:1:2:participant").unwrap().role, PeerRole::Participant);
        assert_eq!(server("h:1:2: Participant").unwrap().role, PeerRole::Participant);
        assert_eq!(server("h:1:2;2181").unwrap().client_addr, Some("0.0.0.0:2181".parse().unwrap()));
        assert_eq!(server("h:1:2:participant;10.0.0.1:2182").unwrap().client_addr, Some("10.0.0.1:2182".parse().unwrap()));
        assert_eq!(server("h:1:2;").unwrap().client_addr, None, "Java's split drops the empty tail");
        let p = server("[fe80::1]:2888:3888;[::1]:2181").unwrap();
        assert_eq!((p.host.as_str(), p.peer_port, p.election_port), ("fe80::1", 2888, 3888));
        assert_eq!(p.client_addr, Some("[::1]:2181".parse().unwrap()));
        assert_eq!(p.quorum_host_port(), "[fe80::1]:2888");
        // Sorted by id, not by key text ("server.10" < "server.2").
        let c = parse("dataDir=/x\nserver.10=a:1:2\nserver.2=b:1:2\nserver.1=c:1:2\n").unwrap();
        assert_eq!(c.peers.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 2, 10]);
    }

    #[test]
    fn bad_server_lines_name_file_line_and_key() {
        let cases = [
            ("h:1:2:observer", "observers are not supported yet"),
            ("h:1:2:leader", "unknown role"),
            ("h:2888", "expected host:quorumPort:electionPort"),
            ("h:1:2:participant:5", "expected host:quorumPort:electionPort"),
            ("::1:2888:3888", "expected host:quorumPort:electionPort"),
            (":2888:3888", "expected host:quorumPort:electionPort"),
            ("h:1:2;3;4", "expected host:quorumPort:electionPort"),
            ("h:port:2", "bad port \"port\""),
            ("h:0:2", "bad port \"0\""),
            ("h:70000:2", "bad port"),
            ("h:2888:2888", "must be different"),
            ("a:1:2|b:1:2", "multiple addresses"),
            ("[::1:2888:3888", "no matching ']:'"),
            ("h:1:2;localhost:2181", "must be an IP address"),
            ("h:1:2;1.2.3.4:5:6", "should be a port or address:port"),
            ("h:1:2;x", "bad client port"),
        ];
        for (value, want) in cases {
            let e = server(value).unwrap_err();
            assert!(e.starts_with("zoo.cfg:2: server.3: "), "{value}: {e}");
            assert!(e.contains(want), "{value}: {e}");
        }
        let e = parse("dataDir=/x\nserver.x=h:1:2\n").unwrap_err().to_string();
        assert_eq!(e, "zoo.cfg:2: server.x: server id must be a number");
        for id in ["0", "256"] {
            let e = parse(&format!("dataDir=/x\nserver.{id}=h:1:2\n")).unwrap_err().to_string();
            assert!(e.contains("between 1 and 255"), "{e}");
        }
        assert!(parse("dataDir=/x\nserver.255=h:1:2\n").is_ok());
        let e = parse("dataDir=/x\nextendedTypesEnabled=true\nserver.255=h:1:2\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:3: server.255:") && e.contains("reserved"), "{e}");
        let e = parse("dataDir=/x\nserver.1=a:1:2\nserver.01=b:1:2\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:3: server.01:") && e.contains("already defined on line 2"), "{e}");
        let e = parse("dataDir=/x\npeerType=observer\n").unwrap_err().to_string();
        assert_eq!(e, "zoo.cfg:2: peerType: observers are not supported yet");
        assert!(parse("dataDir=/x\npeerType=participant\n").is_ok());
    }

    #[test]
    fn myid_must_name_one_of_the_servers() {
        let myid = Path::new("/data/myid");
        let mut c = parse("dataDir=/data\nserver.1=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2\n").unwrap();
        let e = c.check_ensemble(myid).unwrap_err().to_string();
        assert!(e.starts_with("/data/myid: missing: zoo.cfg lists 3 servers"), "{e}");
        c.my_id = 4;
        let e = c.check_ensemble(myid).unwrap_err().to_string();
        assert_eq!(e, "/data/myid: myid is 4, but zoo.cfg has no server.4 line");
        c.my_id = 2;
        c.check_ensemble(myid).unwrap();
        // One server (or none) needs no myid: standalone.
        let c = parse("dataDir=/data\nserver.1=a:1:2\n").unwrap();
        c.check_ensemble(myid).unwrap();
        parse("dataDir=/data\n").unwrap().check_ensemble(myid).unwrap();
    }

    #[test]
    fn load_reads_myid_from_the_data_dir_and_checks_it() {
        let dir = std::env::temp_dir().join(format!("corral-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("zoo.cfg");
        std::fs::write(&cfg, format!("dataDir={}\nserver.1=a:1:2\nserver.2=b:1:2\n", dir.display())).unwrap();
        let e = Config::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("myid: missing"), "{e}");
        std::fs::write(dir.join("myid"), "2\n").unwrap();
        assert_eq!(Config::load(&cfg).unwrap().my_id, 2);
        std::fs::write(dir.join("myid"), "7\n").unwrap();
        assert!(Config::load(&cfg).unwrap_err().to_string().contains("no server.7 line"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_own_server_line_gives_the_client_port_when_zoo_cfg_does_not() {
        let dir = std::env::temp_dir().join(format!("corral-config-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("myid"), "2\n").unwrap();
        let cfg = dir.join("zoo.cfg");
        let servers = "server.1=a:1:2;2181\nserver.2=b:1:2;127.0.0.2:2182\n";
        std::fs::write(&cfg, format!("dataDir={}\n{servers}", dir.display())).unwrap();
        assert_eq!(Config::load(&cfg).unwrap().client_addr, "127.0.0.2:2182".parse().unwrap());
        std::fs::write(&cfg, format!("dataDir={}\nclientPort=2182\n{servers}", dir.display())).unwrap();
        assert_eq!(Config::load(&cfg).unwrap().client_addr.port(), 2182, "both, agreeing");
        std::fs::write(&cfg, format!("dataDir={}\nclientPort=3000\n{servers}", dir.display())).unwrap();
        let e = Config::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("server.2: client port 2182 differs from clientPort=3000"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_consistency() {
        assert!(!parse("dataDir=/x\n").unwrap().linearizable_reads, "ZooKeeper's model by default");
        assert!(parse("dataDir=/x\nreadConsistency=linearizable\n").unwrap().linearizable_reads);
        let e = parse("dataDir=/x\nreadConsistency=strong\n").unwrap_err().to_string();
        assert!(e.contains(":2: readConsistency"), "{e}");
    }
}
