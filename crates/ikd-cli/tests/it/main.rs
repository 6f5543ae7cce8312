//! End-to-end tests of the `ikd` command on small synthetic categories, and its report.

mod bad_inputs;
mod client;
mod folders;
mod lifecycle;
mod pipeline;
mod portable;
mod predict;
mod report;
mod serve;
mod serve_tls;
mod settings;
mod signal;
mod slurm;
mod trajectory;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

/// A synthetic dataset with one small category (`tile`, 64×64).
pub fn dataset(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    let cfg = SyntheticConfig {
        categories: vec![Texture::Tile],
        image_size: 64,
        n_train: 4,
        n_test_good: 2,
        n_test_defect: 4,
        seed: 5,
    };
    generate(&cfg, &root).unwrap();
    root
}

/// Runs `ikd` with `args`.
pub fn ikd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ikd")).arg("--quiet").args(args).output().unwrap()
}

/// Runs `ikd` and asserts that it succeeded.
pub fn ikd_ok(args: &[&str]) -> String {
    let out = ikd(args);
    assert!(
        out.status.success(),
        "ikd {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ikd`, asserts that it failed, and returns its one-line error.
pub fn ikd_err(args: &[&str]) -> String {
    let out = ikd(args);
    assert!(!out.status.success(), "ikd {args:?} should have failed");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(err.starts_with("error: "), "unexpected stderr: {err}");
    assert_eq!(err.lines().count(), 1, "the error should be one line: {err}");
    let parts: Vec<&str> = err.split(": ").filter(|p| p.len() >= 8).collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "the error says `{p}` twice: {err}");
    }
    err
}

/// The arguments of a small, quick training run.
pub fn train_args<'a>(root: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["train", "--data-root", root, "--category", "tile", "--out", out]
        .into_iter()
        .chain(RECIPE)
        .collect()
}

/// The small recipe the tests train with: hrnet_w18_small, a random teacher, 64², 2 epochs.
pub const RECIPE: [&str; 12] = [
    "--backbone",
    "hrnet_w18_small",
    "--teacher-weights",
    "random",
    "--image-size",
    "64",
    "--load-size",
    "64",
    "--epochs",
    "2",
    "--seed",
    "3",
];
