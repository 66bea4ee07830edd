//! Test certificates, made fresh in every test with rcgen, and a small
//! blocking TLS client (rustls) that speaks RESP.
//!
//! Included with `#[path]` by the tests that need TLS, not by `mod.rs`.
//! Each of them uses a part (as with `mod.rs`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate authority that signs test certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `localhost` and 127.0.0.1, good for a server and
    /// for a client, signed by this CA.
    pub fn issue(&self, name: &str) -> Issued {
        let sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Files of one node's TLS material in `dir`: `ca.crt`, `node.crt`,
/// `node.key`.
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Files {
    /// Writes `ca`'s certificate and a node certificate it issues to `dir`.
    pub fn write(dir: &Path, ca: &Ca) -> Files {
        std::fs::create_dir_all(dir).unwrap();
        let node = ca.issue("ringkv node");
        let files = Files {
            ca: dir.join("ca.crt"),
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
        };
        std::fs::write(&files.ca, ca.pem()).unwrap();
        std::fs::write(&files.cert, node.cert).unwrap();
        std::fs::write(&files.key, node.key).unwrap();
        files
    }
}

/// A blocking RESP client over TLS.
pub struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsClient {
    /// Connects to `addr`, trusting `ca_pem`, presenting `identity` if
    /// given; `Err` with rustls' or the socket's reason if the handshake
    /// fails.
    pub fn connect(
        addr: &str,
        ca_pem: &str,
        identity: Option<&Issued>,
    ) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some(id) => {
                let certs = CertificateDer::pem_slice_iter(id.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = TlsClient {
            stream: rustls::StreamOwned::new(conn, sock),
        };
        // TLS 1.3 reports a refused client certificate only on the first
        // read, so the handshake is judged by a first command.
        match client.cmd(&["PING"]) {
            Ok(reply) if reply == "+PONG\r\n" => Ok(client),
            Ok(reply) => Err(format!("PING answered {reply:?}")),
            Err(e) => Err(e),
        }
    }

    /// Sends `args` as a RESP array; the raw reply (one read).
    pub fn cmd(&mut self, args: &[&str]) -> Result<String, String> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream
            .write_all(out.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}
