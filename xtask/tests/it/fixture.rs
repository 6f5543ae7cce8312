//! A tiny MVTec-like dataset served over HTTP on 127.0.0.1, a fake Hugging Face cache with
//! teacher weights, and one `reproduce` run shared by the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

/// The xtask binary.
pub fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.env("RUST_LOG", "info").env("NO_COLOR", "1");
    c
}

/// A local stand-in for the dataset host: serves `body` at every path, counting the GET requests
/// of `/toy.tar.xz`.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// GET requests of `/toy.tar.xz` answered.
    pub gets: Arc<AtomicUsize>,
}

impl Server {
    /// Starts the server thread (it lives as long as the test process).
    pub fn start(body: Vec<u8>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let gets = Arc::new(AtomicUsize::new(0));
        let counter = gets.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let mut start = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(r) = lower.strip_prefix("range: bytes=") {
                        start = r.trim().trim_end_matches('-').parse().unwrap_or(0);
                    }
                }
                let head = request.starts_with("HEAD");
                if request.starts_with("GET /toy.tar.xz ") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let part = &body[start.min(body.len())..];
                let status = if start > 0 { "206 Partial Content" } else { "200 OK" };
                let range = if start > 0 {
                    format!("Content-Range: bytes {start}-{}/{}\r\n", body.len() - 1, body.len())
                } else {
                    String::new()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/x-xz\r\n{range}Connection: close\r\n\r\n",
                    part.len()
                );
                if !head {
                    let _ = stream.write_all(part);
                }
                let _ = stream.flush();
            }
        });
        Server { base, gets }
    }
}

/// Everything the `reproduce` tests use.
pub struct World {
    /// Scratch folder (kept for the life of the test process).
    pub dir: PathBuf,
    /// The manifest of the tiny dataset.
    pub manifest: PathBuf,
    /// The dataset host.
    pub server: Server,
    /// `HF_HOME` holding `timm/hrnet_w18_small.ms_in1k`.
    pub hf_home: PathBuf,
}

/// The two categories of the tiny dataset (MVTec AD names, so the paper's values apply).
pub const CATEGORIES: [Texture; 2] = [Texture::Carpet, Texture::Grid];

fn build_world() -> World {
    // Under cargo's scratch folder for integration tests, replaced on every run (the files are
    // left for inspection afterwards: the screenshot is `report.png`).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-it");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    // The dataset: synthetic textures under MVTec AD names, without the synthetic marker.
    let src = dir.join("src");
    let cfg = SyntheticConfig {
        categories: CATEGORIES.to_vec(),
        image_size: 64,
        n_train: 2,
        n_test_good: 2,
        n_test_defect: 3,
        seed: 7,
    };
    generate(&cfg, &src).unwrap();
    let mut tar = tar::Builder::new(liblzma::write::XzEncoder::new(Vec::new(), 1));
    for t in CATEGORIES {
        std::fs::remove_file(src.join(t.name()).join(ikd_data::synthetic::MARKER)).unwrap();
        tar.append_dir_all(t.name(), src.join(t.name())).unwrap();
    }
    let archive = tar.into_inner().unwrap().finish().unwrap();
    let archive_path = dir.join("toy.tar.xz");
    std::fs::write(&archive_path, &archive).unwrap();
    let sha = ikd_data::sha256_file(&archive_path, false).unwrap();
    let per = serde_json::json!({"train": 2, "test_good": 2, "test_defect": 3});
    let manifest = serde_json::json!({
        "name": "toy MVTec",
        "url": "http://127.0.0.1:9/never-used.tar.xz",
        "url_env": null,
        "file_name": "toy.tar.xz",
        "size": archive.len(),
        "sha256": sha,
        "extract_dir": "toy",
        "totals": {"train": 4, "test_good": 4, "test_defect": 6},
        "categories": CATEGORIES.iter().map(|t| serde_json::json!({"name": t.name(), "counts": per})).collect::<Vec<_>>(),
    });
    let manifest_path = dir.join("toy.json");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let server = Server::start(archive);

    // The teacher: a seeded hrnet_w18_small in timm layout, in a Hugging Face cache.
    let hf_home = dir.join("hf");
    hf_cache_with_teacher(&hf_home);
    World { dir, manifest: manifest_path, server, hf_home }
}

/// The teacher in a Hugging Face cache: what `hf_cache_with_teacher` wrote.
pub struct CachedTeacher {
    /// The snapshot's commit.
    pub revision: String,
    /// SHA-256 of the weights.
    pub sha256: String,
}

/// Writes a seeded hrnet_w18_small in timm layout into `hf_home` as `huggingface_hub` lays out
/// `timm/hrnet_w18_small.ms_in1k`: the file under `blobs/<sha256>`, `snapshots/<rev>/` linking to
/// it, `refs/main` naming the revision.
pub fn hf_cache_with_teacher(hf_home: &Path) -> CachedTeacher {
    let repo = hf_home.join("hub").join("models--timm--hrnet_w18_small.ms_in1k");
    let revision = "0123456789abcdef0123456789abcdef01234567".to_string();
    let varmap = VarMap::new();
    let cfg = ikd_hrnet::HrNetConfig::by_name("hrnet_w18_small").unwrap();
    let _net =
        ikd_hrnet::HrNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))
            .unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    let tmp = repo.join("blobs").join("incoming");
    ikd_hrnet::save_safetensors(&varmap, &tmp).unwrap();
    let sha256 = ikd_data::sha256_file(&tmp, false).unwrap();
    std::fs::rename(&tmp, repo.join("blobs").join(&sha256)).unwrap();
    let snap = repo.join("snapshots").join(&revision);
    std::fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink(
        Path::new("../../blobs").join(&sha256),
        snap.join("model.safetensors"),
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), &revision).unwrap();
    CachedTeacher { revision, sha256 }
}

/// `reproduce` with the tiny world: `extra` arguments appended.
pub fn reproduce(w: &World, runs: &Path, report: &Path, extra: &[&str]) -> Output {
    xtask()
        .arg("reproduce")
        .arg("--all")
        .arg("--manifest")
        .arg(&w.manifest)
        .arg("--url")
        .arg(format!("{}/toy.tar.xz", w.server.base))
        .arg("--dest")
        .arg(w.dir.join("data"))
        .args([
            "--backbone",
            "hrnet_w18_small",
            "--epochs",
            "1",
            "--image-size",
            "64",
            "--batch-size",
            "2",
        ])
        .arg("--runs")
        .arg(runs)
        .arg("--report-out")
        .arg(report)
        .arg("--no-progress")
        .args(extra)
        .env("HF_HOME", &w.hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("IKD_MVTEC_URL")
        .output()
        .unwrap()
}

/// The shared world and its first reproduction (two categories on two CPU workers).
pub fn first_run() -> &'static (World, PathBuf, PathBuf, Output) {
    static ONCE: OnceLock<(World, PathBuf, PathBuf, Output)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let w = build_world();
        let (runs, report) = (w.dir.join("runs"), w.dir.join("report"));
        let out = reproduce(&w, &runs, &report, &["--devices", "cpu,cpu"]);
        (w, runs, report, out)
    })
}

/// Text of an output's stdout and stderr.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
