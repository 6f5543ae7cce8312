//! `ikd serve` on tiny runs: scoring (one image, a multipart batch, heat maps and masks), every
//! error status, two runs at once, the same scores as `ikd predict` to the bit, and SIGTERM with
//! requests in flight. Servers run in-process on ephemeral ports (the `ikd-serve` library) or as
//! the real `ikd serve` process. No test waits on a clock to make something happen: a full queue
//! and a timeout come from holding the run's queue back (`Server::set_paused`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::client::{multipart, Client, Response};
use base64::Engine;
use ikd_serve::{RunSpec, ScoreResponse, ServeConfig, Server};

use super::{dataset, ikd_ok, train_args};

/// Two runs of the tiny `tile` category, made once for every test here: `tested` (trained and
/// tested: decisions and masks) and `raw` (`--no-eval`: raw scores only); and the data root.
pub(super) struct Fixture {
    pub(super) tested: PathBuf,
    raw: PathBuf,
    pub(super) root: PathBuf,
}

pub(super) fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let root = dataset(&dir);
        let (tested, raw) = (dir.join("tested"), dir.join("raw"));
        let root_s = root.to_str().unwrap();
        ikd_ok(&train_args(root_s, tested.to_str().unwrap()));
        let mut args = train_args(root_s, raw.to_str().unwrap());
        let seed = args.iter().position(|a| *a == "--seed").unwrap() + 1;
        args[seed] = "4";
        args.push("--no-eval");
        ikd_ok(&args);
        Fixture { tested, raw, root }
    })
}

/// The category's test images, sorted.
pub(super) fn test_images(root: &Path) -> Vec<PathBuf> {
    let (images, _) = ikd::expand_inputs(&[root.join("tile/test")], true).unwrap();
    let v: Vec<PathBuf> = images.into_iter().map(|(p, _)| p).collect();
    assert!(v.len() >= 4, "the fixture has test images: {v:?}");
    v
}

struct Running {
    rt: tokio::runtime::Runtime,
    server: Server,
}

impl Running {
    fn start(config: ServeConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(Server::bind(config, "127.0.0.1:0")).unwrap();
        rt.block_on(server.ready()).unwrap();
        Self { rt, server }
    }

    fn client(&self) -> Client {
        Client::new(self.server.local_addr()).with_timeout(Duration::from_secs(300))
    }

    fn stop(self) {
        self.rt.block_on(self.server.shutdown()).unwrap();
    }
}

fn config(runs: &[(&str, &Path)]) -> ServeConfig {
    let runs = runs.iter().map(|(n, d)| RunSpec { name: n.to_string(), dir: d.to_path_buf() });
    ServeConfig { max_batch: 4, ..ServeConfig::new(runs.collect()) }
}

fn error_of(r: &Response) -> String {
    let v: serde_json::Value = r.json().unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    v["error"].as_str().unwrap_or_else(|| panic!("no error in {}", r.text())).to_string()
}

fn decode_b64_png(s: &str) -> image::DynamicImage {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap()
}

/// Waits (polling, with a generous limit) until `cond` holds.
pub(super) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(300), "waited 300 s for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serve_scores_one_image_a_batch_heat_maps_and_masks() {
    let f = fixture();
    let images = test_images(&f.root);
    let s = Running::start(config(&[("tile", &f.tested)]));
    let mut c = s.client();
    assert_eq!(c.get("/healthz").unwrap().status, 200);
    assert_eq!(c.get("/readyz").unwrap().status, 200);

    // one image, a plain body
    let png = std::fs::read(&images[0]).unwrap();
    let r = c.post("/v1/runs/tile/score", "image/png", &png).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let one: ScoreResponse = r.json().unwrap();
    assert_eq!((one.run.as_str(), one.images.len()), ("tile", 1));
    let p = &one.images[0];
    let info = &s.server.runs()[0];
    let d = info.decision.expect("a tested run decides");
    assert_eq!(p.threshold, Some(d.threshold));
    assert_eq!(p.decision.as_deref(), Some(if d.is_anomalous(p.score) { "NG" } else { "OK" }));
    assert_eq!(p.normalized, Some(d.normalized(p.score)));
    assert!(p.defect_fraction.is_some_and(|f| (0.0..=1.0).contains(&f)));
    assert!(p.queue_ms >= 0.0 && p.inference_ms > 0.0 && p.batch_size >= 1);
    assert!(p.heatmap_png.is_none() && p.mask_png.is_none(), "only when asked for");
    assert_eq!((p.width, p.height), (64, 64));

    // a batch: multipart with every test image, one of them as BMP; heat maps and masks
    let mut parts: Vec<(String, Vec<u8>)> = images
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()))
        .collect();
    let mut bmp = Vec::new();
    image::open(&images[1])
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut bmp), image::ImageFormat::Bmp)
        .unwrap();
    parts[1] = ("second.bmp".into(), bmp);
    // and one as a JPEG of another size: a batch takes images of any sizes
    let mut jpeg = Vec::new();
    image::open(&images[2])
        .unwrap()
        .resize_exact(96, 48, image::imageops::FilterType::Triangle)
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    parts[2] = ("third.jpg".into(), jpeg);
    let refs: Vec<(&str, &[u8])> = parts.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let (ct, body) = multipart(&refs);
    let r = c.post("/v1/runs/tile/score?heatmap=png&mask=png", &ct, &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let batch: ScoreResponse = r.json().unwrap();
    assert_eq!(batch.images.len(), images.len());
    assert_eq!(batch.images[1].name.as_deref(), Some("second.bmp"));
    assert_eq!((batch.images[2].width, batch.images[2].height), (96, 48));
    assert_eq!(batch.images[0].score, p.score, "the same image scores the same in a batch");
    assert!(batch.images.iter().any(|i| i.batch_size > 1), "the images were batched");
    let predictor = ikd::Predictor::open(&f.tested, &candle_core::Device::Cpu).unwrap();
    for (i, got) in batch.images.iter().enumerate() {
        let img = ikd_data::decode_image(&parts[i].1).unwrap();
        let want = predictor.score(&img).unwrap();
        assert_eq!(got.score, want.score, "image {i}: the library's score");
        let heat = decode_b64_png(got.heatmap_png.as_ref().unwrap()).to_rgb8();
        assert_eq!(heat, predictor.heatmap(&img, &want), "image {i}: ikd predict's heat map");
        let mask = decode_b64_png(got.mask_png.as_ref().unwrap()).to_luma8();
        assert_eq!(&mask, want.mask.as_ref().unwrap(), "image {i}: the mask");
        assert!(mask.as_raw().iter().all(|&v| v == 0 || v == 255));
    }

    // the runs and the metrics
    let runs: serde_json::Value = c.get("/v1/runs").unwrap().json().unwrap();
    let run = &runs["runs"][0];
    assert_eq!((run["name"].as_str(), run["state"].as_str()), (Some("tile"), Some("ready")));
    assert_eq!(run["backbone"], "hrnet_w18_small");
    assert_eq!(
        (run["image_size"].as_u64(), run["teacher"]["source"].as_str()),
        (Some(64), Some("random"))
    );
    let m = c.get("/metrics").unwrap();
    assert!(m.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let m = m.text();
    assert!(m.contains("ikd_http_requests_total{route=\"score\",status=\"200\"} 2\n"), "{m}");
    assert!(m.contains(&format!("ikd_images_scored_total{{run=\"tile\"}} {}\n", images.len() + 1)));
    assert!(m.contains("ikd_queue_depth{run=\"tile\"} 0\n"), "{m}");
    assert!(m.contains("ikd_batch_size_bucket{run=\"tile\",le=\"+Inf\"}"), "{m}");
    assert!(m.contains("ikd_score_request_duration_seconds_count 2\n"), "{m}");
    s.stop();
}

#[test]
fn serve_answers_each_error_with_its_status() {
    let f = fixture();
    let png = std::fs::read(&test_images(&f.root)[0]).unwrap();
    let cfg = ServeConfig {
        queue: 1,
        max_batch: 1,
        body_limit: png.len() + 1024,
        request_timeout: Duration::from_millis(1500),
        ..config(&[("tile", &f.tested)])
    };
    let s = Running::start(cfg);
    let mut c = s.client();

    let r = c.post("/v1/runs/nope/score", "image/png", &png).unwrap();
    assert_eq!(r.status, 404);
    assert!(error_of(&r).contains("no run named `nope` (serving: tile)"), "{}", r.text());
    assert_eq!(c.get("/v2/else").unwrap().status, 404);

    let cases: [(&[u8], &str); 4] = [
        (b"hello, not an image", "unsupported image format"),
        (&png[..png.len() / 2], "corrupt or truncated image"),
        (b"", "empty body"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "PNG, JPEG, BMP or TIFF"),
    ];
    for (body, says) in cases {
        let r = c.post("/v1/runs/tile/score", "image/png", body).unwrap();
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(error_of(&r).contains(says), "{} should say {says}", r.text());
    }
    let (ct, body) = multipart(&[("ok.png", &png), ("bad.png", b"\x89PNG\r\n\x1a\nbroken")]);
    let r = c.post("/v1/runs/tile/score", &ct, &body).unwrap();
    assert_eq!(r.status, 400);
    assert!(error_of(&r).starts_with("image 2 (bad.png): corrupt"), "{}", r.text());
    let r = c.post("/v1/runs/tile/score?heatmap=jpg", "image/png", &png).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c.post("/v1/runs/tile/score?colour=red", "image/png", &png).unwrap();
    assert!(r.status == 400 && error_of(&r).contains("unknown query parameter `colour`"));

    // 413: a body over the limit, and more images than the queue holds
    let big = vec![0u8; png.len() + 4096];
    let r = c.post("/v1/runs/tile/score", "image/png", &big).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(error_of(&r).contains("--body-limit"), "{}", r.text());
    let mut c = s.client();
    let (ct, body) = multipart(&[("a.png", &png[..100]), ("b.png", &png[..100])]);
    let r = c.post("/v1/runs/tile/score", &ct, &body).unwrap();
    assert_eq!(r.status, 400, "corrupt images are found before the queue: {}", r.text());

    // 503 with Retry-After when the queue (1 image) is full, then 504 for the held request
    assert!(s.server.set_paused("tile", true));
    let addr = s.server.local_addr();
    let png2 = png.clone();
    let held = std::thread::spawn(move || {
        let mut c = Client::new(addr).with_timeout(Duration::from_secs(300));
        c.post("/v1/runs/tile/score", "image/png", &png2).unwrap()
    });
    wait_until("the first image to be queued", || s.server.queue_depth("tile") == Some(1));
    let r = c.post("/v1/runs/tile/score", "image/png", &png).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(error_of(&r).contains("queue is full"), "{}", r.text());
    let r = held.join().unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(error_of(&r).contains("request timeout (1500 ms)"), "{}", r.text());
    s.server.set_paused("tile", false);
    // the timed-out image leaves the queue without being scored
    wait_until("the queue to empty", || s.server.queue_depth("tile") == Some(0));
    let m = c.get("/metrics").unwrap().text();
    for status in [400, 404, 413, 503, 504] {
        assert!(m.contains(&format!("route=\"score\",status=\"{status}\"")), "{status}: {m}");
    }
    assert!(m.contains("ikd_images_scored_total{run=\"tile\"} 0\n"), "{m}");
    s.stop();

    // a service that was full recovers: the next request is answered
    let s =
        Running::start(ServeConfig { queue: 1, max_batch: 1, ..config(&[("tile", &f.tested)]) });
    assert!(s.server.set_paused("tile", true));
    let png2 = png.clone();
    let addr = s.server.local_addr();
    let held = std::thread::spawn(move || {
        Client::new(addr).post("/v1/runs/tile/score", "image/png", &png2).unwrap().status
    });
    wait_until("the first image to be queued", || s.server.queue_depth("tile") == Some(1));
    let mut c = s.client();
    assert_eq!(c.post("/v1/runs/tile/score", "image/png", &png).unwrap().status, 503);
    s.server.set_paused("tile", false);
    assert_eq!(held.join().unwrap(), 200);
    assert_eq!(c.post("/v1/runs/tile/score", "image/png", &png).unwrap().status, 200);
    // more images in one request than the queue can ever hold
    let (ct, body) = multipart(&[("a.png", &png), ("b.png", &png)]);
    let r = c.post("/v1/runs/tile/score", &ct, &body).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(error_of(&r).contains("more images in one request than the queue holds (1)"));
    s.stop();
}

#[test]
fn a_run_that_cannot_load_is_never_ready() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for e in std::fs::read_dir(&f.tested).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, broken.join(p.file_name().unwrap())).unwrap();
        }
    }
    let student = broken.join(ikd::files::STUDENT);
    let bytes = std::fs::read(&student).unwrap();
    std::fs::write(&student, &bytes[..bytes.len() / 2]).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::bind(config(&[("broken", &broken)]), "127.0.0.1:0")).unwrap();
    let e = rt.block_on(server.ready()).unwrap_err().to_string();
    assert!(e.contains("run broken") && e.contains("student.safetensors"), "{e}");
    let mut c = Client::new(server.local_addr());
    assert_eq!(c.get("/healthz").unwrap().status, 200, "the process is up");
    let r = c.get("/readyz").unwrap();
    assert_eq!(r.status, 503);
    assert!(error_of(&r).contains("not ready: broken"), "{}", r.text());
    let runs: serde_json::Value = c.get("/v1/runs").unwrap().json().unwrap();
    assert_eq!(runs["runs"][0]["state"], "failed");
    let png = std::fs::read(&test_images(&f.root)[0]).unwrap();
    let r = c.post("/v1/runs/broken/score", "image/png", &png).unwrap();
    assert_eq!(r.status, 500);
    assert!(error_of(&r).contains("failed to load"), "{}", r.text());
    rt.block_on(server.shutdown()).unwrap();

    // the command says so (after its log lines) and exits 1
    let o = super::ikd(&["serve", "--run", broken.to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("error: run broken") && last.contains("student.safetensors"),
        "{stderr}"
    );
}

#[test]
fn serve_two_runs_at_once() {
    let f = fixture();
    let png = std::fs::read(&test_images(&f.root)[2]).unwrap();
    let s = Running::start(config(&[("line1", &f.tested), ("line2", &f.raw)]));
    let mut c = s.client();
    let runs: serde_json::Value = c.get("/v1/runs").unwrap().json().unwrap();
    let names: Vec<&str> =
        runs["runs"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["line1", "line2"]);
    assert!(runs["runs"][1]["decision"].is_null(), "the untested run has no decision");

    let score = |c: &mut Client, run: &str| -> ScoreResponse {
        let r = c.post(&format!("/v1/runs/{run}/score"), "image/png", &png).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().unwrap()
    };
    let (a, b) = (score(&mut c, "line1"), score(&mut c, "line2"));
    assert!(a.images[0].decision.is_some() && a.images[0].threshold.is_some());
    let raw = &b.images[0];
    assert!(raw.decision.is_none() && raw.normalized.is_none() && raw.defect_fraction.is_none());
    assert_ne!(a.images[0].score, raw.score, "two different students");
    let want = ikd::Predictor::open(&f.raw, &candle_core::Device::Cpu)
        .unwrap()
        .score(&ikd_data::decode_image(&png).unwrap())
        .unwrap();
    assert_eq!(raw.score, want.score);
    // a heat map of an untested run spans its own map; a mask needs a pixel threshold
    let r = c.post("/v1/runs/line2/score?heatmap=png", "image/png", &png).unwrap();
    assert_eq!(r.status, 200);
    let r = c.post("/v1/runs/line2/score?mask=png", "image/png", &png).unwrap();
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains("never tested"), "{}", r.text());

    // both runs at once from several clients
    let addr = s.server.local_addr();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let png = png.clone();
            std::thread::spawn(move || {
                let run = if i % 2 == 0 { "line1" } else { "line2" };
                let r = Client::new(addr).post(&format!("/v1/runs/{run}/score"), "image/png", &png);
                let r: ScoreResponse = r.unwrap().json().unwrap();
                (run, r.images[0].score)
            })
        })
        .collect();
    for t in threads {
        let (run, score) = t.join().unwrap();
        let want = if run == "line1" { a.images[0].score } else { raw.score };
        assert_eq!(score, want, "{run}");
    }
    s.stop();
}

#[test]
fn serve_scores_equal_predicts_to_the_bit() {
    let f = fixture();
    let images = test_images(&f.root);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args =
        vec!["predict", "--run", f.tested.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    ikd_ok(&args);
    let csv = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let predicted: Vec<(f64, f64, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[1].parse().unwrap(), c[2].parse().unwrap(), c[4].parse().unwrap())
        })
        .collect();
    assert_eq!(predicted.len(), images.len());

    let s = Running::start(config(&[("tile", &f.tested)]));
    let mut c = s.client();
    let parts: Vec<(String, Vec<u8>)> =
        images.iter().map(|p| (p.display().to_string(), std::fs::read(p).unwrap())).collect();
    let refs: Vec<(&str, &[u8])> = parts.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let (ct, body) = multipart(&refs);
    let served: ScoreResponse = c.post("/v1/runs/tile/score", &ct, &body).unwrap().json().unwrap();
    for (i, (got, (score, normalized, fraction))) in
        served.images.iter().zip(&predicted).enumerate()
    {
        assert_eq!(got.score.to_bits(), score.to_bits(), "image {i}: score");
        assert_eq!(got.score as f32 as f64, got.score, "an f32 score");
        assert_eq!(got.normalized.unwrap().to_bits(), normalized.to_bits(), "image {i}");
        assert_eq!(got.defect_fraction.unwrap().to_bits(), fraction.to_bits(), "image {i}");
    }
    // one at a time too (batches of one)
    let r = c.post("/v1/runs/tile/score", "image/png", &parts[3].1).unwrap();
    let one: ScoreResponse = r.json().unwrap();
    assert_eq!(one.images[0].score.to_bits(), predicted[3].0.to_bits());
    s.stop();
}

pub(super) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[cfg(unix)]
#[test]
fn sigterm_with_requests_in_flight_answers_them_all_and_exits_0() {
    use std::process::{Command, Stdio};
    let f = fixture();
    let png = std::fs::read(&test_images(&f.root)[0]).unwrap();
    // batches of 16 or an hour: the requests stay queued until the shutdown flushes them
    let mut child = Command::new(env!("CARGO_BIN_EXE_ikd"))
        .args(["serve", "--run", f.tested.to_str().unwrap(), "--addr", "127.0.0.1:0"])
        .args(["--max-batch", "16", "--max-wait-ms", "3600000", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line}"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready: tested");

    let n = 6;
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let png = png.clone();
            std::thread::spawn(move || {
                let mut c = Client::new(addr).with_timeout(Duration::from_secs(300));
                c.post("/v1/runs/tested/score", "image/png", &png).unwrap()
            })
        })
        .collect();
    let mut c = Client::new(addr);
    wait_until("every request to be queued", || {
        let m = c.get("/metrics").unwrap().text();
        metric(&m, "ikd_queue_depth{run=\"tested\"}") == Some(n as f64)
    });
    drop(c);
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let s: ScoreResponse = r.json().unwrap();
        assert_eq!(s.images[0].batch_size, n, "the queued images were scored together");
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("every accepted request was answered"), "{stderr}");
    let json_lines = stderr.lines().filter(|l| l.starts_with('{')).count();
    assert!(json_lines >= 2, "JSON log lines: {stderr}");
    // nothing listens any more
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn serve_refuses_what_it_cannot_serve() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let t = f.tested.to_str().unwrap();
    let err =
        super::ikd_err(&["serve", "--run", tmp.path().to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    assert!(err.contains("not a run (no config.toml)"), "{err}");
    let err = super::ikd_err(&["serve", "--run", t, "--run", t, "--addr", "127.0.0.1:0"]);
    assert!(err.contains("two runs named `tested`") && err.contains("NAME=DIR"), "{err}");
    let err = super::ikd_err(&["serve", "--run", t, "--device", "tpu", "--addr", "127.0.0.1:0"]);
    assert!(err.contains("unknown device") && err.contains("tpu"), "{err}");
    let err = super::ikd_err(&["serve", "--run", t, "--queue", "0", "--addr", "127.0.0.1:0"]);
    assert!(err.contains("--queue"), "{err}");
}
