//! `cargo xtask loadtest`: `ikd serve` under bounded load on 127.0.0.1 — throughput and latency
//! with 1, 4 and 16 concurrent clients, beside `Predictor::score_batch` at the server's batch
//! size in the same process, then an overload (more clients than the queue holds) that must
//! answer 503s, never hang, and recover.
//!
//! Each phase runs over plain HTTP and over HTTPS with an access token (a CA and a certificate
//! made here with rcgen, the token in a file of mode 600), with the same client (ureq on
//! rustls); a cheap route (`GET /v1/runs`) on kept and on fresh connections shows what TLS
//! costs a request and a handshake.
//!
//! The run is a real run folder: an hrnet_w18_small student trained for a few steps on synthetic
//! 256² images with a random teacher, and tested (thresholds). Its weights do not matter for
//! throughput. `--run DIR` serves an existing run instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ikd::{TeacherWeights, TestOptions, TrainConfig, TrainOptions};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};
use ikd_serve::{RunSpec, ScoreResponse, ServeConfig, Server, TlsFiles};

/// How the clients reach the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Plain HTTP, no token.
    Plain,
    /// HTTPS (TLS 1.3, the certificate of a CA made for the test) with a Bearer token.
    Tls,
}

/// Arguments of `cargo xtask loadtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadtestArgs {
    /// Serve this finished run instead of making one.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Backbone of the run made.
    #[arg(long, default_value = "hrnet_w18_small")]
    pub backbone: String,
    /// Image side of the run made (and of the requests).
    #[arg(long, default_value_t = 256)]
    pub image_size: u32,
    /// The server's --max-batch, and the batch size score_batch is measured at.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// The server's --max-wait-ms.
    #[arg(long, default_value_t = 10)]
    pub max_wait_ms: u64,
    /// The server's --queue (images); the overload uses more clients than this.
    #[arg(long, default_value_t = 32)]
    pub queue: usize,
    /// Concurrent clients of each phase.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub clients: Vec<usize>,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Most requests of each phase (the phase ends at this count or after --seconds).
    #[arg(long, default_value_t = 100_000)]
    pub max_requests: usize,
    /// Seconds of the overload phase (0: none), over the last transport.
    #[arg(long, default_value_t = 15)]
    pub overload_seconds: u64,
    /// The transports measured, each with every phase.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "plain,tls")]
    pub transports: Vec<Transport>,
    /// Seconds of each `GET /v1/runs` phase (0: none).
    #[arg(long, default_value_t = 5)]
    pub light_seconds: u64,
    /// Scratch folder (default: a folder in the system's temporary directory, removed at the end).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
}

/// What one phase measured.
struct Phase {
    transport: Transport,
    clients: usize,
    ok: usize,
    errors: usize,
    rejected: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
    batch_sizes: Vec<usize>,
}

impl Phase {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (self.latencies_ms.len() - 1) as f64).round() as usize;
        self.latencies_ms[i]
    }

    fn throughput(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    fn mean_batch(&self) -> f64 {
        self.batch_sizes.iter().sum::<usize>() as f64 / self.batch_sizes.len().max(1) as f64
    }
}

/// `cargo xtask loadtest`: prints the table of the phases, the score_batch baseline and the
/// overload's outcome.
pub fn run(args: &LoadtestArgs) -> Result<()> {
    if args.clients.is_empty() || args.clients.contains(&0) || args.max_batch == 0 {
        bail!("--clients and --max-batch must be at least 1");
    }
    if args.transports.is_empty() {
        bail!("--transports: name plain, tls or both");
    }
    let owned = args.scratch.is_none();
    let scratch = args.scratch.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ikd-loadtest-{}", std::process::id()))
    });
    let result = measure(args, &scratch);
    if owned {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn make_run(args: &LoadtestArgs, scratch: &Path) -> Result<(PathBuf, PathBuf)> {
    let data = scratch.join("data");
    let cfg = SyntheticConfig {
        categories: vec![Texture::Carpet],
        image_size: args.image_size,
        n_train: 4,
        n_test_good: 4,
        n_test_defect: 4,
        seed: 0,
    };
    generate(&cfg, &data)?;
    let run_dir = scratch.join("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    let config = TrainConfig {
        data_root: data.clone(),
        category: "carpet".into(),
        backbone: args.backbone.clone(),
        teacher_weights: TeacherWeights::Random,
        image_size: args.image_size,
        load_size: args.image_size,
        epochs: 1,
        batch_size: 2,
        max_steps: Some(2),
        device: "cpu".into(),
        ..TrainConfig::default()
    };
    let kernels = ikd::KernelPolicy::from_env();
    eprintln!(
        "making the run: {} {}², 2 training steps, then its test",
        args.backbone, args.image_size
    );
    ikd::train(&config, &run_dir, TrainOptions { progress: true, kernels, ..Default::default() })?;
    ikd::test_run(&run_dir, &TestOptions { progress: true, kernels, ..TestOptions::default() })?;
    Ok((run_dir, data.join("carpet/test")))
}

/// PNG files of the requests: the run's test images (or synthetic ones at the run's size).
fn request_images(folder: Option<&Path>, side: u32, scratch: &Path) -> Result<Vec<Vec<u8>>> {
    let folder = match folder {
        Some(f) => f.to_path_buf(),
        None => {
            let cfg = SyntheticConfig {
                categories: vec![Texture::Carpet],
                image_size: side,
                n_train: 0,
                n_test_good: 4,
                n_test_defect: 4,
                seed: 1,
            };
            generate(&cfg, scratch.join("requests"))?;
            scratch.join("requests/carpet/test")
        }
    };
    let (images, _) = ikd::expand_inputs(&[folder], true)?;
    images
        .iter()
        .map(|(p, _)| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}

/// How the load generator reaches a running service: its base URL, token and TLS settings.
#[derive(Clone)]
struct Target {
    transport: Transport,
    base: String,
    token: Option<String>,
    tls: Option<ureq::tls::TlsConfig>,
}

impl Target {
    /// A client with its own connection pool (one kept connection per thread).
    fn agent(&self) -> ureq::Agent {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)));
        if let Some(tls) = &self.tls {
            config = config.tls_config(tls.clone());
        }
        config.build().into()
    }

    /// `POST path` (a PNG) or `GET path` (no body): the status, `Retry-After` and the body.
    fn request(
        &self,
        agent: &ureq::Agent,
        path: &str,
        png: Option<&[u8]>,
    ) -> Result<(u16, bool, Vec<u8>), ureq::Error> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut r = match png {
            Some(body) => {
                let mut req = agent.post(&url).header("Content-Type", "image/png");
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.send(body)?
            }
            None => {
                let mut req = agent.get(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()?
            }
        };
        let retry = r.headers().contains_key("retry-after");
        Ok((r.status().as_u16(), retry, r.body_mut().read_to_vec()?))
    }
}

/// A CA, a certificate of it for 127.0.0.1 and a token file (mode 600) in `dir`: the server's
/// files and the client's settings.
fn secure(dir: &Path) -> Result<(TlsFiles, PathBuf, String, ureq::tls::TlsConfig)> {
    std::fs::create_dir_all(dir)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "ikd loadtest CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate()?)?;
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &*ca)?;
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let token = format!("loadtest-{nanos:x}-{}", std::process::id());
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("loadtest {token}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600))?;
    }
    let root = ureq::tls::Certificate::from_der(ca.der()).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    Ok((files, tokens, token, tls))
}

/// What the `GET /v1/runs` phases measured: transport, fresh connections, requests/s, p50 and
/// p99 ms.
type Light = (Transport, bool, f64, f64, f64);

fn measure(args: &LoadtestArgs, scratch: &Path) -> Result<()> {
    std::fs::create_dir_all(scratch)?;
    let (run_dir, images_dir) = match &args.run {
        Some(r) => (r.clone(), None),
        None => {
            let (r, d) = make_run(args, scratch)?;
            (r, Some(d))
        }
    };
    let predictor = ikd::Predictor::open(&run_dir, &candle_core::Device::Cpu)?
        .with_kernel_policy(ikd::KernelPolicy::from_env());
    let side = predictor.config().load_size;
    let bodies = Arc::new(request_images(images_dir.as_deref(), side, scratch)?);
    let decoded: Vec<image::DynamicImage> =
        bodies.iter().map(|b| ikd_data::decode_image(b)).collect::<Result<_, _>>()?;
    let batch: Vec<image::DynamicImage> =
        decoded.iter().cycle().take(args.max_batch).cloned().collect();

    let baseline_before = score_batch_rate(&predictor, &batch, args.seconds)?;
    eprintln!("score_batch({}): {baseline_before:.2} images/s", args.max_batch);
    drop(predictor);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (mut phases, mut light, mut overload) = (Vec::new(), Vec::new(), None);
    for (i, &transport) in args.transports.iter().enumerate() {
        let mut config = ServeConfig {
            max_batch: args.max_batch,
            max_wait: Duration::from_millis(args.max_wait_ms),
            queue: args.queue,
            kernels: ikd::KernelPolicy::from_env(),
            ..ServeConfig::new(vec![RunSpec { name: "run".into(), dir: run_dir.clone() }])
        };
        let (token, tls) = match transport {
            Transport::Plain => (None, None),
            Transport::Tls => {
                let (files, tokens, token, tls) = secure(&scratch.join("tls"))?;
                config.tls = Some(files);
                config.token_file = Some(tokens);
                (Some(token), Some(tls))
            }
        };
        let server = rt.block_on(Server::bind(config, "127.0.0.1:0"))?;
        rt.block_on(server.ready())?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        let base = format!("{scheme}://{}", server.local_addr());
        let target = Target { transport, base, token, tls };
        for &clients in &args.clients {
            let name = transport_name(transport);
            eprintln!("{name}: {clients} clients for {} s", args.seconds);
            let p = drive(
                &target,
                &bodies,
                clients,
                Duration::from_secs(args.seconds),
                args.max_requests,
            );
            eprintln!("  {:.2} images/s, {} errors", p.throughput(), p.errors + p.rejected);
            phases.push(p);
        }
        if args.light_seconds > 0 {
            for fresh in [false, true] {
                light.push(light_phase(&target, fresh, Duration::from_secs(args.light_seconds))?);
            }
        }
        if args.overload_seconds > 0 && i + 1 == args.transports.len() {
            let clients = args.queue * 2 + args.max_batch;
            eprintln!("overload: {clients} clients for {} s", args.overload_seconds);
            let duration = Duration::from_secs(args.overload_seconds);
            let p = drive(&target, &bodies, clients, duration, usize::MAX);
            let recovery = drive(&target, &bodies, 1, Duration::from_secs(5), 3);
            overload = Some((p, recovery));
        }
        rt.block_on(server.shutdown())?;
    }
    drop(rt);

    let predictor = ikd::Predictor::open(&run_dir, &candle_core::Device::Cpu)?
        .with_kernel_policy(ikd::KernelPolicy::from_env());
    let baseline_after = score_batch_rate(&predictor, &batch, args.seconds)?;
    let baselines = (baseline_before, baseline_after);
    print_tables(args, &predictor, side, &phases, &light, baselines, overload.as_ref());
    let failed: usize = phases.iter().map(|p| p.errors + p.rejected).sum();
    if failed > 0 {
        bail!("{failed} requests failed in the measured phases");
    }
    if let Some((o, r)) = &overload {
        if o.errors > 0 || r.ok == 0 || r.errors + r.rejected > 0 {
            bail!("the overload phase failed requests other than with 503, or did not recover");
        }
    }
    Ok(())
}

fn print_tables(
    args: &LoadtestArgs,
    predictor: &ikd::Predictor,
    side: u32,
    phases: &[Phase],
    light: &[Light],
    (before, after): (f64, f64),
    overload: Option<&(Phase, Phase)>,
) {
    let baseline = (before + after) / 2.0;
    println!(
        "ikd serve, {} {}², --max-batch {} --max-wait-ms {} --queue {}, CPU, {} s per phase, 127.0.0.1",
        predictor.config().backbone,
        side,
        args.max_batch,
        args.max_wait_ms,
        args.queue,
        args.seconds
    );
    println!();
    println!("| transport | clients | requests | errors | images/s | vs score_batch | p50 ms | p95 ms | p99 ms | mean batch |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in phases {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0}% | {:.0} | {:.0} | {:.0} | {:.1} |",
            transport_name(p.transport),
            p.clients,
            p.ok + p.errors + p.rejected,
            p.errors + p.rejected,
            p.throughput(),
            100.0 * p.throughput() / baseline,
            p.percentile(50.0),
            p.percentile(95.0),
            p.percentile(99.0),
            p.mean_batch()
        );
    }
    println!();
    println!(
        "Predictor::score_batch({}) in the same process: {before:.2} images/s before the \
         phases, {after:.2} after (mean {baseline:.2})",
        args.max_batch
    );
    if !light.is_empty() {
        println!();
        println!("| transport | GET /v1/runs, 1 client | requests/s | p50 ms | p99 ms |");
        println!("|---|---|---:|---:|---:|");
        for (t, fresh, rate, p50, p99) in light {
            let conn = if *fresh { "a new connection each" } else { "one kept connection" };
            println!("| {} | {conn} | {rate:.0} | {p50:.2} | {p99:.2} |", transport_name(*t));
        }
    }
    if let Some((o, r)) = overload {
        println!();
        println!(
            "overload ({}), {} clients for {:.0} s (queue {}): {} answered 200, {} answered 503 \
             with Retry-After, {} other errors, slowest answer {:.0} ms; then {}/{} requests \
             answered 200",
            transport_name(o.transport),
            o.clients,
            o.seconds,
            args.queue,
            o.ok,
            o.rejected,
            o.errors,
            o.latencies_ms.last().copied().unwrap_or(f64::NAN),
            r.ok,
            r.ok + r.errors + r.rejected
        );
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Plain => "HTTP",
        Transport::Tls => "HTTPS + token",
    }
}

/// One client sending `GET /v1/runs` for `duration`, on one kept connection or on a new
/// connection (a new TLS handshake) each time.
fn light_phase(target: &Target, fresh: bool, duration: Duration) -> Result<Light> {
    let transport = transport_name(target.transport);
    eprintln!("{transport}: GET /v1/runs for {} s (new connections: {fresh})", duration.as_secs());
    let mut agent = target.agent();
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        if fresh {
            agent = target.agent();
        }
        let t = Instant::now();
        let (status, _, body) = target.request(&agent, "/v1/runs", None)?;
        if status != 200 {
            bail!("GET /v1/runs: {status} {}", String::from_utf8_lossy(&body));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let at = |p: f64| lat[((p / 100.0) * (lat.len() - 1) as f64).round() as usize];
    Ok((target.transport, fresh, rate, at(50.0), at(99.0)))
}

/// Images per second of `score_batch` on `batch`, over at least three calls after a warm-up
/// call, for about `seconds`.
fn score_batch_rate(
    p: &ikd::Predictor,
    batch: &[image::DynamicImage],
    seconds: u64,
) -> Result<f64> {
    p.score_batch(batch)?;
    let start = Instant::now();
    let mut calls = 0;
    while calls < 3 || (start.elapsed().as_secs() < seconds / 2 && calls < 1000) {
        p.score_batch(batch)?;
        calls += 1;
    }
    Ok((calls * batch.len()) as f64 / start.elapsed().as_secs_f64())
}

/// `clients` threads posting images, one request at a time each, until `duration` has passed or
/// `max_requests` were sent. A 503 is counted and retried after 50 ms.
fn drive(
    target: &Target,
    bodies: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    duration: Duration,
    max_requests: usize,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (bodies, stop, sent) = (bodies.clone(), stop.clone(), sent.clone());
            let target = target.clone();
            std::thread::spawn(move || {
                let agent = target.agent();
                let (mut ok, mut errors, mut rejected) = (0, 0, 0);
                let (mut lat, mut batches) = (Vec::new(), Vec::new());
                let mut k = i;
                while !stop.load(Ordering::Relaxed)
                    && start.elapsed() < duration
                    && sent.fetch_add(1, Ordering::Relaxed) < max_requests
                {
                    let body = &bodies[k % bodies.len()];
                    k += 1;
                    let t = Instant::now();
                    let r = target.request(&agent, "/v1/runs/run/score", Some(body));
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    match r {
                        Ok((200, _, body)) => {
                            ok += 1;
                            lat.push(ms);
                            if let Ok(s) = serde_json::from_slice::<ScoreResponse>(&body) {
                                batches.push(s.images[0].batch_size);
                            }
                        }
                        Ok((503, true, _)) => {
                            rejected += 1;
                            lat.push(ms);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok((status, _, body)) => {
                            errors += 1;
                            eprintln!("  status {status}: {}", String::from_utf8_lossy(&body));
                        }
                        Err(e) => {
                            errors += 1;
                            eprintln!("  request failed: {e}");
                        }
                    }
                }
                (ok, errors, rejected, lat, batches)
            })
        })
        .collect();
    let mut phase = Phase {
        transport: target.transport,
        clients,
        ok: 0,
        errors: 0,
        rejected: 0,
        seconds: 0.0,
        latencies_ms: Vec::new(),
        batch_sizes: Vec::new(),
    };
    for t in threads {
        let (ok, errors, rejected, lat, batches) =
            t.join().unwrap_or((0, 1, 0, Vec::new(), Vec::new()));
        phase.ok += ok;
        phase.errors += errors;
        phase.rejected += rejected;
        phase.latencies_ms.extend(lat);
        phase.batch_sizes.extend(batches);
    }
    stop.store(true, Ordering::Relaxed);
    phase.seconds = start.elapsed().as_secs_f64();
    phase.latencies_ms.sort_by(f64::total_cmp);
    phase
}
