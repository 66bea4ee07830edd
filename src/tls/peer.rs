//! Mutual TLS between nodes (`tls_peers = true`): every peer connection,
//! both ways, is TLS, and each side must present a certificate that chains
//! to the cluster's CA (`tls_ca_cert_file`), in addition to the HMAC proof
//! of the cluster secret that follows inside it. A node whose certificate
//! another CA signed fails the TLS handshake, so it never gets as far as a
//! heartbeat and never appears up.
//!
//! The CA is what is checked, not the name in the certificate: peers reach
//! each other by whatever address they were given (an IP, a pod's DNS
//! name), and a node's name is proven by the handshake that follows. A
//! certificate the CA signed for any name is accepted from any address;
//! keep the CA for the cluster alone.
//!
//! Both configs are rebuilt together from the files on SIGHUP and when a
//! file changes (see [`super::reload_loop`]); links already up keep their
//! session.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;
use tracing::{info, warn};

use super::{file_err, load_certs, load_key, load_roots, provider, versions, Reload, Watched};
use crate::config::Config;
use crate::error::{Error, Result};

/// The files and versions of peer TLS.
#[derive(Clone, Debug)]
struct Settings {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    ca: std::path::PathBuf,
    tls13_only: bool,
}

/// Peer TLS as `cfg` says (`None`: `tls_peers` is off); the error names
/// the key.
fn settings(cfg: &Config) -> Result<Option<Settings>> {
    if !cfg.tls_peers {
        return Ok(None);
    }
    let need = |key: &str, v: &Option<std::path::PathBuf>| {
        v.clone()
            .ok_or_else(|| Error::config(key, "must be set when tls_peers is true"))
    };
    Ok(Some(Settings {
        cert: need("tls_cert_file", &cfg.tls_cert_file)?,
        key: need("tls_key_file", &cfg.tls_key_file)?,
        ca: need("tls_ca_cert_file", &cfg.tls_ca_cert_file)?,
        tls13_only: cfg.tls_min_version == "1.3",
    }))
}

/// Checks the peer TLS settings of `cfg`.
pub fn validate(cfg: &Config) -> Result<()> {
    settings(cfg).map(|_| ())
}

/// The two sides of peer TLS, current.
#[derive(Debug)]
pub struct PeerTls {
    settings: Settings,
    server: ArcSwap<ServerConfig>,
    client: ArcSwap<ClientConfig>,
    watched: Watched,
}

impl PeerTls {
    /// Peer TLS as `cfg` says, or `None`; fails naming a file that does
    /// not make a config.
    pub fn from_config(cfg: &Config) -> Result<Option<Arc<PeerTls>>> {
        let Some(settings) = settings(cfg)? else {
            return Ok(None);
        };
        let watched = Watched::new(vec![
            settings.cert.clone(),
            settings.key.clone(),
            settings.ca.clone(),
        ]);
        let (server, client) = build(&settings)?;
        Ok(Some(Arc::new(PeerTls {
            settings,
            server: ArcSwap::from_pointee(server),
            client: ArcSwap::from_pointee(client),
            watched,
        })))
    }

    /// The TLS side of a connection a peer opened.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.load_full());
        Ok(TlsStream::Server(acceptor.accept(stream).await?))
    }

    /// The TLS side of a connection this node opened to a peer.
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let connector = tokio_rustls::TlsConnector::from(self.client.load_full());
        // Any name: the verifier checks the CA, not the name (module doc).
        let name = ServerName::try_from("ringkv-peer").expect("a valid DNS name");
        Ok(TlsStream::Client(connector.connect(name, stream).await?))
    }
}

impl Reload for PeerTls {
    fn changed(&self) -> bool {
        self.watched.changed()
    }

    fn reload(&self, why: &str) {
        self.watched.mark();
        match build(&self.settings) {
            Ok((server, client)) => {
                self.server.store(Arc::new(server));
                self.client.store(Arc::new(client));
                info!(reason = why, "peer TLS certificates reloaded");
            }
            Err(e) => warn!(reason = why, error = %e,
                "peer TLS certificates not reloaded; the previous ones stay in use"),
        }
    }
}

fn build(s: &Settings) -> Result<(ServerConfig, ClientConfig)> {
    let roots = load_roots(&s.ca)?;
    let provider = provider();
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| file_err(&s.ca, &e))?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(s.tls13_only))
        .map_err(|e| Error::invalid(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(load_certs(&s.cert)?, load_key(&s.key)?)
        .map_err(|e| file_err(&s.key, &e))?;
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| file_err(&s.ca, &e))?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(s.tls13_only))
        .map_err(|e| Error::invalid(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ClusterCa { inner }))
        .with_client_auth_cert(load_certs(&s.cert)?, load_key(&s.key)?)
        .map_err(|e| file_err(&s.key, &e))?;
    Ok((server, client))
}

/// A peer's certificate must chain to the cluster's CA; the name in it is
/// not checked (see the module doc).
#[derive(Debug)]
struct ClusterCa {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ClusterCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verdict =
            (self.inner).verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match verdict {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
