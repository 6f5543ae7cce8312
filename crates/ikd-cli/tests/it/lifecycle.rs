//! A run's life through every kind of interruption: a stop at an epoch's end (by `--max-steps`,
//! by a SIGINT while the epoch's checkpoint is written) leaves a checkpointed run and no student,
//! and `ikd run` continues a run after any interruption (none, SIGINT mid-epoch, SIGINT at an
//! epoch's end, kill -9, a start that never checkpointed) to the student of an uninterrupted
//! run, byte for byte; a finished run is left as it is.
#![cfg(unix)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::signal::{dataset, log_lines};
use super::{ikd_err, ikd_ok, RECIPE};

/// Steps of one epoch: `signal`'s 16 training images at batch 2 (and `RECIPE` asks for 2 epochs).
const PER_EPOCH: usize = 8;

/// `ikd COMMAND --data-root ROOT --category tile --out RUN` with the small recipe and `extra`.
fn args<'a>(command: &'a str, root: &'a str, run: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![command, "--data-root", root, "--category", "tile", "--out", run];
    a.extend(RECIPE);
    a.extend(extra);
    a
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ikd"))
        .arg("--quiet")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `ready` holds (training got that far).
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(180), "waited 180 s for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, sig: &str) {
    let sent = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// Waits for an interrupted `ikd`: exit 130, its stderr returned.
fn interrupted(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "exit status after SIGINT; stderr: {stderr}");
    stderr
}

fn status(run: &Path) -> String {
    let out = ikd_ok(&["status", run.to_str().unwrap()]);
    out.split('\t').next().unwrap().to_string()
}

fn position(run: &Path) -> ikd::checkpoint::Position {
    let path = run.join(ikd::files::CHECKPOINT);
    ikd::checkpoint::Checkpoint::load(&path, &candle_core::Device::Cpu).unwrap().position
}

fn student(run: &Path) -> Vec<u8> {
    std::fs::read(run.join(ikd::files::STUDENT))
        .unwrap_or_else(|e| panic!("{}: {e}", run.join(ikd::files::STUDENT).display()))
}

/// Every step logged once, in order.
fn assert_log_complete(run: &Path) {
    let text = std::fs::read_to_string(run.join(ikd::files::TRAIN_LOG)).unwrap();
    let steps: Vec<u64> =
        text.lines().map(|l| serde_json::from_str::<ikd::LogEntry>(l).unwrap().step).collect();
    assert_eq!(steps, (1..=2 * PER_EPOCH as u64).collect::<Vec<_>>(), "{}", run.display());
}

/// The epoch's end after the first epoch: what a stop there must leave.
const AFTER_EPOCH_1: ikd::checkpoint::Position =
    ikd::checkpoint::Position { step: PER_EPOCH as u64, epoch: 1, batch: 0 };

#[test]
fn a_stop_at_an_epochs_end_is_a_checkpointed_run_that_resumes_to_the_same_student() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let root = root.to_str().unwrap();
    let full = tmp.path().join("full");
    ikd_ok(&args("train", root, full.to_str().unwrap(), &["--no-eval"]));
    let want = student(&full);

    // --max-steps at the first epoch's end
    let run = tmp.path().join("max-steps");
    let run_s = run.to_str().unwrap();
    let out = ikd_ok(&args("train", root, run_s, &["--max-steps", "8"]));
    assert!(out.contains("before the last epoch") && out.contains("--resume"), "{out}");
    assert_eq!(status(&run), "checkpointed");
    assert!(!run.join(ikd::files::STUDENT).exists(), "a student after one epoch of two");
    assert_eq!(position(&run), AFTER_EPOCH_1);
    ikd_ok(&["train", "--out", run_s, "--resume", "--no-eval"]);
    assert_eq!(status(&run), "trained");
    assert!(student(&run) == want, "the resumed student differs from the uninterrupted one");
    assert_log_complete(&run);

    // SIGINT while the first epoch's checkpoint is written (held open 3 s by the test hook)
    let run = tmp.path().join("sigint");
    let run_s = run.to_str().unwrap();
    let child = spawn(
        &args("train", root, run_s, &["--no-eval"]),
        &[("IKD_TEST_CHECKPOINT_DELAY_MS", "3000")],
    );
    wait_until("the first epoch's last step", || log_lines(&run) >= PER_EPOCH);
    signal(&child, "-INT");
    let stderr = interrupted(child);
    assert!(stderr.contains("--resume"), "says how to continue: {stderr}");
    assert_eq!(status(&run), "checkpointed");
    assert!(!run.join(ikd::files::STUDENT).exists(), "a student after one epoch of two");
    assert_eq!(position(&run), AFTER_EPOCH_1);
    assert_eq!(log_lines(&run), PER_EPOCH);
    ikd_ok(&["train", "--out", run_s, "--resume", "--no-eval"]);
    assert!(student(&run) == want, "the resumed student differs from the uninterrupted one");
    assert_log_complete(&run);
}

#[test]
fn ikd_run_continues_after_every_interruption_to_the_same_student() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let root = root.to_str().unwrap();

    // none: one `ikd run` trains and tests
    let full = tmp.path().join("full");
    let full_s = full.to_str().unwrap();
    let out = ikd_ok(&args("run", root, full_s, &[]));
    assert!(out.contains("empty run: starting it") && out.contains("pixel AUROC"), "{out}");
    assert_eq!(status(&full), "tested");
    let want = student(&full);
    let metrics = std::fs::metadata(full.join(ikd::files::METRICS)).unwrap().modified().unwrap();
    // again: nothing to do, and it says so
    let out = ikd_ok(&["run", "--out", full_s]);
    assert!(out.contains("nothing to do"), "{out}");
    let again = std::fs::metadata(full.join(ikd::files::METRICS)).unwrap().modified().unwrap();
    assert_eq!(metrics, again, "a finished run is left as it is");
    // a differing setting is an error naming it, whatever the run's state
    let err = ikd_err(&args("run", root, full_s, &["--lr", "1e-3"]));
    assert!(err.contains("other settings (lr: 0.00005 saved, 0.001 given)"), "{err}");

    let finish = |run: &Path, found: &str| {
        let out = ikd_ok(&["run", "--out", run.to_str().unwrap()]);
        assert!(out.contains(found), "{out}");
        assert_eq!(status(run), "tested", "{}", run.display());
        assert!(
            student(run) == want,
            "{}: the student differs from the uninterrupted one",
            run.display()
        );
        assert_log_complete(run);
    };

    // SIGINT mid-epoch
    let run = tmp.path().join("sigint-mid-epoch");
    let child = spawn(&args("run", root, run.to_str().unwrap(), &[]), &[]);
    wait_until("two steps", || log_lines(&run) >= 2);
    signal(&child, "-INT");
    let stderr = interrupted(child);
    assert!(stderr.contains("ikd run --out"), "says how to continue: {stderr}");
    assert_eq!(status(&run), "checkpointed");
    let p = position(&run);
    assert!(p.epoch == 0 && (2..PER_EPOCH as u64).contains(&p.batch), "mid-epoch: {p:?}");
    finish(&run, "checkpointed run: resuming it");

    // SIGINT while the first epoch's checkpoint is written
    let run = tmp.path().join("sigint-epoch-end");
    let child = spawn(
        &args("run", root, run.to_str().unwrap(), &[]),
        &[("IKD_TEST_CHECKPOINT_DELAY_MS", "3000")],
    );
    wait_until("the first epoch's last step", || log_lines(&run) >= PER_EPOCH);
    signal(&child, "-INT");
    interrupted(child);
    assert_eq!((status(&run), position(&run)), ("checkpointed".to_string(), AFTER_EPOCH_1));
    finish(&run, "checkpointed run: resuming it");

    // kill -9 in the second epoch: the log runs past the checkpoint (checkpoints are held 3 s
    // by the test hook: the kill lands before the last one)
    let run = tmp.path().join("kill-9");
    let hold = [("IKD_TEST_CHECKPOINT_DELAY_MS", "3000")];
    let mut child = spawn(&args("run", root, run.to_str().unwrap(), &[]), &hold);
    wait_until("two steps after the first checkpoint", || {
        run.join(ikd::files::CHECKPOINT).is_file() && log_lines(&run) >= PER_EPOCH + 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status(&run), "checkpointed");
    assert!(log_lines(&run) > position(&run).step as usize, "steps after the checkpoint logged");
    finish(&run, "checkpointed run: resuming it");

    // a start that never checkpointed (killed in its first epoch, before the held checkpoint):
    // cleared and started again
    let run = tmp.path().join("failed-start");
    let mut child = spawn(&args("run", root, run.to_str().unwrap(), &[]), &hold);
    wait_until("two steps", || log_lines(&run) >= 2);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status(&run), "started");
    finish(&run, "started run: its start never reached a checkpoint: starting it again");
}
