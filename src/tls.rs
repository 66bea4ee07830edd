//! TLS on the client port (`tls_client = true`), with rustls: no OpenSSL
//! to build or to patch; between nodes (`tls_peers = true`) in `peer.rs`.
//!
//! The settings take Redis's names: `tls_cert_file` and `tls_key_file`
//! (the node's certificate chain and key, PEM), `tls_ca_cert_file` (the CA
//! that client certificates must chain to), `tls_auth_clients` (`yes`, as
//! Redis defaults: a client must present a certificate; `optional`: it may;
//! `no`: none is asked for) and `tls_min_version` (`1.2` or `1.3`).
//!
//! - **One server config at a time, swapped whole.** Each new connection
//!   takes the config current when it arrives. A reload builds a new one
//!   from the files and swaps it in: connections already open keep the
//!   session they have, nothing is dropped. A reload that fails (a file
//!   half-written, a key that does not match) keeps the config in use and
//!   logs why, so a bad rotation never takes the port down.
//! - **Reloads** come on SIGHUP, and whenever a file's identity changes
//!   (checked every second through the path, symlinks followed: the
//!   `..data` symlink swap by which Kubernetes updates a mounted Secret
//!   changes the inode the path leads to, with no write to the old file).
//! - **A plaintext client on the TLS port** is told nothing: the first
//!   byte of a TLS connection is a handshake record (0x16), and a
//!   connection whose first byte is anything else is closed with one log
//!   line (rate-limited) before a byte of it is parsed as RESP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::RateLimit;
use crate::config::Config;
use crate::error::{Error, Result};

pub mod admin;
pub mod client;
pub mod peer;

/// Something reloaded from its files (see [`reload_loop`]).
pub trait Reload: Send + Sync {
    /// Whether a file now leads elsewhere than at the last (re)load.
    fn changed(&self) -> bool;
    /// Remakes the config from the files, keeping the one in use if that
    /// fails; logs either way.
    fn reload(&self, why: &str);
}

/// How often the files are looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How long a connection may take to send its first byte and finish the
/// handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// The first byte of every TLS connection: a handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Plaintext clients and failed handshakes: a few log lines every 10 s.
static REFUSALS: RateLimit = RateLimit::new(5, Duration::from_secs(10));

/// Whether clients must present a certificate (`tls_auth_clients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    Required,
    Optional,
    Off,
}

/// What the server config is built from.
#[derive(Clone, Debug)]
struct Settings {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    auth: ClientAuth,
    tls13_only: bool,
}

impl Settings {
    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert.clone(), self.key.clone()];
        files.extend(self.ca.clone());
        files
    }
}

/// Checks the TLS settings of `cfg`; the error names the key.
pub fn validate(cfg: &Config) -> Result<()> {
    settings(cfg, Port::Client)?;
    settings(cfg, Port::Admin)?;
    peer::validate(cfg)
}

/// Which listener a server config is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Port {
    Client,
    Admin,
}

fn settings(cfg: &Config, port: Port) -> Result<Option<Settings>> {
    let auth = match cfg.tls_auth_clients.as_str() {
        "yes" => ClientAuth::Required,
        "optional" => ClientAuth::Optional,
        "no" => ClientAuth::Off,
        other => {
            return Err(Error::config(
                "tls_auth_clients",
                format!("`{other}` is not yes, optional or no"),
            ))
        }
    };
    let tls13_only = match cfg.tls_min_version.as_str() {
        "1.2" => false,
        "1.3" => true,
        other => {
            return Err(Error::config(
                "tls_min_version",
                format!("`{other}` is not 1.2 or 1.3"),
            ))
        }
    };
    let (on, setting) = match port {
        Port::Client => (cfg.tls_client, "tls_client"),
        Port::Admin => (cfg.tls_admin, "tls_admin"),
    };
    if !on {
        return Ok(None);
    }
    let need = |key: &str, v: &Option<PathBuf>| {
        v.clone()
            .ok_or_else(|| Error::config(key, format!("must be set when {setting} is true")))
    };
    let cert = need("tls_cert_file", &cfg.tls_cert_file)?;
    let key = need("tls_key_file", &cfg.tls_key_file)?;
    if auth != ClientAuth::Off && cfg.tls_ca_cert_file.is_none() {
        return Err(Error::config(
            "tls_ca_cert_file",
            "must be set to check client certificates (or set tls_auth_clients = no)",
        ));
    }
    // The admin port asks for a certificate but takes a connection
    // without one: its read-only pages (and Kubernetes' probes) need none;
    // whether a route that acts needs one is `admin.rs`'s check.
    let auth = match (port, auth) {
        (Port::Admin, ClientAuth::Required) => ClientAuth::Optional,
        (_, auth) => auth,
    };
    Ok(Some(Settings {
        cert,
        key,
        ca: cfg.tls_ca_cert_file.clone(),
        auth,
        tls13_only,
    }))
}

/// The identity of the file a path leads to now (symlinks followed).
type Stamp = Vec<Option<(u64, u64, u64, std::time::SystemTime)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    (files.iter())
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.dev(), m.ino(), m.len(), m.modified().ok()?))
        })
        .collect()
}

/// The files a config is built from, and what they were at its last
/// (re)load: a file that leads elsewhere now means a reload.
#[derive(Debug)]
struct Watched {
    files: Vec<PathBuf>,
    seen: Mutex<Stamp>,
}

impl Watched {
    fn new(files: Vec<PathBuf>) -> Watched {
        let seen = Mutex::new(stamp(&files));
        Watched { files, seen }
    }

    /// Whether a file now leads elsewhere than at the last [`Watched::mark`].
    fn changed(&self) -> bool {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != stamp(&self.files)
    }

    /// Records what the files are now (before a reload reads them).
    fn mark(&self) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp(&self.files);
    }
}

/// TLS for the client port: the server config in use, and how to remake it.
pub struct ServerTls {
    port: Port,
    settings: Settings,
    current: ArcSwap<ServerConfig>,
    watched: Watched,
}

impl ServerTls {
    /// TLS for the client port as `cfg` says (`None`: `tls_client` is
    /// off). Fails, naming the file, when the files do not make a config.
    pub fn from_config(cfg: &Config) -> Result<Option<Arc<ServerTls>>> {
        Self::for_port(cfg, Port::Client)
    }

    /// HTTPS for the admin port as `cfg` says (`None`: `tls_admin` is off).
    /// A client certificate is asked for and checked, never required here.
    pub fn admin_from_config(cfg: &Config) -> Result<Option<Arc<ServerTls>>> {
        Self::for_port(cfg, Port::Admin)
    }

    fn for_port(cfg: &Config, port: Port) -> Result<Option<Arc<ServerTls>>> {
        let Some(settings) = settings(cfg, port)? else {
            return Ok(None);
        };
        let watched = Watched::new(settings.files());
        let config = build(&settings)?;
        Ok(Some(Arc::new(ServerTls {
            port,
            settings,
            current: ArcSwap::from_pointee(config),
            watched,
        })))
    }

    /// The TLS session of a client that just connected, or `None` (logged)
    /// when it speaks plaintext, fails the handshake or takes too long.
    pub async fn accept(&self, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
        let addr = stream.peer_addr().ok();
        let config = self.current.load_full();
        let handshake = async {
            let mut first = [0u8; 1];
            let n = stream.peek(&mut first).await?;
            if n == 0 {
                return Ok(None);
            }
            if first[0] != HANDSHAKE_RECORD {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a plaintext client on the TLS port; closed without reading it",
                ));
            }
            tokio_rustls::TlsAcceptor::from(config)
                .accept(stream)
                .await
                .map(Some)
        };
        let why = match tokio::time::timeout(HANDSHAKE_LIMIT, handshake).await {
            Ok(Ok(tls)) => return tls,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no TLS handshake within {HANDSHAKE_LIMIT:?}"),
        };
        if let Some(held_back) = REFUSALS.check(Instant::now()) {
            let port = self.port_name();
            warn!(addr = ?addr, held_back, "refused a connection to the {port} port: {why}");
        }
        None
    }
}

impl ServerTls {
    fn port_name(&self) -> &'static str {
        match self.port {
            Port::Client => "client",
            Port::Admin => "admin",
        }
    }
}

impl Reload for ServerTls {
    fn reload(&self, why: &str) {
        self.watched.mark();
        match build(&self.settings) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                info!(
                    reason = why,
                    port = self.port_name(),
                    "TLS certificates reloaded"
                );
            }
            Err(e) => {
                warn!(reason = why, port = self.port_name(), error = %e, "TLS certificates not reloaded; the previous ones stay in use")
            }
        }
    }

    fn changed(&self) -> bool {
        self.watched.changed()
    }
}

/// Reloads every one of `all` on SIGHUP and when its files change, until
/// shutdown.
pub async fn reload_loop(all: Vec<Arc<dyn Reload>>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => Some(hup),
        Err(e) => {
            warn!(error = %e, "no SIGHUP handler: TLS files are reloaded only when they change");
            None
        }
    };
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let hup_recv = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup_recv => all.iter().for_each(|t| t.reload("SIGHUP")),
            _ = tick.tick() => {
                for t in all.iter().filter(|t| t.changed()) {
                    t.reload("a certificate or key file changed");
                }
            }
        }
    }
}

/// The certificate chain in the PEM file `path`.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, &e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| file_err(path, &e))?;
    if certs.is_empty() {
        return Err(file_err(path, &"no certificate in it"));
    }
    Ok(certs)
}

/// The private key in the PEM file `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, &e))
}

/// The CA certificates in the PEM file `path`.
fn load_roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_err(path, &e))? {
        let cert = cert.map_err(|e| file_err(path, &e))?;
        roots.add(cert).map_err(|e| file_err(path, &e))?;
    }
    Ok(Arc::new(roots))
}

fn file_err(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::invalid(format!("TLS file {}: {e}", path.display()))
}

/// The crypto provider: ring's.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS12_UP: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

/// The TLS versions accepted.
fn versions(tls13_only: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    if tls13_only {
        &TLS13_ONLY
    } else {
        &TLS12_UP
    }
}

fn build(s: &Settings) -> Result<ServerConfig> {
    let certs = load_certs(&s.cert)?;
    let key = load_key(&s.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(s.tls13_only))
        .map_err(|e| Error::invalid(format!("TLS versions: {e}")))?;
    let builder = match (&s.ca, s.auth) {
        (Some(ca), ClientAuth::Required | ClientAuth::Optional) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider);
            let verifier = match s.auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| file_err(ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| file_err(&s.key, &e))
}
