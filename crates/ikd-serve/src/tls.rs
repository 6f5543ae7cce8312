//! TLS (`--tls-cert`/`--tls-key`): rustls on ring, HTTP/2 or HTTP/1.1 by ALPN. The certificate
//! and key are read once at start and again on each reload; the resolver hands every new
//! handshake the latest pair, while connections already open keep theirs. Handshakes run on
//! their own tasks (a slow or silent client delays no one) and a plain-HTTP request to the TLS
//! port is answered with a plain 400 that says so, then closed.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::Error;

/// The longest a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key of the TLS listeners (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's certificate first (`--tls-cert`).
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key`).
    pub key: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The pair in force, swapped whole by a reload.
#[derive(Debug)]
pub(crate) struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub(crate) fn open(files: &TlsFiles) -> Result<Self, Error> {
        let pair = load(files)?;
        Ok(Self { files: files.clone(), current: RwLock::new(Arc::new(pair)) })
    }

    /// Reads the files again; install the pair with [`CertStore::install`].
    pub(crate) fn reread(&self) -> Result<CertifiedKey, Error> {
        load(&self.files)
    }

    pub(crate) fn install(&self, pair: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
    }

    pub(crate) fn files(&self) -> &TlsFiles {
        &self.files
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Reads and checks a certificate chain and its key: one line naming the file and the problem.
pub(crate) fn load(files: &TlsFiles) -> Result<CertifiedKey, Error> {
    let (cert, key) = (&files.cert, &files.key);
    let fail =
        |what: &str, p: &Path, m: String| Error::Config(format!("{what} {}: {m}", p.display()));
    let cert_pem = std::fs::read(cert)
        .map_err(|e| fail("--tls-cert", cert, format!("cannot read it: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail("--tls-cert", cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(fail("--tls-cert", cert, "holds no PEM certificate".into()));
    }
    let key_pem =
        std::fs::read(key).map_err(|e| fail("--tls-key", key, format!("cannot read it: {e}")))?;
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        fail("--tls-key", key, format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| fail("--tls-key", key, format!("unusable private key: {e}")))?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        // Unknown: the key cannot tell its public key; the handshake will tell
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(fail(
            "--tls-key",
            key,
            format!("does not match the certificate in {}", cert.display()),
        )),
        Err(e) => Err(fail("--tls-cert", cert, format!("cannot check it against the key: {e}"))),
    }
}

/// The server's TLS settings: the store's pair, TLS 1.2 and 1.3, HTTP/2 then HTTP/1.1.
pub(crate) fn server_config(store: Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS settings: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections have completed their TLS handshake.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self { ready, addr, acceptor })
    }
}

impl Drop for TlsListener {
    /// Closes the port (the accepting task owns it).
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // out of file descriptors and the like: wait for some to be freed
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, acceptor)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// The handshake, after a look at the first byte: a TLS connection starts with a handshake
/// record (22); anything else is most likely plain HTTP, which gets a plain answer saying so.
async fn handshake(mut tcp: TcpStream, acceptor: TlsAcceptor) -> io::Result<TlsStream<TcpStream>> {
    tcp.set_nodelay(true)?;
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 1 && first[0] != 22 {
        // read what the client sent so that closing does not reset the connection
        let mut request = vec![0u8; 16 << 10];
        let _ = tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut request)).await;
        let body = "{\"error\":\"this port speaks TLS: use https://\"}\n";
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        return Err(io::Error::new(io::ErrorKind::InvalidData, "plain HTTP on the TLS port"));
    }
    acceptor.accept(tcp).await
}
