//! The command line's side of TLS: how `status`, `leave`, `forget`,
//! `backup`, `up` and `scenario` reach nodes whose admin port speaks HTTPS
//! (`tls_admin`) or whose client port speaks TLS (`tls_client`).
//!
//! One CLI process talks to one cluster, so the choice is made once, at
//! start ([`install`]), and every connection the CLI opens asks
//! [`connect_admin`] or [`connect_client`]: plain TCP, or TLS checked
//! against the cluster's CA, with the node's host (name or IP) as the
//! name its certificate must carry. A client certificate is presented when
//! one is given, as redis-cli's `--cert` and `--key` do.
//!
//! `status`, `leave`, `forget` and `backup` take redis-cli's flags
//! (`--tls --cacert --cert --key`); `up` and `scenario` take the same
//! settings the nodes they start get (`-- --set tls_admin=true ...`).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::error::{Error, Result};

/// A byte stream to a node: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the CLI speaks to each port.
#[derive(Clone, Default)]
pub struct CliTls {
    /// TLS to admin ports (`None`: plain HTTP).
    pub admin: Option<Arc<ClientConfig>>,
    /// TLS to client ports (`None`: plain RESP).
    pub client: Option<Arc<ClientConfig>>,
}

static CHOSEN: OnceLock<CliTls> = OnceLock::new();

/// Makes `tls` what every later connection of this process uses. Only the
/// first call counts (one process, one cluster).
pub fn install(tls: CliTls) {
    let _first = CHOSEN.set(tls).is_ok();
}

fn chosen() -> CliTls {
    CHOSEN.get().cloned().unwrap_or_default()
}

impl CliTls {
    /// From redis-cli's flags: `--tls`, `--cacert FILE`, `--cert FILE`,
    /// `--key FILE`; TLS only when `tls` is set. For the admin port.
    pub fn admin_from_flags(
        tls: bool,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<CliTls> {
        if !tls {
            return Ok(CliTls::default());
        }
        let ca = ca.ok_or_else(|| {
            Error::invalid("--tls needs --cacert: the CA the node's certificate is signed by")
        })?;
        Ok(CliTls {
            admin: Some(build(ca, cert, key)?),
            client: None,
        })
    }

    /// As the nodes that `cfg` describes expect to be spoken to: TLS to
    /// the admin port if `tls_admin`, to the client port if `tls_client`,
    /// checked against `tls_ca_cert_file` and presenting the node's own
    /// certificate (`tls_cert_file`, `tls_key_file`) as a client's.
    pub fn from_node_config(cfg: &Config) -> Result<CliTls> {
        if !cfg.tls_admin && !cfg.tls_client {
            return Ok(CliTls::default());
        }
        let ca = cfg.tls_ca_cert_file.as_deref().ok_or_else(|| {
            Error::config(
                "tls_ca_cert_file",
                "must be set for the command line to check the nodes' certificates",
            )
        })?;
        let config = build(
            ca,
            cfg.tls_cert_file.as_deref(),
            cfg.tls_key_file.as_deref(),
        )?;
        Ok(CliTls {
            admin: cfg.tls_admin.then(|| config.clone()),
            client: cfg.tls_client.then_some(config),
        })
    }
}

fn build(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(super::versions(false))
        .map_err(|e| Error::invalid(format!("TLS versions: {e}")))?
        .with_root_certificates(super::load_roots(ca)?);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(super::load_certs(cert)?, super::load_key(key)?)
            .map_err(|e| super::file_err(key, &e))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::invalid(
                "a client certificate needs both --cert and --key",
            ))
        }
    };
    Ok(Arc::new(config))
}

/// A connection to the admin port at `addr` (`host:port`).
pub async fn connect_admin(addr: &str) -> Result<Box<dyn Io>> {
    connect(addr, chosen().admin).await
}

/// A connection to the client (RESP) port at `addr` (`host:port`).
pub async fn connect_client(addr: &str) -> Result<Box<dyn Io>> {
    connect(addr, chosen().client).await
}

/// Whether admin connections speak HTTPS (for messages that show a URL).
pub fn admin_scheme() -> &'static str {
    if chosen().admin.is_some() {
        "https"
    } else {
        "http"
    }
}

async fn connect(addr: &str, tls: Option<Arc<ClientConfig>>) -> Result<Box<dyn Io>> {
    let stream = TcpStream::connect(addr).await?;
    let Some(tls) = tls else {
        return Ok(Box::new(stream));
    };
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        Error::invalid(format!(
            "`{host}` cannot be checked against a certificate: {e}"
        ))
    })?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(name, stream)
        .await
        .map_err(|e| Error::invalid(format!("TLS with {addr}: {e}")))?;
    Ok(Box::new(tls))
}
