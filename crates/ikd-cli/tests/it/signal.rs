//! SIGINT/SIGTERM during training: the step finishes, a checkpoint is written, the process exits
//! 130 saying how to resume, and the resumed run ends bit-identical to an uninterrupted one.
#![cfg(unix)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ikd_ok, train_args};

/// A synthetic `tile` category with 16 training images: 8 steps per epoch at batch 2 (and
/// `train_args` asks for 2 epochs).
pub(crate) fn dataset(dir: &Path) -> std::path::PathBuf {
    use ikd_data::synthetic::{generate, SyntheticConfig, Texture};
    let root = dir.join("data");
    let cfg = SyntheticConfig {
        categories: vec![Texture::Tile],
        image_size: 64,
        n_train: 16,
        n_test_good: 1,
        n_test_defect: 1,
        seed: 9,
    };
    generate(&cfg, &root).unwrap();
    root
}

pub(crate) fn log_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join(ikd::files::TRAIN_LOG)).map_or(0, |t| t.lines().count())
}

fn interrupt_then_resume(signal: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let root_s = root.to_str().unwrap();
    let (full, run) = (tmp.path().join("full"), tmp.path().join("run"));
    let mut args = train_args(root_s, full.to_str().unwrap());
    args.push("--no-eval");
    ikd_ok(&args);

    let mut args = train_args(root_s, run.to_str().unwrap());
    args.push("--no-eval");
    let child = Command::new(env!("CARGO_BIN_EXE_ikd"))
        .arg("--quiet")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // two steps of the first epoch logged: the signal lands in step 3 or 4 of 8
    let start = Instant::now();
    while log_lines(&run) < 2 {
        assert!(start.elapsed() < Duration::from_secs(120), "training never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "exit status after {signal}; stderr: {stderr}");
    assert!(stderr.contains("--resume"), "says how to resume: {stderr}");
    let ck = ikd::checkpoint::Checkpoint::load(
        &run.join(ikd::files::CHECKPOINT),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let steps = log_lines(&run) as u64;
    assert_eq!(ck.position.step, steps, "the checkpoint holds the last logged step");
    assert_eq!(ck.position.epoch, 0);
    assert!((2..8).contains(&ck.position.batch), "mid-epoch: {:?}", ck.position);
    assert!(!run.join(ikd::files::STUDENT).exists());

    ikd_ok(&["train", "--out", run.to_str().unwrap(), "--resume", "--no-eval"]);
    assert_eq!(log_lines(&run), 16, "no step lost or repeated");
    let a = std::fs::read(full.join(ikd::files::STUDENT)).unwrap();
    let b = std::fs::read(run.join(ikd::files::STUDENT)).unwrap();
    assert!(a == b, "the resumed student differs from the uninterrupted one");
    let la = std::fs::read_to_string(full.join(ikd::files::TRAIN_LOG)).unwrap();
    let lb = std::fs::read_to_string(run.join(ikd::files::TRAIN_LOG)).unwrap();
    let losses = |t: &str| -> Vec<f64> {
        t.lines().map(|l| serde_json::from_str::<ikd::LogEntry>(l).unwrap().loss).collect()
    };
    assert_eq!(losses(&la), losses(&lb), "the same loss at every step");
}

#[test]
fn sigint_mid_epoch_checkpoints_and_the_resumed_run_is_bit_identical() {
    interrupt_then_resume("-INT");
}

#[test]
fn sigterm_mid_epoch_checkpoints_too() {
    interrupt_then_resume("-TERM");
}
