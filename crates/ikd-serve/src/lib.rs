//! `ikd serve`: finished IKD runs behind HTTP, for a production line's camera stations.
//!
//! Each run's [`ikd::Predictor`] is loaded once on its own thread. Requests for a run are
//! queued (a bounded queue: a full one answers 503 with `Retry-After`) and gathered into batches
//! of up to `max_batch` images or `max_wait`, whichever comes first, scored with one
//! [`ikd::Predictor::score_batch`] call; each caller gets its own images' results.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/runs/{name}/score` | a PNG/JPEG/BMP/TIFF body, or `multipart/form-data` with several images: JSON per image (score, normalised score, OK/NG decision, threshold, defect fraction, queue and inference milliseconds); `?heatmap=png` adds the heat map overlay and `?mask=png` the defect mask (base64 PNG) |
//! | `GET /v1/runs` | the runs: backbone, image size, thresholds, teacher |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once every run is loaded and warmed up, 503 before |
//! | `GET /metrics` | Prometheus text: responses by status, queue depth, batch sizes, latencies (on its own address with [`ServeConfig::metrics_addr`]) |
//!
//! With a token file ([`ServeConfig::token_file`]) every route but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>` (401 with `WWW-Authenticate` otherwise); with
//! [`ServeConfig::tls`] the service speaks HTTPS (rustls; HTTP/2 and HTTP/1.1). Both files are read
//! again by [`Reloader::reload`] (`ikd serve` on SIGHUP).
//!
//! A server in a program (tests, the load generator), on an ephemeral port:
//!
//! ```no_run
//! # async fn f() -> Result<(), ikd_serve::Error> {
//! let config = ikd_serve::ServeConfig::new(vec![ikd_serve::RunSpec::parse("runs/bottle")?]);
//! let server = ikd_serve::Server::bind(config, "127.0.0.1:0").await?;
//! server.ready().await?; // every run loaded and warmed up
//! println!("POST http://{}/v1/runs/bottle/score", server.local_addr());
//! server.shutdown().await?; // stops accepting, answers what is queued
//! # Ok(()) }
//! ```

mod auth;
mod batch;
mod http;
mod metrics;
mod tls;

pub use http::{ImageScore, ScoreResponse};
pub use tls::TlsFiles;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ikd::{Decision, KernelPolicy, Predictor, TeacherIdentity};
use tokio::sync::watch;

use batch::{BatchSettings, LoadState, Runner};

/// What can go wrong starting or stopping the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong (named in the message).
    #[error("{0}")]
    Config(String),
    /// A run could not be loaded.
    #[error("run {name} ({}): {message}", dir.display())]
    Run {
        /// The run's name in the URLs.
        name: String,
        /// Its folder.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// The socket.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A run to serve: the name in its URLs (`/v1/runs/{name}/score`) and its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The run's name in URLs.
    pub name: String,
    /// The run's folder.
    pub dir: PathBuf,
}

impl RunSpec {
    /// `NAME=DIR`, or `DIR` (named after the folder).
    ///
    /// ```
    /// let r = ikd_serve::RunSpec::parse("runs/bottle")?;
    /// assert_eq!((r.name.as_str(), r.dir.to_str()), ("bottle", Some("runs/bottle")));
    /// let r = ikd_serve::RunSpec::parse("line3=/srv/runs/bottle")?;
    /// assert_eq!(r.name, "line3");
    /// assert!(ikd_serve::RunSpec::parse("a b=runs/x").is_err());
    /// # Ok::<(), ikd_serve::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (name, dir) = match s.split_once('=') {
            Some((name, dir)) => (name.to_string(), PathBuf::from(dir)),
            None => {
                let dir = PathBuf::from(s);
                let name = dir
                    .components()
                    .next_back()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, dir)
            }
        };
        let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if name.is_empty() || name == "." || name == ".." || !name.chars().all(ok) {
            return Err(Error::Config(format!(
                "--run {s}: the run's name `{name}` must be letters, digits, '-', '_' or '.' \
                 (pass NAME=DIR to choose one)"
            )));
        }
        Ok(Self { name, dir })
    }
}

/// The service's settings (the flags of `ikd serve`).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The runs to serve (at least one; distinct names).
    pub runs: Vec<RunSpec>,
    /// `cpu` or `cuda:N` for every run (`None`: each run's own device).
    pub device: Option<String>,
    /// The CPU kernels the networks run on.
    pub kernels: KernelPolicy,
    /// Most images scored in one call of the network.
    pub max_batch: usize,
    /// Longest time the first image of a batch waits for others.
    pub max_wait: Duration,
    /// Images each run's queue holds; more are refused with 503.
    pub queue: usize,
    /// Largest request body in bytes (413 above).
    pub body_limit: usize,
    /// A score request not answered in this time gets 504.
    pub request_timeout: Duration,
    /// The access tokens (`--token-file`): one a line, `TOKEN` or `NAME TOKEN`, the file readable
    /// by its owner only. `None`: no token needed.
    pub token_file: Option<PathBuf>,
    /// HTTPS with this certificate and key (`None`: plain HTTP).
    pub tls: Option<TlsFiles>,
    /// Serve `/metrics` on this address, without token, instead of the main one.
    pub metrics_addr: Option<String>,
}

impl Default for ServeConfig {
    /// [`ServeConfig::new`] with no run yet.
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl ServeConfig {
    /// The defaults for `runs`: batches of 8 images or 5 ms, a queue of 64 images, bodies up to
    /// 64 MiB, 30 s per request, each run on its own device.
    pub fn new(runs: Vec<RunSpec>) -> Self {
        Self {
            runs,
            device: None,
            kernels: KernelPolicy::default(),
            max_batch: 8,
            max_wait: Duration::from_millis(5),
            queue: 64,
            body_limit: 64 << 20,
            request_timeout: Duration::from_secs(30),
            token_file: None,
            tls: None,
            metrics_addr: None,
        }
    }

    fn check(&self) -> Result<(), Error> {
        if self.runs.is_empty() {
            return Err(Error::Config("no run to serve: pass --run DIR".into()));
        }
        let mut seen = BTreeMap::new();
        for r in &self.runs {
            if let Some(other) = seen.insert(r.name.as_str(), &r.dir) {
                return Err(Error::Config(format!(
                    "two runs named `{}` ({} and {}): pass NAME=DIR to tell them apart",
                    r.name,
                    other.display(),
                    r.dir.display()
                )));
            }
        }
        if self.max_batch == 0 || self.queue == 0 {
            return Err(Error::Config("--max-batch and --queue must be at least 1".into()));
        }
        if self.body_limit == 0 || self.request_timeout.is_zero() {
            return Err(Error::Config(
                "the body limit and request timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What `GET /v1/runs` says about a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    /// The name in its URLs.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// The student's (and teacher's) network.
    pub backbone: String,
    /// The network's input side (the centre crop).
    pub image_size: u32,
    /// The side images are resized to before the crop.
    pub load_size: u32,
    /// The device it runs on.
    pub device: String,
    /// The OK/NG rule of the run's test (`None`: never tested, raw scores only).
    pub decision: Option<Decision>,
    /// The pixel threshold of the defect masks (`None`: never tested).
    pub pixel_threshold: Option<f64>,
    /// The teacher it was trained with (`None`: a run made before runs recorded it).
    pub teacher: Option<TeacherIdentity>,
    /// The scores heat maps span from blue to red (the run's test's score range; `None`: each
    /// heat map spans its own map).
    pub heatmap_range: Option<(f32, f32)>,
}

impl RunInfo {
    fn of(name: &str, dir: &Path, p: &Predictor) -> Self {
        let teacher = ikd::RunDir::new(dir).teacher();
        Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            backbone: p.config().backbone.clone(),
            image_size: p.config().image_size,
            load_size: p.config().load_size,
            device: match p.device().location() {
                candle_core::DeviceLocation::Cpu => "cpu".to_string(),
                candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
                candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
            },
            decision: p.decision(),
            pixel_threshold: p.pixel_threshold(),
            teacher: TeacherIdentity::load(&teacher).ok(),
            heatmap_range: p.heatmap_range(),
        }
    }
}

/// The state every request sees.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) runs: BTreeMap<String, Arc<Runner>>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) request_timeout: Duration,
    pub(crate) body_limit: usize,
    /// The access tokens (`None`: open).
    pub(crate) tokens: Option<Arc<auth::TokenStore>>,
}

/// Reads the token file and the certificate again ([`Server::reloader`]).
#[derive(Debug, Clone)]
pub struct Reloader {
    tokens: Option<Arc<auth::TokenStore>>,
    certs: Option<Arc<tls::CertStore>>,
}

impl Reloader {
    /// Reads the token file and the TLS certificate and key again and puts them in force for the
    /// requests and handshakes that follow (open connections keep their certificate). When either
    /// cannot be read or is wrong, neither changes and the error names the file.
    pub fn reload(&self) -> Result<(), Error> {
        let tokens = self.tokens.as_ref().map(|t| t.reread()).transpose()?;
        let pair = self.certs.as_ref().map(|c| c.reread()).transpose()?;
        if let (Some(store), Some(tokens)) = (&self.tokens, tokens) {
            let names = tokens.names().join(", ");
            store.install(tokens);
            tracing::info!(file = %store.path().display(), "access tokens reloaded: {names}");
        }
        if let (Some(store), Some(pair)) = (&self.certs, pair) {
            store.install(pair);
            tracing::info!(cert = %store.files().cert.display(), "TLS certificate reloaded");
        }
        if self.tokens.is_none() && self.certs.is_none() {
            tracing::info!("nothing to reload: no token file, no certificate");
        }
        Ok(())
    }
}

/// A running service.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    reloader: Reloader,
    stop: watch::Sender<bool>,
    http: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A bound listener, plain or TLS.
enum Bound {
    Plain(tokio::net::TcpListener),
    Tls(tls::TlsListener),
}

impl Bound {
    async fn bind(
        addr: impl tokio::net::ToSocketAddrs,
        tls: Option<&Arc<rustls::ServerConfig>>,
        what: &str,
    ) -> Result<(Self, SocketAddr), Error> {
        let io = |context: String| move |source| Error::Io { context, source };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io(format!("binding the {what} address")))?;
        let local = listener.local_addr().map_err(io(format!("the bound {what} address")))?;
        let bound = match tls {
            None => Self::Plain(listener),
            Some(config) => Self::Tls(
                tls::TlsListener::new(listener, config.clone())
                    .map_err(io(format!("the {what} TLS listener")))?,
            ),
        };
        Ok((bound, local))
    }

    /// Serves `app` until `stopped` turns true, then answers what was received.
    fn serve(
        self,
        app: axum::Router,
        mut stopped: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let signal = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        match self {
            Self::Plain(l) => {
                use axum::serve::ListenerExt;
                let l = l.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                tokio::spawn(
                    async move { axum::serve(l, app).with_graceful_shutdown(signal).await },
                )
            }
            Self::Tls(l) => {
                tokio::spawn(
                    async move { axum::serve(l, app).with_graceful_shutdown(signal).await },
                )
            }
        }
    }
}

impl Server {
    /// Checks the runs' folders, binds `addr` (port 0: any free port, see
    /// [`Server::local_addr`]) and starts serving; each run loads and warms up on its own thread
    /// meanwhile (`/readyz`, [`Server::ready`]). Call from within a tokio runtime.
    pub async fn bind(
        config: ServeConfig,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> Result<Self, Error> {
        config.check()?;
        let device = config.device.as_deref().map(ikd::parse_device).transpose();
        let device = device.map_err(|e| Error::Config(format!("--device: {e}")))?;
        check_runs(&config.runs)?;
        // every file is read and checked before a port is bound
        let tokens = config.token_file.as_deref().map(auth::TokenStore::open).transpose()?;
        let tokens = tokens.map(Arc::new);
        let certs = config.tls.as_ref().map(tls::CertStore::open).transpose()?.map(Arc::new);
        let tls_config = certs.clone().map(tls::server_config).transpose()?;
        let (main, addr) = Bound::bind(addr, tls_config.as_ref(), "").await?;
        let metrics = match &config.metrics_addr {
            Some(m) => Some(Bound::bind(m.as_str(), tls_config.as_ref(), "metrics ").await?),
            None => None,
        };
        let (runs, threads) = start_runs(&config, device)?;
        let shared = Arc::new(Shared {
            runs,
            metrics: metrics::Metrics::new(),
            request_timeout: config.request_timeout,
            body_limit: config.body_limit,
            tokens: tokens.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let main_app = http::router(shared.clone(), metrics.is_none());
        let mut http = vec![main.serve(main_app, stopped.clone())];
        let metrics_addr = metrics.map(|(bound, at)| {
            http.push(bound.serve(http::metrics_router(shared.clone()), stopped));
            at
        });
        let scheme = if certs.is_some() { "https" } else { "http" };
        tracing::info!(%addr, "listening ({scheme})");
        if let Some(m) = metrics_addr {
            tracing::info!(addr = %m, "metrics listening ({scheme}, no token)");
        }
        match &tokens {
            Some(t) => tracing::info!(
                file = %t.path().display(),
                "access tokens: {}",
                t.get().names().join(", ")
            ),
            None if !addr.ip().is_loopback() => tracing::warn!(
                "no --token-file: anyone who can reach {addr} can score images, list the runs \
                 and read the metrics"
            ),
            None => {}
        }
        let reloader = Reloader { tokens, certs };
        Ok(Self { addr, metrics_addr, shared, reloader, stop, http, threads })
    }

    /// The address `/metrics` is served on when it has its own ([`ServeConfig::metrics_addr`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Whether the service speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.reloader.certs.is_some()
    }

    /// What reads the token file and the certificate again (for a SIGHUP handler).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The address the service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until every run is loaded and warmed up; the first run that failed to load is an
    /// error.
    pub async fn ready(&self) -> Result<(), Error> {
        for r in self.shared.runs.values() {
            let mut state = r.state.clone();
            let s = state
                .wait_for(|s| !matches!(s, LoadState::Loading))
                .await
                .map(|s| s.clone())
                .unwrap_or_else(|_| LoadState::Failed("its thread ended".into()));
            if let LoadState::Failed(message) = s {
                return Err(Error::Run { name: r.name.clone(), dir: r.dir.clone(), message });
            }
        }
        Ok(())
    }

    /// The runs served, once loaded.
    pub fn runs(&self) -> Vec<RunInfo> {
        self.shared.runs.values().filter_map(|r| r.ready()).map(|i| (*i).clone()).collect()
    }

    /// Images queued for `run` and not yet scored (`None`: no such run).
    pub fn queue_depth(&self, run: &str) -> Option<usize> {
        self.shared.runs.get(run).map(|r| r.depth())
    }

    /// Holds `run`'s queued images back from the network while `paused` (they stay queued and
    /// count against the queue). Returns whether the run exists. For maintenance and for tests
    /// that need a full queue or a slow answer without racing the network.
    pub fn set_paused(&self, run: &str, paused: bool) -> bool {
        self.shared.runs.get(run).map(|r| r.set_paused(paused)).is_some()
    }

    /// Stops accepting connections, answers every request already received (queued images are
    /// scored without waiting for full batches) and returns when all are answered and the runs'
    /// threads have ended.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown_on(async {}).await
    }

    /// Serves until `signal` completes, then shuts down as [`Server::shutdown`] does.
    pub async fn shutdown_on(self, signal: impl Future<Output = ()>) -> Result<(), Error> {
        signal.await;
        tracing::info!("shutting down: answering what is queued");
        for r in self.shared.runs.values() {
            r.close();
        }
        let _ = self.stop.send(true);
        let mut served = Ok(Ok(()));
        for task in self.http {
            let r = task.await;
            if matches!(served, Ok(Ok(()))) {
                served = r;
            }
        }
        let threads = self.threads;
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await
        .map_err(|e| Error::Config(format!("joining the runs' threads: {e}")))?;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(Error::Io { context: "serving".into(), source }),
            Err(e) => Err(Error::Config(format!("the HTTP task: {e}"))),
        }
    }
}

/// Refuses runs that are not finished runs.
fn check_runs(runs: &[RunSpec]) -> Result<(), Error> {
    for r in runs {
        let message = match ikd::RunDir::new(&r.dir).state() {
            ikd::RunState::Trained | ikd::RunState::Tested => continue,
            ikd::RunState::Empty => "not a run (no config.toml): pass a folder made by `ikd train`",
            _ => "training has not finished (continue it with `ikd run`)",
        };
        return Err(Error::Run {
            name: r.name.clone(),
            dir: r.dir.clone(),
            message: message.into(),
        });
    }
    Ok(())
}

/// Each run's thread, which loads its predictor and then scores its queue.
type Started = (BTreeMap<String, Arc<Runner>>, Vec<std::thread::JoinHandle<()>>);

fn start_runs(config: &ServeConfig, device: Option<candle_core::Device>) -> Result<Started, Error> {
    let settings = BatchSettings {
        max_batch: config.max_batch,
        max_wait: config.max_wait,
        queue: config.queue,
    };
    let mut runs = BTreeMap::new();
    let mut threads = Vec::new();
    for r in &config.runs {
        let (dir, device, kernels) = (r.dir.clone(), device.clone(), config.kernels);
        let open = move || {
            let p = match &device {
                Some(d) => Predictor::open(&dir, d),
                None => ikd::RunDir::new(&dir)
                    .load_config()
                    .and_then(|c| ikd::parse_device(&c.device))
                    .and_then(|d| Predictor::open(&dir, &d)),
            };
            p.map(|p| p.with_kernel_policy(kernels)).map_err(|e| e.to_string())
        };
        let (runner, thread) = Runner::start(r.name.clone(), r.dir.clone(), settings, open)
            .map_err(|source| Error::Io { context: "starting a run's thread".into(), source })?;
        runs.insert(r.name.clone(), runner);
        threads.push(thread);
    }
    Ok((runs, threads))
}

/// The most pixels an uploaded image may have (its anomaly map and mask are made at its size).
pub const MAX_PIXELS: u64 = 64_000_000;

/// Decodes an uploaded image as the service does: PNG, JPEG, BMP or TIFF, the format guessed
/// from the content; an error says what is wrong with the bytes. Never panics (see the fuzz
/// test).
///
/// ```
/// assert!(ikd_serve::decode(b"not an image").unwrap_err().contains("format"));
/// ```
pub fn decode(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    if bytes.is_empty() {
        return Err("empty: no image in the body".to_string());
    }
    let decoded = std::panic::catch_unwind(|| {
        // the header first: a huge image is refused before its pixels are allocated
        let header = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format();
        if let Ok((w, h)) =
            header.map_err(image::ImageError::from).and_then(|r| r.into_dimensions())
        {
            if u64::from(w) * u64::from(h) > MAX_PIXELS {
                return Ok(Err(format!(
                    "the image is {w}×{h} pixels, more than the {} million the service takes",
                    MAX_PIXELS / 1_000_000
                )));
            }
        }
        ikd_data::decode_image(bytes).map(Ok)
    });
    match decoded {
        Ok(Ok(Err(too_big))) => Err(too_big),
        Ok(Ok(Ok(img))) if img.width() == 0 || img.height() == 0 => {
            Err(format!("the image is {}×{} pixels", img.width(), img.height()))
        }
        Ok(Ok(Ok(img))) => Ok(img),
        Ok(Err(image::ImageError::Unsupported(e))) => {
            Err(format!("unsupported image format ({e}): send PNG, JPEG, BMP or TIFF"))
        }
        Ok(Err(e)) => Err(format!("corrupt or truncated image: {e}")),
        Err(_) => Err("corrupt image: the decoder failed".to_string()),
    }
}
