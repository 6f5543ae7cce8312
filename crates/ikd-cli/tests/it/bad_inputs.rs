//! Bad inputs: each a clear one-line error, a non-zero exit, nothing half-written.

use super::{dataset, ikd_err, ikd_ok, train_args};

#[test]
fn missing_category() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let out = tmp.path().join("run");
    let mut args = train_args(root.to_str().unwrap(), out.to_str().unwrap());
    args[4] = "nosuch";
    let err = ikd_err(&args);
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn empty_training_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    for e in std::fs::read_dir(root.join("tile/train/good")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let out = tmp.path().join("run");
    let err = ikd_err(&train_args(root.to_str().unwrap(), out.to_str().unwrap()));
    assert!(err.contains("train/good"), "{err}");
}

#[test]
fn corrupt_png() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let bad = root.join("tile/train/good/001.png");
    let good = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let out = tmp.path().join("run");
    let mut args = train_args(root.to_str().unwrap(), out.to_str().unwrap());
    args.extend(["--max-steps", "1"]);
    let err = ikd_err(&args);
    assert!(err.contains("001.png"), "{err}");
    // the failed start left no run: once the image is fixed, the same command trains
    assert!(!out.exists(), "a failed start left {}", out.display());
    std::fs::write(&bad, good).unwrap();
    ikd_ok(&args);
}

#[test]
fn png_cut_short() {
    // the header reads, the pixels do not: found by the loader during the first epoch, which
    // still counts as a failed start
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let bad = root.join("tile/train/good/002.png");
    let good = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let out = tmp.path().join("run");
    let mut args = train_args(root.to_str().unwrap(), out.to_str().unwrap());
    args.extend(["--max-steps", "3", "--prefetch", "1"]);
    let err = ikd_err(&args);
    assert!(err.contains("002.png"), "{err}");
    assert!(!out.exists(), "a failed start left {}", out.display());
    std::fs::write(&bad, good).unwrap();
    ikd_ok(&args);
}

#[test]
fn missing_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let gt = root.join("tile/ground_truth");
    let defect_dir = std::fs::read_dir(&gt).unwrap().next().unwrap().unwrap().path();
    let mask = std::fs::read_dir(&defect_dir).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(&mask).unwrap();
    let out = tmp.path().join("run");
    let err = ikd_err(&train_args(root.to_str().unwrap(), out.to_str().unwrap()));
    assert!(err.contains("mask"), "{err}");
}

#[test]
fn weights_of_the_wrong_backbone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    // A finished hrnet_w18_small run provides a student in timm layout; offer it as the teacher
    // of an hrnet_w18 run.
    let first = tmp.path().join("first");
    let mut args = train_args(root.to_str().unwrap(), first.to_str().unwrap());
    args[16] = "1";
    args.push("--no-eval");
    ikd_ok(&args);
    let student = first.join("student.safetensors");
    let second = tmp.path().join("second");
    let mut args = train_args(root.to_str().unwrap(), second.to_str().unwrap());
    args[8] = "hrnet_w18";
    args[10] = student.to_str().unwrap();
    let err = ikd_err(&args);
    assert!(err.contains("student.safetensors") && err.contains("shape"), "{err}");
    assert!(!second.join("checkpoint.safetensors").exists());
}

#[test]
fn unwritable_output_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    set_readonly(&ro, true);
    let out = ro.join("run");
    let out_s = out.to_str().unwrap().to_string();
    let res = std::panic::catch_unwind(|| ikd_err(&train_args(root.to_str().unwrap(), &out_s)));
    set_readonly(&ro, false);
    let err = res.unwrap();
    assert!(err.contains(out.to_str().unwrap()) || err.contains(ro.to_str().unwrap()), "{err}");
    assert!(!out.exists());
}

#[test]
fn read_only_run_dir_during_checkpoint_keeps_nothing_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let out = tmp.path().join("run");
    let out_s = out.to_str().unwrap();
    let mut args = train_args(root.to_str().unwrap(), out_s);
    args.extend(["--max-steps", "1"]);
    ikd_ok(&args);
    let before = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    set_readonly(&out, true);
    let mut args = train_args(root.to_str().unwrap(), out_s);
    args.push("--resume");
    let res = std::panic::catch_unwind(|| ikd_err(&args));
    set_readonly(&out, false);
    let err = res.unwrap();
    assert!(err.contains(out_s), "{err}");
    let after = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    assert!(before == after, "the last good checkpoint was changed");
    let stray: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

/// Makes `p` unwritable (chmod, or for root, who ignores permission bits, the immutable
/// attribute) or writable again.
fn set_readonly(p: &std::path::Path, ro: bool) {
    use std::os::unix::fs::PermissionsExt;
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    if root {
        let flag = if ro { "+i" } else { "-i" };
        let status = std::process::Command::new("chattr").arg(flag).arg(p).status().unwrap();
        assert!(status.success(), "chattr {flag} {} failed", p.display());
    } else {
        let mode = if ro { 0o555 } else { 0o755 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// A CUDA device where none can be used (a build without `--features cuda`, or no GPU or driver):
/// one line naming the device and the way out, and no run folder. `cuda:x` is not a device.
#[test]
fn a_cuda_device_without_a_gpu_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let out = tmp.path().join("run");
    let mut args = train_args(root.to_str().unwrap(), out.to_str().unwrap());
    args.extend(["--device", "cuda:x"]);
    let err = ikd_err(&args);
    assert!(err.contains("--device cuda:x: not a device: expected cuda:N"), "{err}");
    assert!(!out.exists(), "nothing written");
    if candle_core::Device::new_cuda(0).is_ok() {
        eprintln!("a CUDA GPU is usable here: the unavailable-device case is not checked");
        return;
    }
    for device in ["cuda:0", "cuda"] {
        let mut args = train_args(root.to_str().unwrap(), out.to_str().unwrap());
        args.extend(["--device", device]);
        let err = ikd_err(&args);
        assert!(err.contains(&format!("--device {device}: not available (")), "{err}");
        assert!(err.contains("--features cuda") && err.contains("or use cpu"), "{err}");
        assert!(!out.exists(), "nothing written");
    }
}
