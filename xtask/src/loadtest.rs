//! `cargo xtask loadtest`: `ikd serve` under bounded load on 127.0.0.1 — throughput and latency
//! with 1, 4 and 16 concurrent clients, beside `Predictor::score_batch` at the server's batch
//! size in the same process, then an overload (more clients than the queue holds) that must
//! answer 503s, never hang, and recover.
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
use ikd_serve::client::Client;
use ikd_serve::{RunSpec, ScoreResponse, ServeConfig, Server};

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
    /// Seconds of the overload phase (0: none).
    #[arg(long, default_value_t = 15)]
    pub overload_seconds: u64,
    /// Scratch folder (default: a folder in the system's temporary directory, removed at the end).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
}

/// What one phase measured.
struct Phase {
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
    let config = ServeConfig {
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue: args.queue,
        kernels: ikd::KernelPolicy::from_env(),
        ..ServeConfig::new(vec![RunSpec { name: "run".into(), dir: run_dir.clone() }])
    };
    let server = rt.block_on(Server::bind(config, "127.0.0.1:0"))?;
    rt.block_on(server.ready())?;
    let addr = server.local_addr();
    let mut phases = Vec::new();
    for &clients in &args.clients {
        eprintln!("{clients} clients for {} s", args.seconds);
        let p = drive(addr, &bodies, clients, Duration::from_secs(args.seconds), args.max_requests);
        eprintln!("  {:.2} images/s, {} errors", p.throughput(), p.errors + p.rejected);
        phases.push(p);
    }
    let overload = (args.overload_seconds > 0).then(|| {
        let clients = args.queue * 2 + args.max_batch;
        eprintln!("overload: {clients} clients for {} s", args.overload_seconds);
        let p =
            drive(addr, &bodies, clients, Duration::from_secs(args.overload_seconds), usize::MAX);
        let recovery = drive(addr, &bodies, 1, Duration::from_secs(5), 3);
        (p, recovery)
    });
    rt.block_on(server.shutdown())?;
    drop(rt);

    let predictor = ikd::Predictor::open(&run_dir, &candle_core::Device::Cpu)?
        .with_kernel_policy(ikd::KernelPolicy::from_env());
    let baseline_after = score_batch_rate(&predictor, &batch, args.seconds)?;
    let baseline = (baseline_before + baseline_after) / 2.0;

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
    println!("| clients | requests | errors | images/s | vs score_batch | p50 ms | p95 ms | p99 ms | mean batch |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &phases {
        println!(
            "| {} | {} | {} | {:.2} | {:.0}% | {:.0} | {:.0} | {:.0} | {:.1} |",
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
        "Predictor::score_batch({}) in the same process: {baseline_before:.2} images/s before the \
         phases, {baseline_after:.2} after (mean {baseline:.2})",
        args.max_batch
    );
    if let Some((o, r)) = &overload {
        println!(
            "overload, {} clients for {:.0} s (queue {}): {} answered 200, {} answered 503 with \
             Retry-After, {} other errors, slowest answer {:.0} ms; then {}/{} requests answered 200",
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
    addr: std::net::SocketAddr,
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
            std::thread::spawn(move || {
                let mut c = Client::new(addr).with_timeout(Duration::from_secs(120));
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
                    let r = c.post("/v1/runs/run/score", "image/png", body);
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    match r {
                        Ok(r) if r.status == 200 => {
                            ok += 1;
                            lat.push(ms);
                            if let Ok(s) = r.json::<ScoreResponse>() {
                                batches.push(s.images[0].batch_size);
                            }
                        }
                        Ok(r) if r.status == 503 && r.header("retry-after").is_some() => {
                            rejected += 1;
                            lat.push(ms);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok(r) => {
                            errors += 1;
                            eprintln!("  status {}: {}", r.status, r.text());
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
