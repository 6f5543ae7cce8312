//! `cargo xtask test`'s Python part: the `ikd-metrics` wheel (crates/ikd-metrics-py) built with
//! maturin, installed into a virtual environment with NumPy, scikit-learn, pytest and hypothesis,
//! and its pytest suite run there, as a Python user would.
//!
//! The environments live under `target/python/` (`build`: maturin; `plain`: NumPy only, where
//! the wheel must import and compute; `test`: the wheel and the test requirements), made with
//! `python3 -m venv` and pip from PyPI, and kept between runs while their requirements stay the
//! same (a stamp file in each). The wheel is built and reinstalled every run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::test::without_cargo_run_env;

/// What builds the wheel.
const BUILD_REQUIREMENTS: &[&str] = &["maturin>=1.9,<2"];
/// What the tests import besides the wheel (versions as tested; NumPy 1 and 2 both work).
const TEST_REQUIREMENTS: &[&str] =
    &["numpy>=1.24", "scikit-learn>=1.3", "scipy>=1.10", "pytest>=7", "hypothesis>=6.80"];

/// The Python package's folder, relative to the workspace root.
pub(crate) const CRATE: &str = "crates/ikd-metrics-py";

/// Builds the wheel, installs it and runs its pytest suite.
pub fn test(root: &Path) -> Result<()> {
    let start = Instant::now();
    let dir = root.join("target").join("python");
    let build = venv(&dir.join("build"), BUILD_REQUIREMENTS)?;
    let wheel = build_wheel(root, &build, &dir.join("wheels"), false)?;
    // A user's environment: Python and NumPy only; the wheel installed as pip would install it.
    let plain = venv(&dir.join("plain"), &["numpy>=1.24"])?;
    pip(&plain, &["install", "--quiet", "--force-reinstall", "--no-deps"], &[wheel.as_path()])?;
    pip(&plain, &["check"], &[])?;
    let smoke = "import numpy as np, ikd_metrics as m; s = np.array([[[0.9, 0.1], [0.2, 0.3]]], \
                 np.float32); print('ikd_metrics', m.__version__, 'pixel AUROC', \
                 m.pixel_auroc(s, s > 0.5))";
    let status = Command::new(python(&plain)).args(["-c", smoke]).current_dir(&dir).status();
    if !status.context("running python")?.success() {
        bail!("the wheel does not import or compute in an environment with NumPy only");
    }
    let test = venv(&dir.join("test"), TEST_REQUIREMENTS)?;
    pip(&test, &["install", "--quiet", "--force-reinstall", "--no-deps"], &[wheel.as_path()])?;
    let status = Command::new(python(&test))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join(CRATE).join("tests"))
        .current_dir(root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .context("running pytest")?;
    let secs = start.elapsed().as_secs_f64();
    match status.code() {
        Some(0) => {
            println!("the Python package's wheel built, installed and tested in {secs:.0} s");
            Ok(())
        }
        Some(1) => bail!("the Python package's tests failed (listed above)"),
        Some(2) => bail!("pytest was interrupted"),
        Some(3) => bail!("pytest failed internally (see above)"),
        Some(4) => bail!("pytest was called wrongly (see above)"),
        Some(5) => bail!("pytest found no tests in {CRATE}/tests"),
        _ => bail!("pytest ended with {status}"),
    }
}

/// Builds the wheel into `out` (emptied first) with the maturin of `build`; its path.
pub(crate) fn build_wheel(root: &Path, build: &Path, out: &Path, release: bool) -> Result<PathBuf> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    let mut c = Command::new(build.join("bin").join("maturin"));
    without_cargo_run_env(&mut c);
    c.args(["build", "--locked", "-m"])
        .arg(root.join(CRATE).join("Cargo.toml"))
        .arg("--out")
        .arg(out)
        .current_dir(root);
    if release {
        c.arg("--release");
    }
    let status = c.status().context("running maturin")?;
    if !status.success() {
        bail!("maturin could not build the wheel of {CRATE} (see above)");
    }
    let wheels: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    match wheels.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one wheel in {}, found {}", out.display(), wheels.len()),
    }
}

/// A virtual environment at `dir` holding `requirements`: reused when its stamp lists the same
/// requirements, made afresh otherwise.
pub(crate) fn venv(dir: &Path, requirements: &[&str]) -> Result<PathBuf> {
    let stamp = dir.join("ikd-requirements.txt");
    let want = requirements.join("\n");
    if python(dir).is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(dir.to_path_buf());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .status()
        .context("running python3 -m venv (the Python tests need python3 with venv and pip)")?;
    if !status.success() {
        bail!(
            "python3 -m venv {} failed: install Python 3.9 or later with its venv module \
             (Debian: python3-venv)",
            dir.display()
        );
    }
    let reqs: Vec<&Path> = requirements.iter().map(Path::new).collect();
    pip(dir, &["install", "--quiet", "--upgrade", "pip"], &[])?;
    pip(dir, &["install", "--quiet"], &reqs)?;
    std::fs::write(&stamp, want).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(dir.to_path_buf())
}

/// The environment's interpreter.
pub(crate) fn python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

fn pip(venv: &Path, args: &[&str], more: &[&Path]) -> Result<()> {
    let status = Command::new(python(venv))
        .args(["-m", "pip"])
        .args(args)
        .args(more)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip {} failed in {} (see above)", args.join(" "), venv.display());
    }
    Ok(())
}
