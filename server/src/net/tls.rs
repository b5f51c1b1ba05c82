//! TLS for `secureClientPort`, configured as ZooKeeper's `ssl.*` keys, with
//! keystores in Java's JKS format (what `keytool` and ZooKeeper deployments
//! have), PKCS#12 (the JDK's default keystore type since 9) or PEM.
//!
//! JKS is read here rather than through a crate: the format is a short
//! length-prefixed layout plus Sun's key-protection scheme (SHA-1 keystream),
//! and no maintained Rust crate reads it. PKCS#12 is decoded and decrypted by
//! the `p12-keystore` crate (PBES2 with PBKDF2 and AES as JDK 17 `keytool` and
//! OpenSSL 3 write it, and the legacy PBE-SHA1-3DES and RC2-40); [`pkcs12`]
//! turns its bags into key entries and trust anchors as Java's
//! `PKCS12KeyStore` does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha1::{Digest, Sha1};
use tokio_rustls::TlsAcceptor;

/// Whether clients must present a certificate (`ssl.clientAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Need,
    Want,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Jks,
    Pem,
    Pkcs12,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFile {
    /// The zoo.cfg key prefix it came from (`ssl.keyStore`, `ssl.trustStore`), for messages.
    pub key: &'static str,
    pub path: PathBuf,
    pub password: String,
    pub kind: StoreKind,
}

impl StoreKind {
    /// `ssl.*Store.type`, or else the file extension, as ZooKeeper 3.8's
    /// `KeyStoreFileType.fromPropertyValueOrFileName`: the type is
    /// case-insensitive and an empty one counts as absent; the extension is
    /// case-sensitive and only `.jks`, `.pem` and `.p12` are known (so a
    /// `.pfx` or `.P12` file needs `ssl.*Store.type=PKCS12`, as in ZooKeeper).
    pub fn detect(explicit: Option<&str>, path: &Path) -> Option<StoreKind> {
        match explicit.filter(|t| !t.is_empty()) {
            Some(t) => match t.to_ascii_uppercase().as_str() {
                "JKS" => Some(StoreKind::Jks),
                "PEM" => Some(StoreKind::Pem),
                "PKCS12" => Some(StoreKind::Pkcs12),
                _ => None,
            },
            None => match path.extension()?.to_str()? {
                "jks" => Some(StoreKind::Jks),
                "pem" => Some(StoreKind::Pem),
                "p12" => Some(StoreKind::Pkcs12),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub key_store: StoreFile,
    pub trust_store: Option<StoreFile>,
    pub client_auth: ClientAuth,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path} ({key}.location): {message}")]
    Store { key: &'static str, path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What a keystore holds.
#[derive(Debug, Default)]
pub struct KeyMaterial {
    /// Private key with its certificate chain (leaf first).
    pub keys: Vec<(PrivateKeyDer<'static>, Vec<CertificateDer<'static>>)>,
    pub trusted: Vec<CertificateDer<'static>>,
}

fn load(store: &StoreFile) -> Result<KeyMaterial, TlsError> {
    let err = |message: String| TlsError::Store { key: store.key, path: store.path.clone(), message };
    let bytes = std::fs::read(&store.path).map_err(|e| err(format!("cannot read: {e}")))?;
    let password_hint = |e: String| if e.contains("wrong password") { format!("{e} (check {}.password)", store.key) } else { e };
    match store.kind {
        StoreKind::Jks => jks::parse(&bytes, &store.password).map_err(|e| err(password_hint(e.to_string()))),
        StoreKind::Pkcs12 => pkcs12::parse(&bytes, &store.password).map_err(|e| err(password_hint(e.to_string()))),
        StoreKind::Pem => parse_pem(&bytes).map_err(err),
    }
}

/// A PEM keystore: certificates, and a private key or none (then the
/// certificates are trust anchors). Public for the fuzz target.
#[doc(hidden)]
pub fn parse_pem(bytes: &[u8]) -> Result<KeyMaterial, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(bytes).collect::<Result<_, _>>().map_err(|e| format!("bad PEM certificate: {e}"))?;
    let mut m = KeyMaterial::default();
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(key) => m.keys.push((key, certs)),
        Err(_) => m.trusted = certs,
    }
    Ok(m)
}

/// Builds the acceptor for the secure client port.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let keys = load(&cfg.key_store)?;
    let (key, chain) = keys.keys.into_iter().next().ok_or_else(|| TlsError::Store {
        key: cfg.key_store.key,
        path: cfg.key_store.path.clone(),
        message: "no private key entry".into(),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match (&cfg.trust_store, cfg.client_auth) {
        (Some(ts), ClientAuth::Need | ClientAuth::Want) => {
            let mut roots = rustls::RootCertStore::empty();
            let trusted = load(ts)?;
            let certs: Vec<CertificateDer<'static>> = if trusted.trusted.is_empty() {
                trusted.keys.into_iter().flat_map(|(_, c)| c).collect()
            } else {
                trusted.trusted
            };
            for c in &certs {
                roots.add(c.clone()).map_err(|e| TlsError::Store { key: ts.key, path: ts.path.clone(), message: format!("bad CA: {e}") })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if cfg.client_auth == ClientAuth::Want { verifier.allow_unauthenticated() } else { verifier };
            let webpki = verifier
                .build()
                .map_err(|e| TlsError::Store { key: ts.key, path: ts.path.clone(), message: format!("client verifier: {e}") })?;
            builder.with_client_cert_verifier(Arc::new(V1TolerantVerifier {
                webpki,
                anchors: certs,
                mandatory: cfg.client_auth == ClientAuth::Need,
            }))
        }
        _ => builder.with_no_client_auth(),
    };
    // Not `with_single_cert`: it re-parses the leaf with webpki, which refuses
    // X.509 v1 certificates that Java (and so ZooKeeper) serves happily.
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Store { key: cfg.key_store.key, path: cfg.key_store.path.clone(), message: format!("unusable private key: {e}") })?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
    let config = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// webpki's client verifier, plus acceptance of X.509 v1 client certificates
/// (which webpki refuses and Java accepts) by checking their chain and
/// handshake signatures with [`super::x509`].
///
/// The fallback runs only when the END ENTITY is v1 or v2 and webpki refused
/// it; its chain is then validated as Java's PKIX does (`x509::verify_chain`:
/// every intermediate a CA, path length, key usage, names, validity). A v3
/// end entity is webpki's alone, so a v1 intermediate under it is refused
/// even in the one case Java takes (a v1 intermediate self-issued by the
/// trust anchor, for key rollover): stricter, and deliberately so, since it
/// keeps the hand-written path away from v3 clients.
#[derive(Debug)]
struct V1TolerantVerifier {
    webpki: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    anchors: Vec<CertificateDer<'static>>,
    mandatory: bool,
}

impl V1TolerantVerifier {
    fn is_v1(cert: &[u8]) -> bool {
        super::x509::parse(cert).is_some_and(|c| c.version < 3)
    }

    fn handshake(
        &self,
        result: Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        match result {
            Err(_) if Self::is_v1(cert) && super::x509::verify_handshake(cert, dss.scheme, message, dss.signature()) => {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            other => other,
        }
    }
}

impl rustls::server::danger::ClientCertVerifier for V1TolerantVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match self.webpki.verify_client_cert(end_entity, intermediates, now) {
            Err(_) if Self::is_v1(end_entity) => {
                let inter: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
                let anchors: Vec<&[u8]> = self.anchors.iter().map(|c| c.as_ref()).collect();
                if super::x509::verify_chain(end_entity, &inter, &anchors, i64::try_from(now.as_secs()).unwrap_or(i64::MAX)) {
                    Ok(rustls::server::danger::ClientCertVerified::assertion())
                } else {
                    Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
                }
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.handshake(self.webpki.verify_tls12_signature(message, cert, dss), message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.handshake(self.webpki.verify_tls13_signature(message, cert, dss), message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

pub mod jks {
    //! Java KeyStore (JKS) reading: `sun.security.provider.JavaKeyStore`
    //! and `KeyProtector`.

    use super::*;

    const MAGIC: u32 = 0xfeed_feed;
    /// `KeyProtector`'s algorithm identifier, 1.3.6.1.4.1.42.2.17.1.1.
    const KEY_PROTECTOR_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01];
    /// Entries at most read from one store, as a bound on hostile input.
    const ENTRIES_MAX: u32 = 10_000;

    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    pub enum JksError {
        #[error("not a JKS keystore (bad magic); set ssl.keyStore.type if it is PEM")]
        NotJks,
        #[error("unsupported JKS version {0}")]
        Version(u32),
        #[error("truncated keystore")]
        Truncated,
        #[error("keystore integrity check failed: wrong password or damaged file")]
        Integrity,
        #[error("cannot decrypt private key '{0}': wrong password")]
        KeyPassword(String),
        #[error("unsupported entry: {0}")]
        Unsupported(String),
    }

    struct Reader<'a> {
        buf: &'a [u8],
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], JksError> {
            if self.buf.len() < n {
                return Err(JksError::Truncated);
            }
            let (h, t) = self.buf.split_at(n);
            self.buf = t;
            Ok(h)
        }
        fn array<const N: usize>(&mut self) -> Result<[u8; N], JksError> {
            self.take(N)?.try_into().map_err(|_| JksError::Truncated)
        }
        fn u16(&mut self) -> Result<u16, JksError> {
            Ok(u16::from_be_bytes(self.array()?))
        }
        fn u32(&mut self) -> Result<u32, JksError> {
            Ok(u32::from_be_bytes(self.array()?))
        }
        fn utf(&mut self) -> Result<String, JksError> {
            let n = self.u16()? as usize;
            Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
        }
        fn blob(&mut self) -> Result<&'a [u8], JksError> {
            let n = self.u32()? as usize;
            self.take(n)
        }
    }

    /// Java's `char[]` password as bytes: UTF-16 big-endian, no BOM.
    fn password_bytes(password: &str) -> Vec<u8> {
        password.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    /// Reads one DER element of `tag`, returning its contents and the rest.
    fn der(tag: u8, buf: &[u8]) -> Result<(&[u8], &[u8]), JksError> {
        let bad = || JksError::Unsupported("malformed EncryptedPrivateKeyInfo".into());
        if buf.len() < 2 || buf[0] != tag {
            return Err(bad());
        }
        let (len, hdr) = match buf[1] {
            n if n < 0x80 => (n as usize, 2),
            0x81 if buf.len() > 2 => (buf[2] as usize, 3),
            0x82 if buf.len() > 3 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            0x83 if buf.len() > 4 => (u32::from_be_bytes([0, buf[2], buf[3], buf[4]]) as usize, 5),
            _ => return Err(bad()),
        };
        if buf.len() < hdr + len {
            return Err(bad());
        }
        Ok((&buf[hdr..hdr + len], &buf[hdr + len..]))
    }

    /// Decrypts a `KeyProtector`-protected key: salt(20) | data | check(20),
    /// data XOR a keystream of chained SHA-1(password | previous).
    fn unprotect(epki: &[u8], password: &[u8], alias: &str) -> Result<Vec<u8>, JksError> {
        let (seq, _) = der(0x30, epki)?;
        let (alg, rest) = der(0x30, seq)?;
        let (oid, _) = der(0x06, alg)?;
        if oid != KEY_PROTECTOR_OID {
            return Err(JksError::Unsupported(format!("key '{alias}' is not protected with JKS's KeyProtector")));
        }
        let (protected, _) = der(0x04, rest)?;
        if protected.len() < 40 {
            return Err(JksError::Truncated);
        }
        let (salt, rest) = protected.split_at(20);
        let (data, check) = rest.split_at(rest.len() - 20);
        let mut plain = Vec::with_capacity(data.len());
        let mut digest = salt.to_vec();
        while plain.len() < data.len() {
            let mut h = Sha1::new();
            h.update(password);
            h.update(&digest);
            digest = h.finalize().to_vec();
            for b in &digest {
                if plain.len() == data.len() {
                    break;
                }
                plain.push(data[plain.len()] ^ b);
            }
        }
        let mut h = Sha1::new();
        h.update(password);
        h.update(&plain);
        if h.finalize().as_slice() != check {
            return Err(JksError::KeyPassword(alias.to_owned()));
        }
        Ok(plain)
    }

    /// Parses a JKS keystore, checking its integrity digest with `password`.
    pub fn parse(bytes: &[u8], password: &str) -> Result<KeyMaterial, JksError> {
        if bytes.len() < 32 {
            return Err(JksError::Truncated);
        }
        let pw = password_bytes(password);
        let (body, digest) = bytes.split_at(bytes.len() - 20);
        let mut h = Sha1::new();
        h.update(&pw);
        h.update(b"Mighty Aphrodite");
        h.update(body);
        if h.finalize().as_slice() != digest {
            return Err(JksError::Integrity);
        }
        let mut r = Reader { buf: body };
        if r.u32()? != MAGIC {
            return Err(JksError::NotJks);
        }
        let version = r.u32()?;
        if version != 1 && version != 2 {
            return Err(JksError::Version(version));
        }
        let count = r.u32()?;
        if count > ENTRIES_MAX {
            return Err(JksError::Unsupported(format!("{count} entries")));
        }
        let mut m = KeyMaterial::default();
        let cert = |r: &mut Reader<'_>| -> Result<CertificateDer<'static>, JksError> {
            if version == 2 {
                let kind = r.utf()?;
                if kind != "X.509" {
                    return Err(JksError::Unsupported(format!("certificate type {kind}")));
                }
            }
            Ok(CertificateDer::from(r.blob()?.to_vec()))
        };
        for _ in 0..count {
            let tag = r.u32()?;
            let alias = r.utf()?;
            r.take(8)?; // creation time
            match tag {
                1 => {
                    let key = unprotect(r.blob()?, &pw, &alias)?;
                    let n = r.u32()?;
                    if n > ENTRIES_MAX {
                        return Err(JksError::Unsupported(format!("chain of {n}")));
                    }
                    let chain = (0..n).map(|_| cert(&mut r)).collect::<Result<Vec<_>, _>>()?;
                    m.keys.push((PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)), chain));
                }
                2 => m.trusted.push(cert(&mut r)?),
                t => return Err(JksError::Unsupported(format!("entry tag {t} ('{alias}')"))),
            }
        }
        Ok(m)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rejects_garbage_and_wrong_passwords() {
            assert_eq!(parse(&[0; 10], "x").unwrap_err(), JksError::Truncated);
            assert_eq!(parse(&[0; 64], "x").unwrap_err(), JksError::Integrity);
            // A well-formed empty store.
            let mut body = Vec::new();
            body.extend_from_slice(&MAGIC.to_be_bytes());
            body.extend_from_slice(&2u32.to_be_bytes());
            body.extend_from_slice(&0u32.to_be_bytes());
            let mut h = Sha1::new();
            h.update(password_bytes("pw"));
            h.update(b"Mighty Aphrodite");
            h.update(&body);
            let mut store = body.clone();
            store.extend_from_slice(&h.finalize());
            let m = parse(&store, "pw").unwrap();
            assert!(m.keys.is_empty() && m.trusted.is_empty());
            assert_eq!(parse(&store, "other").unwrap_err(), JksError::Integrity);
        }

        #[test]
        fn key_protector_round_trip() {
            // Protect a key the way KeyProtector does, then unprotect it.
            let pw = password_bytes("secret");
            let plain: Vec<u8> = (0..77u8).collect();
            let salt = [7u8; 20];
            let mut stream = Vec::new();
            let mut digest = salt.to_vec();
            while stream.len() < plain.len() {
                let mut h = Sha1::new();
                h.update(&pw);
                h.update(&digest);
                digest = h.finalize().to_vec();
                stream.extend_from_slice(&digest);
            }
            let mut protected = salt.to_vec();
            protected.extend(plain.iter().zip(&stream).map(|(a, b)| a ^ b));
            let mut h = Sha1::new();
            h.update(&pw);
            h.update(&plain);
            protected.extend_from_slice(&h.finalize());
            let mut alg = vec![0x06, KEY_PROTECTOR_OID.len() as u8];
            alg.extend_from_slice(KEY_PROTECTOR_OID);
            alg.extend_from_slice(&[0x05, 0x00]);
            let mut seq = vec![0x30, alg.len() as u8];
            seq.extend(alg);
            seq.extend_from_slice(&[0x04, 0x81, protected.len() as u8]);
            seq.extend(protected);
            let mut epki = vec![0x30, 0x81, seq.len() as u8];
            epki.extend(seq);
            assert_eq!(unprotect(&epki, &pw, "k").unwrap(), plain);
            assert_eq!(unprotect(&epki, &password_bytes("nope"), "k").unwrap_err(), JksError::KeyPassword("k".into()));
        }
    }
}

pub mod pkcs12 {
    //! PKCS#12 keystores (`ssl.*Store.type=PKCS12`): the bags are decoded,
    //! MAC-checked and decrypted by `p12-keystore`; this module makes key
    //! entries and trust anchors of them as Java's `PKCS12KeyStore` and
    //! `TrustStoreUtil` do.
    //!
    //! - A private key's certificate is the certificate bag with the same
    //!   `localKeyId`; its chain continues through the bags whose subject is
    //!   the previous issuer, up to a self-signed one.
    //! - Trust anchors are the certificate bags with Java's trusted-key-usage
    //!   attribute (`keytool -importcert` writes it). A store with no private
    //!   key and no such bag, as `openssl pkcs12 -export -nokeys` writes
    //!   (before OpenSSL 3.2's `-jdktrust`), has all its certificates taken
    //!   as anchors: Java would load it as an empty truststore and refuse
    //!   every client, which is never what its operator meant.

    use super::*;
    use p12_keystore::error::Error as P12Error;
    use p12_keystore::{CertificateBag, Pkcs12Archive};

    /// Bags at most taken from one store, as a bound on chain building.
    const BAGS_MAX: usize = 10_000;

    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    pub enum Pkcs12Error {
        #[error("not a PKCS#12 keystore, or a damaged one ({0}); set the store's .type if it is JKS or PEM")]
        Malformed(String),
        #[error("keystore integrity check failed: wrong password or damaged file")]
        Integrity,
        #[error("cannot decrypt the keystore: wrong password or damaged file")]
        Decrypt,
        #[error("unsupported PKCS#12 keystore: {0}")]
        Unsupported(String),
        #[error("private key '{0}' has no certificate in the keystore")]
        NoCertificate(String),
        #[error("keystore has {0} entries, more than {BAGS_MAX}")]
        TooLarge(usize),
    }

    fn error(e: P12Error) -> Pkcs12Error {
        match e {
            P12Error::MacError(_) => Pkcs12Error::Integrity,
            P12Error::UnpadError | P12Error::InvalidPrivateKey | P12Error::Pkcs5Error(_) => Pkcs12Error::Decrypt,
            P12Error::InvalidVersion
            | P12Error::UnsupportedContentType
            | P12Error::UnsupportedCertificateType
            | P12Error::UnsupportedEncryptionScheme
            | P12Error::UnsupportedMacAlgorithm => Pkcs12Error::Unsupported(e.to_string()),
            other => Pkcs12Error::Malformed(other.to_string()),
        }
    }

    /// Reads a PKCS#12 keystore with `password` (Java's store password, which
    /// also protects the keys, as `keytool` and ZooKeeper use it).
    pub fn parse(bytes: &[u8], password: &str) -> Result<KeyMaterial, Pkcs12Error> {
        let archive = Pkcs12Archive::from_pkcs12(bytes, password).map_err(error)?;
        let bags = archive.keys.len() + archive.certs.len();
        if bags > BAGS_MAX {
            return Err(Pkcs12Error::TooLarge(bags));
        }
        let mut m = KeyMaterial::default();
        for key in &archive.keys {
            let name = key.friendly_name.clone().unwrap_or_default();
            let leaf = archive
                .certs
                .iter()
                .find(|c| key.local_key_id.as_ref().is_some_and(|id| c.local_key_id.as_deref() == Some(id.as_ref())))
                .or_else(|| archive.certs.iter().find(|c| key.friendly_name.is_some() && c.friendly_name == key.friendly_name))
                .ok_or(Pkcs12Error::NoCertificate(name))?;
            let chain = chain(leaf, &archive.certs).into_iter().map(|c| CertificateDer::from(c.cert.as_der().to_vec())).collect();
            m.keys.push((PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.as_der().to_vec())), chain));
        }
        let anchors = |all: bool| {
            archive
                .certs
                .iter()
                .filter(|c| c.local_key_id.is_none() && (all || c.trusted))
                .map(|c| CertificateDer::from(c.cert.as_der().to_vec()))
                .collect::<Vec<_>>()
        };
        m.trusted = anchors(false);
        if m.trusted.is_empty() && m.keys.is_empty() {
            m.trusted = anchors(true);
        }
        Ok(m)
    }

    /// `leaf`, then its issuers among `certs` (by subject name), ending at a
    /// self-signed certificate, a missing issuer or a repeat.
    fn chain<'a>(leaf: &'a CertificateBag, certs: &'a [CertificateBag]) -> Vec<&'a CertificateBag> {
        let mut chain = vec![leaf];
        let mut at = leaf;
        // Each step adds a distinct bag, so this ends within certs.len() steps.
        while at.cert.issuer() != at.cert.subject() {
            let next = certs.iter().find(|c| c.cert.subject() == at.cert.issuer() && !chain.iter().any(|p| p.cert == c.cert));
            match next {
                Some(n) => {
                    chain.push(n);
                    at = n;
                }
                None => break,
            }
        }
        chain
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn garbage_is_an_error_not_a_panic() {
            for bytes in [&b""[..], &[0x30, 0x80][..], &[0x30, 0x03, 0x02, 0x01, 0x03][..], &[0xff; 64][..]] {
                assert!(matches!(parse(bytes, "pw"), Err(Pkcs12Error::Malformed(_) | Pkcs12Error::Unsupported(_))), "{bytes:?}");
            }
        }
    }
}
