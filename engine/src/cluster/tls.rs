//! TLS (rustls) for every connection of a cluster when certificates are given: the driver's
//! and each executor's server present a certificate signed by the cluster's CA, and every
//! client — executors, the driver dialling executors, `driver submit` and `driver status` —
//! verifies the server it reaches against that CA. The shared secret still authenticates
//! each call; TLS adds confidentiality and proves the server's identity.

use super::ClusterError;
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// A process's certificates: its own (to serve) and the CA it trusts (to dial).
#[derive(Clone)]
pub struct Tls {
    identity: Option<Identity>,
    ca: Certificate,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("serves", &self.identity.is_some())
            .finish()
    }
}

fn read_pem(path: &Path, what: &str, marker: &str) -> Result<Vec<u8>, ClusterError> {
    let bytes = std::fs::read(path).map_err(|source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !String::from_utf8_lossy(&bytes).contains(marker) {
        return Err(ClusterError::Tls(format!(
            "{}: not a PEM {what} (no `{marker}` line)",
            path.display()
        )));
    }
    Ok(bytes)
}

impl Tls {
    /// Reads PEM files. `cert` and `key` are needed by a process that serves (the driver, an
    /// executor); a client needs only `ca`.
    pub fn from_files(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: &Path,
    ) -> Result<Tls, ClusterError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some(Identity::from_pem(
                read_pem(c, "certificate", "BEGIN CERTIFICATE")?,
                read_pem(k, "private key", "PRIVATE KEY")?,
            )),
            (None, None) => None,
            _ => {
                return Err(ClusterError::Tls(
                    "--tls-cert and --tls-key go together".into(),
                ))
            }
        };
        let ca = Certificate::from_pem(read_pem(ca, "CA certificate", "BEGIN CERTIFICATE")?);
        Ok(Tls { identity, ca })
    }

    /// The files of a server's three flags, all or none. `None` when TLS is off.
    pub fn from_flags(
        cert: Option<&PathBuf>,
        key: Option<&PathBuf>,
        ca: Option<&PathBuf>,
    ) -> Result<Option<Tls>, ClusterError> {
        match ca {
            Some(ca) => {
                Tls::from_files(cert.map(|p| p.as_path()), key.map(|p| p.as_path()), ca).map(Some)
            }
            None if cert.is_some() || key.is_some() => Err(ClusterError::Tls(
                "--tls-ca is needed with --tls-cert and --tls-key (the CA that signed the \
                 cluster's certificates)"
                    .into(),
            )),
            None => Ok(None),
        }
    }

    pub(crate) fn server_config(&self) -> Result<ServerTlsConfig, ClusterError> {
        let identity = self.identity.clone().ok_or_else(|| {
            ClusterError::Tls("serving over TLS needs --tls-cert and --tls-key".into())
        })?;
        Ok(ServerTlsConfig::new().identity(identity))
    }

    fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(self.ca.clone())
    }
}

/// A server builder, with TLS when `tls` is set.
pub(crate) fn server(tls: Option<&Tls>) -> Result<tonic::transport::Server, ClusterError> {
    let builder = tonic::transport::Server::builder().tcp_nodelay(true);
    match tls {
        Some(t) => builder
            .tls_config(t.server_config()?)
            .map_err(|e| ClusterError::Tls(format!("the server's certificate or key: {e}"))),
        None => Ok(builder),
    }
}

/// The connections a server accepts, with Nagle's algorithm off. The server builder's
/// `tcp_nodelay` applies only to listeners it binds itself; without this, a small reply
/// waits for the peer's delayed ACK (~40 ms on Linux) — per task, per fetch.
pub(crate) fn accepted(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}

/// An endpoint for `address` (HOST:PORT), over TLS when `tls` is set.
pub(crate) fn endpoint(address: &str, tls: Option<&Tls>) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("{scheme}://{address}")
    };
    let e = Endpoint::from_shared(uri)
        .map_err(|e| format!("bad address `{address}`: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .tcp_nodelay(true);
    match tls {
        Some(t) => e
            .tls_config(t.client_config())
            .map_err(|e| format!("TLS set-up for {address}: {e}")),
        None => Ok(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn accepted_connections_have_nagle_off() {
        use tokio_stream::StreamExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let mut incoming = Box::pin(super::accepted(listener));
            let _client = tokio::net::TcpStream::connect(address).await.unwrap();
            let stream = incoming.next().await.unwrap().unwrap();
            assert!(stream.nodelay().unwrap());
        });
    }
}
