//! TLS on `secureClientPort`: JKS and PKCS#12 keystores made by the JDK's
//! `keytool` (the formats ZooKeeper deployments have), PEM and PKCS#12 ones
//! made by `openssl`, a verified handshake, the ZooKeeper handshake inside
//! it, and a refused client when a certificate is required.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use corral_tests::Corral;
use protocol::{ConnectRequest, ConnectResponse, Jute};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer, pki_types::ServerName};

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run tool");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A self-signed server certificate for 127.0.0.1 in a JKS keystore, and its certificate as PEM.
fn keytool_store(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let jks = dir.join("server.jks");
    let pem = dir.join("server-cert.pem");
    run(Command::new("keytool").args(["-genkeypair", "-alias", "corral", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=127.0.0.1", "-ext", "SAN=ip:127.0.0.1", "-validity", "2", "-storetype", "JKS", "-storepass", "storepw", "-keypass", "storepw", "-keystore"]).arg(&jks));
    run(Command::new("keytool").args(["-exportcert", "-rfc", "-alias", "corral", "-storepass", "storepw", "-keystore"]).arg(&jks).arg("-file").arg(&pem));
    (jks, pem)
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

fn client_config_builder(ca_pem: &Path) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
}

/// A TLS session, optionally with a client certificate (cert PEM, key PEM).
async fn tls_session(addr: std::net::SocketAddr, ca_pem: &Path, client: Option<(&Path, &Path)>) -> std::io::Result<(Tls, ConnectResponse)> {
    let builder = client_config_builder(ca_pem);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            // Not `with_client_auth_cert`: it parses the certificate with
            // webpki, which refuses X.509 v1 (Java clients send them).
            let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
            builder.with_client_cert_resolver(Arc::new(Present(Arc::new(rustls::sign::CertifiedKey::new(chain, signer)))))
        }
    };
    tls_session_with(addr, config).await
}

async fn tls_session_with(addr: std::net::SocketAddr, config: rustls::ClientConfig) -> std::io::Result<(Tls, ConnectResponse)> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await?;
    let req = ConnectRequest { time_out: 10_000, passwd: vec![0; 16], read_only: Some(false), ..Default::default() };
    send(&mut tls, &req.to_bytes()).await?;
    let reply = recv(&mut tls).await?;
    Ok((tls, ConnectResponse::from_bytes(&reply).unwrap()))
}

async fn send(tls: &mut Tls, body: &[u8]) -> std::io::Result<()> {
    tls.write_all(&(body.len() as u32).to_be_bytes()).await?;
    tls.write_all(body).await
}

async fn recv(tls: &mut Tls) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).await?;
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    tls.read_exact(&mut reply).await?;
    Ok(reply)
}

async fn tls_handshake(addr: std::net::SocketAddr, ca_pem: &Path) -> std::io::Result<ConnectResponse> {
    Ok(tls_session(addr, ca_pem, None).await?.1)
}

/// Sends a request on a TLS session; returns the reply header and body.
async fn call(tls: &mut Tls, xid: i32, req: &protocol::Request) -> (protocol::ReplyHeader, Vec<u8>) {
    let mut v = Vec::new();
    protocol::RequestHeader { xid, r#type: req.op_code().as_i32() }.encode(&mut v);
    req.encode_body(&mut v);
    send(tls, &v).await.unwrap();
    let f = recv(tls).await.unwrap();
    let mut b = &f[..];
    let h = protocol::ReplyHeader::decode(&mut b).unwrap();
    (h, b.to_vec())
}

fn secure_addr(server: &Corral) -> std::net::SocketAddr {
    let line = server.stdout_line("corral listening (TLS) on ").expect("TLS listener announced");
    line.parse().unwrap()
}

#[tokio::test]
async fn jks_keystore_from_keytool_serves_tls() {
    let dir = std::env::temp_dir().join(format!("corral-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (jks, pem) = keytool_store(&dir);
    let server = Corral::start_with(&format!(
        "secureClientPort=0\nssl.keyStore.location={}\nssl.keyStore.password=storepw\nssl.clientAuth=none",
        jks.display()
    ));
    let addr = secure_addr(&server);
    let resp = tokio::time::timeout(Duration::from_secs(10), tls_handshake(addr, &pem)).await.unwrap().unwrap();
    assert_ne!(resp.session_id, 0);
    assert!(resp.time_out > 0);
    // The plain port still serves.
    assert_eq!(server.four_letter("ruok"), "imok");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn pem_keystore_and_required_client_certificates() {
    let dir = std::env::temp_dir().join(format!("corral-tls-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    run(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout"]).arg(&key).arg("-out").arg(&cert));
    let both = dir.join("server.pem");
    std::fs::write(&both, [std::fs::read(&key).unwrap(), std::fs::read(&cert).unwrap()].concat()).unwrap();

    let server = Corral::start_with(&format!("secureClientPort=0\nssl.keyStore.location={}\nssl.clientAuth=none", both.display()));
    let resp = tls_handshake(secure_addr(&server), &cert).await.unwrap();
    assert_ne!(resp.session_id, 0);
    drop(server);

    // ssl.clientAuth=need (ZooKeeper's default): a client without a certificate gets no session.
    let strict = Corral::start_with(&format!(
        "secureClientPort=0\nssl.keyStore.location={}\nssl.trustStore.location={}",
        both.display(),
        cert.display()
    ));
    let refused = tokio::time::timeout(Duration::from_secs(10), tls_handshake(secure_addr(&strict), &cert)).await.unwrap();
    assert!(refused.is_err(), "a client without a certificate must be refused");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_keystore_password_is_a_clear_startup_error() {
    let dir = std::env::temp_dir().join(format!("corral-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (jks, _) = keytool_store(&dir);
    let cfg = dir.join("zoo.cfg");
    std::fs::write(&cfg, format!("dataDir={}\nclientPort=0\nsecureClientPort=0\nssl.keyStore.location={}\nssl.keyStore.password=wrong\n", dir.join("data").display(), jks.display())).unwrap();
    let out = Command::new(corral_tests::corral_bin()).arg("server").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.jks") && err.contains("wrong password"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn client_certificates_are_x509_identities_for_acls() {
    let dir = std::env::temp_dir().join(format!("corral-tls-x509-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n);
    // A CA, a server certificate and a client certificate issued by it.
    run(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Corral Test CA", "-keyout"]).arg(p("ca.key")).arg("-out").arg(p("ca.pem")));
    for (name, subj, ext) in [("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"), ("client", "/O=Corral Test/CN=alice", "keyUsage=digitalSignature")] {
        run(Command::new("openssl").args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout"]).arg(p(&format!("{name}.key"))).arg("-out").arg(p(&format!("{name}.csr"))));
        std::fs::write(p(&format!("{name}.ext")), format!("{ext}\nbasicConstraints=CA:FALSE\n")).unwrap();
        run(Command::new("openssl").args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"]).arg(p(&format!("{name}.csr"))).arg("-CA").arg(p("ca.pem")).arg("-CAkey").arg(p("ca.key")).arg("-extfile").arg(p(&format!("{name}.ext"))).arg("-out").arg(p(&format!("{name}.pem"))));
    }
    std::fs::write(p("server-all.pem"), [std::fs::read(p("server.key")).unwrap(), std::fs::read(p("server.pem")).unwrap()].concat()).unwrap();
    let server = Corral::start_with(&format!(
        "secureClientPort=0\nssl.keyStore.location={}\nssl.trustStore.location={}\nssl.clientAuth=need",
        p("server-all.pem").display(),
        p("ca.pem").display()
    ));
    let addr = secure_addr(&server);
    let (mut tls, resp) = tls_session(addr, &p("ca.pem"), Some((&p("client.pem"), &p("client.key")))).await.unwrap();
    assert_ne!(resp.session_id, 0);
    let (h, body) = call(&mut tls, 1, &protocol::Request::WhoAmI).await;
    assert_eq!(h.err, 0);
    let who = protocol::WhoAmIResponse::from_bytes(&body).unwrap();
    let x509: Vec<_> = who.client_info.iter().filter(|c| c.auth_scheme == "x509").map(|c| c.user.as_str()).collect();
    assert_eq!(x509, vec!["CN=alice,O=Corral Test"], "RFC 2253 subject, as Java's X500Principal.getName()");

    let acl = vec![protocol::Acl { perms: 31, id: protocol::Id { scheme: "x509".into(), id: "CN=alice,O=Corral Test".into() } }];
    let create = protocol::Request::Create(protocol::CreateRequest { path: "/alice".into(), data: Some(b"a".to_vec()), acl, flags: 0 });
    assert_eq!(call(&mut tls, 2, &create).await.0.err, 0);
    let get = protocol::Request::GetData(protocol::GetDataRequest { path: "/alice".into(), watch: false });
    assert_eq!(call(&mut tls, 3, &get).await.0.err, 0);
    // Over the plain port there is no certificate, so no access.
    let mut plain = corral_tests::Raw::connect(server.addr);
    plain.handshake();
    assert_eq!(plain.call(1, &get).0.err, protocol::ErrorCode::NoAuth.as_i32());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An openssl PKI in `dir`: `ca.pem`/`ca.key` (v3, CA:TRUE), a server
/// certificate for 127.0.0.1 with its key in `server-all.pem`, and
/// `alice.pem`/`alice.key`, an ordinary v3 client certificate (CA:FALSE,
/// digitalSignature, clientAuth) the CA issued.
fn openssl_pki(dir: &Path) {
    let p = |n: &str| dir.join(n);
    run(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Corral Test CA", "-keyout"]).arg(p("ca.key")).arg("-out").arg(p("ca.pem")));
    issue(dir, "server", "/CN=127.0.0.1", Some("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE"), "ca");
    issue(dir, "alice", "/O=Corral Test/CN=alice", Some("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth"), "ca");
    std::fs::write(p("server-all.pem"), [std::fs::read(p("server.key")).unwrap(), std::fs::read(p("server.pem")).unwrap()].concat()).unwrap();
}

/// `NAME.key` and `NAME.pem` with `subject`, issued by `issuer` (`ISSUER.pem`
/// and `ISSUER.key`, whatever that certificate is). Without `ext`, openssl
/// makes an X.509 v1 certificate.
fn issue(dir: &Path, name: &str, subject: &str, ext: Option<&str>, issuer: &str) {
    let p = |n: String| dir.join(n);
    run(Command::new("openssl").args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout"]).arg(p(format!("{name}.key"))).arg("-out").arg(p(format!("{name}.csr"))));
    let mut cmd = Command::new("openssl");
    cmd.args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"]).arg(p(format!("{name}.csr")));
    cmd.arg("-CA").arg(p(format!("{issuer}.pem"))).arg("-CAkey").arg(p(format!("{issuer}.key"))).arg("-out").arg(p(format!("{name}.pem")));
    if let Some(ext) = ext {
        std::fs::write(p(format!("{name}.ext")), format!("{ext}\n")).unwrap();
        cmd.arg("-extfile").arg(p(format!("{name}.ext")));
    }
    run(&mut cmd);
    let text = Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(p(format!("{name}.pem"))).output().unwrap();
    let version = if ext.is_some() { "Version: 3 (0x2)" } else { "Version: 1 (0x0)" };
    assert!(String::from_utf8_lossy(&text.stdout).contains(version), "{name}: expected {version}");
}

fn concat(dir: &Path, out: &str, parts: &[&str]) {
    let bytes: Vec<u8> = parts.iter().flat_map(|n| std::fs::read(dir.join(n)).unwrap()).collect();
    std::fs::write(dir.join(out), bytes).unwrap();
}

async fn who_am_i(tls: &mut Tls) -> Vec<(String, String)> {
    let (h, body) = call(tls, 1, &protocol::Request::WhoAmI).await;
    assert_eq!(h.err, 0);
    protocol::WhoAmIResponse::from_bytes(&body).unwrap().client_info.into_iter().map(|c| (c.auth_scheme, c.user)).collect()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f).await.expect("timed out")
}

const ADMIN: &str = "CN=admin,O=Corral Test";

/// Issue 14: the holder of an ordinary client certificate signs a v1 (or v3)
/// certificate naming the superUser with its own key; Corral must refuse
/// the chain [forged, own], as Java's PKIX does (the issuer is no CA). The
/// superUser's real certificate, a v1 one from the CA, is super.
#[tokio::test]
async fn forged_superuser_certificates_are_refused_and_the_real_one_is_super() {
    let dir = std::env::temp_dir().join(format!("corral-tls-forge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n);
    openssl_pki(&dir);
    issue(&dir, "forged-v1", "/O=Corral Test/CN=admin", None, "alice");
    issue(&dir, "forged-v3", "/O=Corral Test/CN=admin", Some("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth"), "alice");
    issue(&dir, "admin", "/O=Corral Test/CN=admin", None, "ca");
    concat(&dir, "forged-v1-chain.pem", &["forged-v1.pem", "alice.pem"]);
    concat(&dir, "forged-v3-chain.pem", &["forged-v3.pem", "alice.pem"]);

    let server = Corral::start_with(&format!(
        "secureClientPort=0\nssl.keyStore.location={}\nssl.trustStore.location={}\nssl.clientAuth=need\nX509AuthenticationProvider.superUser={ADMIN}",
        p("server-all.pem").display(),
        p("ca.pem").display()
    ));
    let addr = secure_addr(&server);

    for forged in ["forged-v1", "forged-v3"] {
        let r = within(tls_session(addr, &p("ca.pem"), Some((&p(&format!("{forged}-chain.pem")), &p(&format!("{forged}.key")))))).await;
        if let Ok((mut tls, _)) = r {
            panic!("{forged}: a certificate signed by a client's own key got a session: {:?}", who_am_i(&mut tls).await);
        }
    }

    // The real superUser certificate (v1, issued by the CA): super.
    let (mut tls, resp) = within(tls_session(addr, &p("ca.pem"), Some((&p("admin.pem"), &p("admin.key"))))).await.unwrap();
    assert_ne!(resp.session_id, 0);
    let ids = who_am_i(&mut tls).await;
    assert!(ids.contains(&("super".into(), ADMIN.into())), "{ids:?}");
    assert!(ids.contains(&("x509".into(), ADMIN.into())), "{ids:?}");

    // An ordinary client is itself, not super.
    let (mut tls, _) = within(tls_session(addr, &p("ca.pem"), Some((&p("alice.pem"), &p("alice.key"))))).await.unwrap();
    let ids = who_am_i(&mut tls).await;
    assert!(ids.iter().all(|(scheme, _)| scheme != "super"), "{ids:?}");
    assert!(ids.contains(&("x509".into(), "CN=alice,O=Corral Test".into())), "{ids:?}");
    assert!(server.log().lines().all(|l| !l.contains("panicked")), "{}", server.log());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Presents a fixed certificate chain whatever the server asks, without the
/// checks `with_client_auth_cert` makes on it.
#[derive(Debug)]
struct Present(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Present {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Replaces the first `needle` in `der` by `with` (same length).
fn patch(der: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let at = der.windows(needle.len()).position(|w| w == needle).expect("needle in certificate");
    let mut out = der.to_vec();
    out[at..at + with.len()].copy_from_slice(with);
    out
}

/// Issue 14: a certificate with a non-ASCII byte in its validity (or version
/// 255) panicked the connection task before authentication, and the panic
/// leaked the address's maxClientCnxns slot: maxClientCnxns such handshakes
/// locked the address out of both ports. Now they are refused, and the
/// address can still connect.
#[tokio::test]
async fn hostile_certificates_neither_panic_nor_lock_out_the_address() {
    const MAX: usize = 3;
    let dir = std::env::temp_dir().join(format!("corral-tls-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n);
    openssl_pki(&dir);
    let server = Corral::start_with(&format!(
        "maxClientCnxns={MAX}\nsecureClientPort=0\nssl.keyStore.location={}\nssl.trustStore.location={}\nssl.clientAuth=need",
        p("server-all.pem").display(),
        p("ca.pem").display()
    ));
    let addr = secure_addr(&server);

    let alice = CertificateDer::from_pem_file(p("alice.pem")).unwrap().to_vec();
    let utc = alice.windows(2).position(|w| w == [0x17, 0x0d]).expect("a UTCTime validity");
    // "YYMMDD...": a two-byte character across the old code's s[..2] boundary.
    let mut non_ascii = alice.clone();
    non_ascii[utc + 3..utc + 5].copy_from_slice("é".as_bytes());
    let version_255 = patch(&alice, &[0xa0, 0x03, 0x02, 0x01, 0x02], &[0xa0, 0x03, 0x02, 0x01, 0xff]);
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(p("alice.key")).unwrap();
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();

    for (what, cert) in [("non-ASCII validity", non_ascii), ("version 255", version_255)] {
        for attempt in 0..2 * MAX {
            let presented = rustls::sign::CertifiedKey::new(vec![CertificateDer::from(cert.clone())], signer.clone());
            let config = client_config_builder(&p("ca.pem")).with_client_cert_resolver(Arc::new(Present(Arc::new(presented))));
            let r = tokio::time::timeout(Duration::from_secs(10), tls_session_with(addr, config)).await.unwrap();
            assert!(r.is_err(), "{what}, attempt {attempt}: a malformed certificate got a session");
        }
    }
    // Wait for the server to have closed every refused connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.four_letter("ruok") != "imok" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The address is not locked out: the plain port and the TLS port serve it.
    assert_eq!(server.four_letter("ruok"), "imok", "the plain port refuses this address");
    let (mut tls, resp) = tokio::time::timeout(Duration::from_secs(10), tls_session(addr, &p("ca.pem"), Some((&p("alice.pem"), &p("alice.key")))))
        .await
        .unwrap()
        .expect("a good client from the same address");
    assert_ne!(resp.session_id, 0);
    assert!(!who_am_i(&mut tls).await.is_empty());
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A self-signed server certificate for 127.0.0.1 in a PKCS#12 keystore made
/// by JDK 17's `keytool` (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC, HMAC-SHA256
/// MAC), and its certificate as PEM.
fn keytool_pkcs12(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let store = dir.join(name);
    let pem = dir.join("server-cert.pem");
    run(Command::new("keytool").args(["-genkeypair", "-alias", "corral", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=127.0.0.1", "-ext", "SAN=ip:127.0.0.1", "-validity", "2", "-storetype", "PKCS12", "-storepass", "storepw", "-keystore"]).arg(&store));
    run(Command::new("keytool").args(["-exportcert", "-rfc", "-alias", "corral", "-storepass", "storepw", "-keystore"]).arg(&store).arg("-file").arg(&pem));
    let info = Command::new("openssl").args(["pkcs12", "-info", "-noout", "-passin", "pass:storepw", "-in"]).arg(&store).output().unwrap();
    let info = String::from_utf8_lossy(&info.stderr);
    assert!(info.contains("AES-256-CBC") && info.contains("MAC: sha256"), "keytool's default PKCS#12 algorithms changed: {info}");
    (store, pem)
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("corral-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `keytool -genkeypair -storetype PKCS12` (the JDK's default keystore type),
/// its type inferred from the `.p12` extension as ZooKeeper's `KeyStoreFileType` does.
#[tokio::test]
async fn pkcs12_keystore_from_keytool_serves_tls() {
    let dir = fresh_dir("p12");
    let (p12, pem) = keytool_pkcs12(&dir, "server.p12");
    let server = Corral::start_with(&format!("secureClientPort=0\nssl.keyStore.location={}\nssl.keyStore.password=storepw\nssl.clientAuth=none", p12.display()));
    let resp = within(tls_handshake(secure_addr(&server), &pem)).await.unwrap();
    assert_ne!(resp.session_id, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// mTLS with PKCS#12 on both sides: a keystore from `openssl pkcs12 -export`
/// (OpenSSL 3's defaults: PBES2/AES-256, SHA-256 MAC) holding the server key
/// and its chain, and a truststore from `keytool -importcert` (a trusted
/// certificate entry, Java's trusted-key-usage attribute) holding the CA.
/// A truststore from `openssl pkcs12 -nokeys` (no such attribute) works too.
#[tokio::test]
async fn pkcs12_truststore_verifies_client_certificates() {
    let dir = fresh_dir("p12-mtls");
    let p = |n: &str| dir.join(n);
    openssl_pki(&dir);
    run(Command::new("openssl").args(["pkcs12", "-export", "-name", "server", "-passout", "pass:keypw", "-inkey"]).arg(p("server.key")).arg("-in").arg(p("server.pem")).arg("-certfile").arg(p("ca.pem")).arg("-out").arg(p("server.p12")));
    run(Command::new("keytool").args(["-importcert", "-noprompt", "-alias", "ca", "-storetype", "PKCS12", "-storepass", "trustpw", "-file"]).arg(p("ca.pem")).arg("-keystore").arg(p("trust.p12")));
    run(Command::new("openssl").args(["pkcs12", "-export", "-nokeys", "-passout", "pass:trustpw", "-in"]).arg(p("ca.pem")).arg("-out").arg(p("trust-openssl.p12")));

    for truststore in ["trust.p12", "trust-openssl.p12"] {
        let server = Corral::start_with(&format!(
            "secureClientPort=0\nssl.keyStore.location={}\nssl.keyStore.password=keypw\nssl.trustStore.location={}\nssl.trustStore.password=trustpw\nssl.clientAuth=need",
            p("server.p12").display(),
            p(truststore).display()
        ));
        let addr = secure_addr(&server);
        let (mut tls, resp) = within(tls_session(addr, &p("ca.pem"), Some((&p("alice.pem"), &p("alice.key"))))).await.unwrap();
        assert_ne!(resp.session_id, 0, "{truststore}");
        assert!(who_am_i(&mut tls).await.contains(&("x509".into(), "CN=alice,O=Corral Test".into())), "{truststore}");
        let refused = within(tls_handshake(addr, &p("ca.pem"))).await;
        assert!(refused.is_err(), "{truststore}: a client without a certificate must be refused");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Stores from `openssl pkcs12 -export`: the legacy algorithms (RC2-40 for
/// the certificates, 3DES for the key, a SHA-1 MAC), as OpenSSL 1.x and old
/// JDKs wrote them, and OpenSSL 3's defaults; `.pfx` needs the type key.
#[tokio::test]
async fn openssl_pkcs12_stores_load_with_legacy_and_default_algorithms() {
    let dir = fresh_dir("p12-openssl");
    let p = |n: &str| dir.join(n);
    openssl_pki(&dir);
    for (name, extra) in [("legacy.pfx", &["-legacy"][..]), ("default.pfx", &[][..])] {
        run(Command::new("openssl").args(["pkcs12", "-export", "-passout", "pass:pw"]).args(extra).arg("-inkey").arg(p("server.key")).arg("-in").arg(p("server.pem")).arg("-out").arg(p(name)));
        let info = Command::new("openssl").args(["pkcs12", "-info", "-noout", "-passin", "pass:pw"]).args(extra).arg("-in").arg(p(name)).output().unwrap();
        let info = String::from_utf8_lossy(&info.stderr);
        let expected = if extra.is_empty() { "AES-256-CBC" } else { "pbeWithSHA1And40BitRC2-CBC" };
        assert!(info.contains(expected), "{name}: {info}");
        let server = Corral::start_with(&format!("secureClientPort=0\nssl.keyStore.location={}\nssl.keyStore.password=pw\nssl.keyStore.type=PKCS12\nssl.clientAuth=none", p(name).display()));
        let resp = within(tls_handshake(secure_addr(&server), &p("ca.pem"))).await.unwrap();
        assert_ne!(resp.session_id, 0, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A wrong password, a damaged file, a JKS file called `.p12` and a `.pfx`
/// without `ssl.keyStore.type`: start-up fails with the file, the setting
/// and what is wrong.
#[test]
fn bad_pkcs12_keystores_are_clear_startup_errors() {
    let dir = fresh_dir("p12-bad");
    let (p12, _) = keytool_pkcs12(&dir, "server.p12");
    let mut damaged = std::fs::read(&p12).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x55;
    std::fs::write(dir.join("damaged.p12"), &damaged).unwrap();
    let (jks, _) = keytool_store(&dir);
    std::fs::copy(&jks, dir.join("really-jks.p12")).unwrap();
    std::fs::copy(&p12, dir.join("server.pfx")).unwrap();
    let cases = [
        ("server.p12", "wrong", "wrong password"),
        ("damaged.p12", "storepw", "damaged"),
        ("really-jks.p12", "storepw", "not a PKCS#12 keystore"),
        ("server.pfx", "storepw", "ssl.keyStore.type"),
    ];
    for (file, password, expected) in cases {
        let cfg = dir.join("zoo.cfg");
        std::fs::write(&cfg, format!("dataDir={}\nclientPort=0\nsecureClientPort=0\nssl.keyStore.location={}\nssl.keyStore.password={password}\n", dir.join("data").display(), dir.join(file).display())).unwrap();
        let out = Command::new(corral_tests::corral_bin()).arg("server").arg(&cfg).output().unwrap();
        assert!(!out.status.success(), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file) && err.contains(expected), "{file}: expected {expected:?} in\n{err}");
        assert!(err.contains("ssl.keyStore"), "{file}: the setting is named\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
