//! SASL for clients, as ZooKeeper does it: the client sends tokens in
//! `sasl` requests (opcode 102, `GetSASLRequest`), the server answers each
//! with a token (`SetSASLResponse`); once the exchange completes the
//! connection carries the identity `sasl:<user name>`.
//!
//! The one mechanism is DIGEST-MD5 (RFC 2831), server side, with the
//! parameters ZooKeeper's `ZooKeeperSaslServer` gives Java's SASL server:
//! protocol `zookeeper`, server name and realm `zk-sasl-md5` (so clients use
//! the digest-uri `zookeeper/zk-sasl-md5`), qop `auth` only, `md5-sess`.
//! Users and passwords come from the `Server` section of a JAAS file, the
//! `user_<name>="<password>"` options of `DigestLoginModule`, as ZooKeeper's
//! `SaslServerCallbackHandler` reads them. The identity is the
//! authentication id (an `authzid` the client asks for is not granted,
//! as in ZooKeeper, whose callback sets the authorized id from the user name).
//!
//! Everything here reads untrusted bytes: no indexing that can panic, and
//! each exchange is bounded (two steps, then complete or failed).

use std::collections::BTreeMap;
use std::path::Path;

use md5::{Digest, Md5};

/// Java's `DigestMD5Server` realm and host part of the digest-uri, as
/// ZooKeeper creates it (`zk-sasl-md5`, `SaslServerCallbackHandler`).
pub const REALM: &str = "zk-sasl-md5";
/// The digest-uri clients compute their response with.
pub const DIGEST_URI: &str = "zookeeper/zk-sasl-md5";
/// The JAAS section ZooKeeper reads by default (`zookeeper.sasl.serverconfig`).
pub const JAAS_SECTION: &str = "Server";

/// User name → password.
pub type Users = BTreeMap<String, String>;

/// The `user_<name>="<password>"` options of the section `section` of the
/// JAAS login configuration at `path`; `None` when the file has no such
/// section, which leaves SASL off as in ZooKeeper (kazoo's test harness
/// passes an empty JAAS file to every server). A file that cannot be read
/// or parsed is an error, as it stops ZooKeeper.
pub fn load_jaas(path: &Path, section: &str) -> Result<Option<Users>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let sections = parse_jaas(&text)?;
    let Some(entries) = sections.get(section) else { return Ok(None) };
    let mut users = Users::new();
    for (module, options) in entries {
        if module.contains("Krb5LoginModule") {
            return Err(format!("{module}: Kerberos (GSSAPI) is not supported, only DigestLoginModule (DIGEST-MD5)"));
        }
        for (k, v) in options {
            if let Some(user) = k.strip_prefix("user_") {
                users.insert(user.to_owned(), v.clone());
            }
        }
    }
    Ok(Some(users))
}

/// One login module entry: its class and options.
type Entry = (String, Vec<(String, String)>);

/// JAAS's `ConfigFile` syntax: `Name { Module Flag key=value ... ; ... };`
/// with `//` and `/* */` comments and double-quoted values (backslash escapes).
fn parse_jaas(text: &str) -> Result<BTreeMap<String, Vec<Entry>>, String> {
    #[derive(Debug, PartialEq)]
    enum Tok {
        Word(String),
        Quoted(String),
        Sym(char),
    }
    let mut toks = Vec::new();
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '/' if it.peek() == Some(&'/') => {
                for c in it.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if it.peek() == Some(&'*') => {
                it.next();
                let mut prev = ' ';
                loop {
                    match it.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("unterminated /* comment".into()),
                    }
                }
            }
            '{' | '}' | ';' | '=' => toks.push(Tok::Sym(c)),
            '"' => {
                let mut s = String::new();
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(c) => s.push(c),
                            None => return Err("unterminated quoted string".into()),
                        },
                        Some(c) => s.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
                toks.push(Tok::Quoted(s));
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = it.peek() {
                    if n.is_whitespace() || "{};=\"".contains(n) {
                        break;
                    }
                    s.push(n);
                    it.next();
                }
                toks.push(Tok::Word(s));
            }
        }
    }
    let mut sections = BTreeMap::new();
    let mut toks = toks.into_iter().peekable();
    let word = |t: Option<Tok>, what: &str| match t {
        Some(Tok::Word(w)) => Ok(w),
        other => Err(format!("expected {what}, found {other:?}")),
    };
    while toks.peek().is_some() {
        let name = word(toks.next(), "a section name")?;
        if toks.next() != Some(Tok::Sym('{')) {
            return Err(format!("expected {{ after {name}"));
        }
        let mut entries = Vec::new();
        loop {
            if toks.peek() == Some(&Tok::Sym('}')) {
                toks.next();
                break;
            }
            let module = word(toks.next(), "a login module class")?;
            let flag = word(toks.next(), "a control flag")?;
            if !["required", "requisite", "sufficient", "optional"].contains(&flag.to_ascii_lowercase().as_str()) {
                return Err(format!("{module}: unknown control flag {flag:?}"));
            }
            let mut options = Vec::new();
            loop {
                match toks.next() {
                    Some(Tok::Sym(';')) => break,
                    Some(Tok::Word(k)) => {
                        if toks.next() != Some(Tok::Sym('=')) {
                            return Err(format!("{module}: expected = after {k}"));
                        }
                        let v = match toks.next() {
                            Some(Tok::Quoted(v) | Tok::Word(v)) => v,
                            other => return Err(format!("{module}: expected a value for {k}, found {other:?}")),
                        };
                        options.push((k, v));
                    }
                    other => return Err(format!("{module}: expected an option or ;, found {other:?}")),
                }
            }
            entries.push((module, options));
        }
        if toks.next() != Some(Tok::Sym(';')) {
            return Err(format!("expected ; after the {name} section"));
        }
        sections.insert(name, entries);
    }
    Ok(sections)
}

/// What one step of an exchange gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A challenge to send; the exchange goes on.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; `token` (rspauth) is the last to send.
    Done { token: Vec<u8>, user: String },
}

#[derive(Debug)]
enum State {
    Start,
    Challenged,
    Over,
}

/// One connection's DIGEST-MD5 exchange, server side.
#[derive(Debug)]
pub struct DigestMd5 {
    nonce: String,
    realm: String,
    digest_uri: String,
    state: State,
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 2831 2.1.2.1: with charset=utf-8, a string whose characters all fit
/// ISO 8859-1 is hashed in that encoding, any other in UTF-8 (Java's
/// `DigestMD5Base.stringToByte_8859_1` does the same).
fn latin1_or_utf8(s: &str) -> Vec<u8> {
    if s.chars().all(|c| (c as u32) < 0x100) {
        s.chars().map(|c| c as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

/// Parses `name=value` directives separated by commas, values tokens or
/// quoted strings (RFC 2831 2.1.2); a repeated directive is an error.
fn directives(token: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let text = std::str::from_utf8(token).map_err(|_| "response is not UTF-8".to_owned())?;
    let mut out = BTreeMap::new();
    let mut it = text.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(format!("directive {name:?} without a value"));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut value = String::new();
        if it.peek() == Some(&'"') {
            it.next();
            loop {
                match it.next() {
                    Some('"') => break,
                    Some('\\') => value.push(it.next().ok_or("unterminated quoted string")?),
                    Some(c) => value.push(c),
                    None => return Err("unterminated quoted string".into()),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                it.next();
            }
        }
        let name = name.to_ascii_lowercase();
        if out.insert(name.clone(), value).is_some() {
            return Err(format!("directive {name:?} given twice"));
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl DigestMd5 {
    /// An exchange with ZooKeeper's realm and digest-uri; `nonce` must be
    /// unpredictable (RFC 2831 asks for at least 64 bits of randomness).
    pub fn new(nonce: String) -> DigestMd5 {
        DigestMd5::with(nonce, REALM, DIGEST_URI)
    }

    fn with(nonce: String, realm: &str, digest_uri: &str) -> DigestMd5 {
        DigestMd5 { nonce, realm: realm.into(), digest_uri: digest_uri.into(), state: State::Start }
    }

    /// Takes the client's next token. `Err` says why the exchange failed;
    /// it cannot go on after that (nor after `Done`).
    pub fn step(&mut self, token: &[u8], users: &Users) -> Result<Step, String> {
        match std::mem::replace(&mut self.state, State::Over) {
            State::Start if token.is_empty() => {
                self.state = State::Challenged;
                let c = format!("realm=\"{}\",nonce=\"{}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess", self.realm, self.nonce);
                Ok(Step::Challenge(c.into_bytes()))
            }
            // DIGEST-MD5 starts with the server's challenge: a first token
            // is another mechanism's (GSSAPI, PLAIN, ...).
            State::Start => Err(format!("a first token of {} bytes: the client speaks a mechanism other than DIGEST-MD5, the only one offered", token.len())),
            State::Challenged => self.verify(token, users),
            State::Over => Err("the exchange is already over".into()),
        }
    }

    fn verify(&self, token: &[u8], users: &Users) -> Result<Step, String> {
        let d = directives(token)?;
        let get = |k: &str| d.get(k).map(String::as_str).ok_or_else(|| format!("no {k} in the response"));
        let user = get("username")?;
        let realm = d.get("realm").map_or("", String::as_str);
        if !realm.is_empty() && realm != self.realm {
            return Err(format!("realm {realm:?} was not offered"));
        }
        if get("nonce")? != self.nonce {
            return Err("nonce mismatch".into());
        }
        let cnonce = get("cnonce")?;
        let nc = get("nc")?;
        if u32::from_str_radix(nc, 16) != Ok(1) || nc.len() != 8 {
            return Err(format!("nc {nc:?}: expected 00000001"));
        }
        let qop = d.get("qop").map_or("auth", String::as_str);
        if qop != "auth" {
            return Err(format!("qop {qop:?} was not offered (only auth)"));
        }
        if let Some(cs) = d.get("charset") {
            if !cs.eq_ignore_ascii_case("utf-8") {
                return Err(format!("charset {cs:?}"));
            }
        }
        let uri = get("digest-uri")?;
        if !uri.eq_ignore_ascii_case(&self.digest_uri) {
            return Err(format!("digest-uri {uri:?}, expected {:?}", self.digest_uri));
        }
        let response = get("response")?;
        let password = users.get(user).ok_or_else(|| format!("unknown user {user:?}"))?;
        let authzid = d.get("authzid");
        let inner = md5(&[&latin1_or_utf8(user), b":", &latin1_or_utf8(realm), b":", &latin1_or_utf8(password)]);
        let mut a1: Vec<&[u8]> = vec![&inner, b":", self.nonce.as_bytes(), b":", cnonce.as_bytes()];
        if let Some(z) = authzid {
            a1.extend([&b":"[..], z.as_bytes()]);
        }
        let ha1 = hex(&md5(&a1));
        let kd = |a2: &[u8]| {
            let ha2 = hex(&md5(&[a2]));
            hex(&md5(&[ha1.as_bytes(), b":", self.nonce.as_bytes(), b":", nc.as_bytes(), b":", cnonce.as_bytes(), b":", qop.as_bytes(), b":", ha2.as_bytes()]))
        };
        let expected = kd(format!("AUTHENTICATE:{uri}").as_bytes());
        if !same(expected.as_bytes(), response.to_ascii_lowercase().as_bytes()) {
            return Err(format!("wrong password for {user:?}"));
        }
        let rspauth = kd(format!(":{uri}").as_bytes());
        Ok(Step::Done { token: format!("rspauth={rspauth}").into_bytes(), user: user.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        [("chris".to_owned(), "secret".to_owned())].into()
    }

    /// RFC 2831 section 4's example exchange.
    #[test]
    fn rfc_2831_example() {
        let mut s = DigestMd5::with("OA6MG9tEQGm2hh".into(), "elwood.innosoft.com", "imap/elwood.innosoft.com");
        let Ok(Step::Challenge(c)) = s.step(b"", &users()) else { panic!() };
        assert!(String::from_utf8(c).unwrap().contains("nonce=\"OA6MG9tEQGm2hh\""));
        let response = br#"charset=utf-8,username="chris",realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",digest-uri="imap/elwood.innosoft.com",response=d388dad90d4bbd760a152321f2143af7,qop=auth"#;
        assert_eq!(s.step(response, &users()), Ok(Step::Done { token: b"rspauth=ea40f60335c427b5527b84dbabcdfffd".to_vec(), user: "chris".into() }));
        assert!(s.step(b"", &users()).is_err(), "over once done");
    }

    #[test]
    fn wrong_password_unknown_user_and_other_mechanisms_fail() {
        let response = br#"username="chris",realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",digest-uri="imap/elwood.innosoft.com",response=d388dad90d4bbd760a152321f2143af7,qop=auth"#;
        let run = |users: &Users| {
            let mut s = DigestMd5::with("OA6MG9tEQGm2hh".into(), "elwood.innosoft.com", "imap/elwood.innosoft.com");
            s.step(b"", users).unwrap();
            s.step(response, users)
        };
        assert_eq!(run(&[("chris".to_owned(), "other".to_owned())].into()), Err("wrong password for \"chris\"".into()));
        assert_eq!(run(&[("bob".to_owned(), "secret".to_owned())].into()), Err("unknown user \"chris\"".into()));
        // PLAIN's first token, GSSAPI's: refused at the first step.
        let mut s = DigestMd5::new("n".into());
        assert!(s.step(b"\0bob\0bobsecret", &users()).is_err());
        assert!(s.step(b"", &users()).is_err(), "no second try on the same exchange");
    }

    #[test]
    fn a_replayed_or_altered_response_fails() {
        let mut s = DigestMd5::with("other-nonce".into(), "elwood.innosoft.com", "imap/elwood.innosoft.com");
        s.step(b"", &users()).unwrap();
        let response = br#"username="chris",realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",digest-uri="imap/elwood.innosoft.com",response=d388dad90d4bbd760a152321f2143af7,qop=auth"#;
        assert_eq!(s.step(response, &users()), Err("nonce mismatch".into()));
        for bad in [&b"username=\"a\",username=\"b\""[..], b"username", b"username=\"open", b"\xff\xfe", b"qop=auth-conf"] {
            let mut s = DigestMd5::new("n".into());
            s.step(b"", &users()).unwrap();
            assert!(s.step(bad, &users()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn jaas_server_section() {
        let text = r#"
            // ZooKeeper's example
            Server {
                org.apache.zookeeper.server.auth.DigestLoginModule required
                user_super="adminsecret"
                /* two users */ user_bob="bob\"secret";
            };
            Client { org.apache.zookeeper.server.auth.DigestLoginModule required username="bob" password="x"; };
        "#;
        let dir = std::env::temp_dir().join(format!("corral-jaas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jaas.conf");
        std::fs::write(&path, text).unwrap();
        let users = load_jaas(&path, "Server").unwrap().unwrap();
        assert_eq!(users.get("bob").map(String::as_str), Some("bob\"secret"));
        assert_eq!(users.get("super").map(String::as_str), Some("adminsecret"));
        assert_eq!(load_jaas(&path, "QuorumServer"), Ok(None), "no section: SASL off, as ZooKeeper");
        std::fs::write(&path, "").unwrap();
        assert_eq!(load_jaas(&path, "Server"), Ok(None), "an empty file too (kazoo's harness)");
        std::fs::write(&path, "Server { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true; };").unwrap();
        assert!(load_jaas(&path, "Server").unwrap_err().contains("not supported"));
        std::fs::write(&path, "Server { x required user_a=\"open").unwrap();
        assert!(load_jaas(&path, "Server").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
