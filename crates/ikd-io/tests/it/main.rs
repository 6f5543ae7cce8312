//! ikd-io's guarantees: complete files or none, staged folders, one progress style.

use std::io::Write;
use std::path::Path;

use ikd_io::{atomic_copy, atomic_write, atomic_write_with, StagedDir};

/// Every entry of a folder, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("student.safetensors");
    atomic_write(&p, b"old").unwrap();
    let err = atomic_write_with(&p, |f| {
        f.write_all(b"half of the new")?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert_eq!(entries(dir.path()), ["student.safetensors"]);
    assert_eq!(err.to_string(), format!("{}: disk full", p.display()));
    // the cause is said once: it is the message, not also a source
    assert!(std::error::Error::source(&err).is_none());
}

#[test]
fn a_write_replaces_the_file_creates_folders_and_keeps_normal_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a/b/metrics.json");
    atomic_write(&p, b"1").unwrap();
    atomic_write(&p, b"22").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"22");
    assert_eq!(entries(&dir.path().join("a/b")), ["metrics.json"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let mode = |q: &Path| std::fs::metadata(q).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&plain), "an atomic write gets the mode a plain write gets");
    }
}

#[test]
fn a_write_where_no_folder_can_be_made_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"").unwrap();
    let err = atomic_write(&file.join("x.json"), b"{}").unwrap_err();
    assert_eq!(err.path, file);
}

#[test]
fn a_copy_from_a_missing_file_names_it_and_leaves_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("missing.bin"), dir.path().join("to.bin"));
    std::fs::write(&to, b"kept").unwrap();
    let err = atomic_copy(&from, &to).unwrap_err();
    assert_eq!(err.path, from);
    assert_eq!(err.cause.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(std::fs::read(&to).unwrap(), b"kept");
    std::fs::write(&from, vec![7u8; 100_000]).unwrap();
    atomic_copy(&from, &to).unwrap();
    assert_eq!(std::fs::read(&to).unwrap(), vec![7u8; 100_000]);
}

#[test]
fn a_staged_folder_appears_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("report");
    {
        let s = StagedDir::new(&target).unwrap();
        atomic_write(&s.path().join("report.md"), b"# 1").unwrap();
    }
    assert!(entries(dir.path()).is_empty(), "dropped: {:?}", entries(dir.path()));

    let s = StagedDir::new(&target).unwrap();
    atomic_write(&s.path().join("report.md"), b"# 1").unwrap();
    assert_eq!(s.commit().unwrap(), target);
    assert_eq!(entries(dir.path()), ["report"]);

    // an existing destination is kept unless replacing was asked for
    let s = StagedDir::new(&target).unwrap();
    atomic_write(&s.path().join("report.md"), b"# 2").unwrap();
    let err = s.commit().unwrap_err();
    assert_eq!(err.path, target);
    assert_eq!(std::fs::read(target.join("report.md")).unwrap(), b"# 1");
    assert_eq!(entries(dir.path()), ["report"]);

    let s = StagedDir::new(&target).unwrap();
    atomic_write(&s.path().join("report.md"), b"# 2").unwrap();
    s.commit_replacing().unwrap();
    assert_eq!(std::fs::read(target.join("report.md")).unwrap(), b"# 2");
    assert_eq!(entries(dir.path()), ["report"]);
}

#[test]
fn a_staging_folder_left_by_a_killed_process_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("carpet");
    let s = StagedDir::new(&target).unwrap();
    atomic_write(&s.path().join("stale.png"), b"x").unwrap();
    let staging = s.path().to_path_buf();
    std::mem::forget(s); // as if the process died here
    assert!(staging.join("stale.png").exists());
    let s = StagedDir::new(&target).unwrap();
    assert_eq!(s.path(), staging);
    assert!(entries(s.path()).is_empty());
}

#[test]
fn a_subfolder_of_the_staging_folder_can_become_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mvtec");
    let s = StagedDir::new(&target).unwrap();
    let root = s.path().join("mvtec_anomaly_detection");
    atomic_write(&root.join("carpet/train/good/000.png"), b"png").unwrap();
    atomic_write(&s.path().join("readme.txt"), b"extra").unwrap();
    s.commit_subfolder(&root).unwrap();
    assert_eq!(entries(dir.path()), ["mvtec"]);
    assert!(target.join("carpet/train/good/000.png").is_file());

    let s = StagedDir::new(dir.path().join("other")).unwrap();
    assert!(s.commit_subfolder(dir.path()).is_err(), "outside the staging folder");
}

#[test]
fn progress_bars_take_any_label_and_count_when_hidden() {
    for show in [false, true] {
        let pb = ikd_io::progress::bar(4, "train {weird} label", show);
        pb.inc(4);
        assert_eq!(pb.position(), 4);
        pb.finish_and_clear();
        let pb = ikd_io::progress::bytes(None, "download", show);
        pb.inc(10);
        assert_eq!(pb.position(), 10);
        pb.finish_and_clear();
    }
}

#[cfg(unix)]
#[test]
fn a_copy_keeps_the_sources_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (exe, data) = (dir.path().join("tool"), dir.path().join("data.bin"));
    std::fs::write(&exe, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&data, b"x").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o640)).unwrap();
    for (from, to) in [(&exe, "bin/tool"), (&data, "copy.bin")] {
        let to = dir.path().join(to);
        ikd_io::atomic_copy(from, &to).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&to), mode(from), "{}", to.display());
    }
}
