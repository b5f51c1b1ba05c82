//! TLS on `secureClientPort`: a JKS keystore made by the JDK's `keytool`
//! (the format ZooKeeper deployments have) and a PEM keystore made by
//! `openssl`, a verified handshake, the ZooKeeper handshake inside it, and a
//! refused client when a certificate is required.

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

async fn tls_handshake(addr: std::net::SocketAddr, ca_pem: &Path) -> std::io::Result<ConnectResponse> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await?;
    let req = ConnectRequest { time_out: 10_000, passwd: vec![0; 16], read_only: Some(false), ..Default::default() };
    let body = req.to_bytes();
    tls.write_all(&(body.len() as u32).to_be_bytes()).await?;
    tls.write_all(&body).await?;
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).await?;
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    tls.read_exact(&mut reply).await?;
    Ok(ConnectResponse::from_bytes(&reply).unwrap())
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
