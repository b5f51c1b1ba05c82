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

/// One `server.N=host:peerPort:electionPort[:role][;clientPort]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub host: String,
    pub peer_port: u16,
    pub election_port: u16,
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
    /// Per-IP connection limit; 0 means unlimited (`maxClientCnxns`).
    pub max_client_cnxns: u32,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Enabled four-letter words (`4lw.commands.whitelist`).
    pub four_letter_words: Vec<String>,
    pub extended_types: bool,
    /// `jute.maxbuffer`: the largest frame accepted.
    pub max_frame_bytes: usize,
    pub super_digest: Option<String>,
    /// How often empty containers and expired TTL nodes are looked for
    /// (`znode.container.checkIntervalMs`, ZooKeeper's default 60 s).
    pub container_check_interval_ms: u64,
    /// Txns between snapshots (`snapCount`, ZooKeeper's default 100000).
    pub snap_count: u64,
    /// `X509AuthenticationProvider.superUser`: the certificate DN that is super.
    pub x509_super_user: Option<String>,
    /// `secureClientPort` (+ `secureClientPortAddress`): the TLS listener.
    pub secure_client_addr: Option<SocketAddr>,
    /// The `ssl.*` settings, present exactly when `secure_client_addr` is.
    pub tls: Option<TlsConfig>,
    pub peers: Vec<Peer>,
    /// From `dataDir/myid`, 0 when absent (standalone).
    pub my_id: u64,
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
            max_client_cnxns: 60,
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            four_letter_words: FOUR_LETTER_WORDS.iter().map(|s| s.to_string()).collect(),
            extended_types: true,
            max_frame_bytes: protocol::DEFAULT_MAX_FRAME_BYTES,
            super_digest: None,
            container_check_interval_ms: 60_000,
            snap_count: 100_000,
            secure_client_addr: None,
            tls: None,
            x509_super_user: None,
            peers: Vec::new(),
            my_id: 0,
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
        Ok(cfg)
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
        if cfg.tick_ms == 0 {
            return Err(bad("tickTime", values["tickTime"].0, "must be positive".into()));
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
        cfg.max_client_cnxns = num(&values, "maxClientCnxns", &bad)?.unwrap_or(60);
        cfg.min_session_timeout_ms =
            num(&values, "minSessionTimeout", &bad)?.unwrap_or(2 * cfg.tick_ms as i32);
        cfg.max_session_timeout_ms =
            num(&values, "maxSessionTimeout", &bad)?.unwrap_or(20 * cfg.tick_ms as i32);
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
        if let Some(n) = num::<u64>(&values, "snapCount", &bad)? {
            if n < 2 {
                return Err(bad("snapCount", values["snapCount"].0, "must be at least 2".into()));
            }
            cfg.snap_count = n;
        }
        for (key, (line, v)) in &values {
            if let Some(id) = key.strip_prefix("server.") {
                let id: u64 = id.parse().map_err(|_| bad(key, *line, "server id must be a number".into()))?;
                let addr = v.split(';').next().unwrap_or_default();
                let parts: Vec<&str> = addr.split(':').collect();
                if parts.len() < 3 {
                    return Err(bad(key, *line, format!("expected host:peerPort:electionPort, found {v:?}")));
                }
                let port = |s: &str| s.parse::<u16>().map_err(|_| bad(key, *line, format!("bad port {s:?}")));
                cfg.peers.push(Peer { id, host: parts[0].into(), peer_port: port(parts[1])?, election_port: port(parts[2])? });
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

/// The `ssl.*` keys of a secure client port, as ZooKeeper's `X509Util` reads them.
fn tls_config(values: &Values, bad: &dyn Fn(&str, usize, String) -> ConfigError, file: &Path) -> Result<TlsConfig, ConfigError> {
    let store = |prefix: &str| -> Result<Option<StoreFile>, ConfigError> {
        let loc_key = format!("{prefix}.location");
        let Some((line, loc)) = values.get(&loc_key) else { return Ok(None) };
        let path = PathBuf::from(loc);
        let type_key = format!("{prefix}.type");
        let kind = StoreKind::detect(values.get(&type_key).map(|(_, t)| t.as_str()), &path).ok_or_else(|| {
            let line = values.get(&type_key).map_or(*line, |(l, _)| *l);
            bad(&type_key, line, "keystore type must be JKS or PEM (or a .jks/.pem file name)".into())
        })?;
        let password = values.get(&format!("{prefix}.password")).map(|(_, p)| p.clone()).unwrap_or_default();
        Ok(Some(StoreFile { path, password, kind }))
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
    "minSessionTimeout",
    "maxSessionTimeout",
    "4lw.commands.whitelist",
    "extendedTypesEnabled",
    "jute.maxbuffer",
    "DigestAuthenticationProvider.superDigest",
    "X509AuthenticationProvider.superUser",
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
    "snapCount",
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
        assert_eq!(c.peers, vec![Peer { id: 1, host: "127.0.0.1".into(), peer_port: 2888, election_port: 3888 }]);
    }

    #[test]
    fn secure_port_and_prefixed_keys() {
        let c = parse("dataDir=/x\nsecureClientPort=2281\nzookeeper.ssl.keyStore.location=/k.jks\nssl.keyStore.password=pw\nssl.trustStore.location=/t.pem\nssl.clientAuth=want\nzookeeper.DigestAuthenticationProvider.superDigest=super:abc\n").unwrap();
        assert_eq!(c.secure_client_addr, Some("0.0.0.0:2281".parse().unwrap()));
        let tls = c.tls.unwrap();
        assert_eq!(tls.key_store, StoreFile { path: "/k.jks".into(), password: "pw".into(), kind: StoreKind::Jks });
        assert_eq!(tls.trust_store.unwrap().kind, StoreKind::Pem);
        assert_eq!(tls.client_auth, ClientAuth::Want);
        assert_eq!(c.super_digest.as_deref(), Some("super:abc"));
        let e = parse("dataDir=/x\nsecureClientPort=2281\n").unwrap_err().to_string();
        assert!(e.contains("ssl.keyStore.location"), "{e}");
        let e = parse("dataDir=/x\nsecureClientPort=1\nssl.keyStore.location=/k.p12\n").unwrap_err().to_string();
        assert!(e.starts_with("zoo.cfg:3: ssl.keyStore.type"), "{e}");
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
}
