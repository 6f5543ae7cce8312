//! `cargo xtask cuda-check`: the `cuda` feature compiled and linted on a machine without a GPU or
//! a CUDA installation. NVIDIA's compiler comes from PyPI as wheels, installed with
//! `pip install --target` into a cache folder (reused when its pins match) — see [`toolchain`].
//! candle's kernels compile to PTX for `CUDA_COMPUTE_CAP` (90, Hopper), so no GPU is asked.
//!
//! The pins: one CUDA release, 13.0 — the release of the driver on the GPU machine this project
//! is lent (PTX from a newer nvcc may not load on an older driver); `nvidia-nvvm` is pinned too,
//! since the newest's PTX (`.version 9.5`) is refused by 13.0's `ptxas`. cudarc 0.19 checks the
//! release `nvcc --version` names; `CUDARC_CUDA_VERSION=13000` states it instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::workspace_root;

/// The wheels of NVIDIA's CUDA 13.0 compiler: nvcc, ptxas and nvvm, the CRT and runtime headers,
/// and CCCL (`<nv/target>`, which `cuda_fp16.h` includes).
pub const WHEELS: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-nvvm==13.0.88",
];

/// The release cudarc is told (`CUDARC_CUDA_VERSION`): 13.0.
pub const CUDARC_VERSION: &str = "13000";

/// The GPU generation the kernels are compiled for: 90 (Hopper, the H200 of the GPU machine).
pub const COMPUTE_CAP: &str = "90";

/// Arguments of `cargo xtask cuda-check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CudaCheckArgs {
    /// Where the CUDA wheels are installed (default: `IKD_CUDA_TOOLCHAIN`, else
    /// `<cargo target folder>/cuda-toolchain`); reused when it holds the pinned release.
    #[arg(long, value_name = "DIR")]
    pub toolchain: Option<PathBuf>,
    /// Install the toolchain and print the environment to build with, without building.
    #[arg(long)]
    pub env_only: bool,
}

/// An installed CUDA compiler: `nvcc` under `root/bin`.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// `CUDA_ROOT`: the folder holding `bin/nvcc` and `include/`.
    pub root: PathBuf,
}

impl Toolchain {
    /// The variables a `--features cuda` build needs: PATH with nvcc first, `CUDA_ROOT`,
    /// `CUDA_PATH`, `CUDA_COMPUTE_CAP` (unless set) and `CUDARC_CUDA_VERSION`.
    pub fn env(&self) -> Vec<(String, std::ffi::OsString)> {
        let bin = self.root.join("bin");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)))
            .unwrap_or(path);
        let cap = std::env::var_os("CUDA_COMPUTE_CAP").unwrap_or_else(|| COMPUTE_CAP.into());
        vec![
            ("PATH".into(), joined),
            ("CUDA_ROOT".into(), self.root.clone().into()),
            ("CUDA_PATH".into(), self.root.clone().into()),
            ("CUDA_COMPUTE_CAP".into(), cap),
            ("CUDARC_CUDA_VERSION".into(), CUDARC_VERSION.into()),
        ]
    }

    /// `nvcc --version`'s release line (`Cuda compilation tools, release 13.0, V13.0.88`).
    pub fn nvcc_release(&self) -> Result<String> {
        let nvcc = self.root.join("bin").join("nvcc");
        let out = Command::new(&nvcc)
            .arg("--version")
            .output()
            .with_context(|| format!("running {}", nvcc.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.contains("release"))
            .map(|l| l.trim().to_string())
            .with_context(|| format!("{} --version names no release: {text}", nvcc.display()))
    }
}

/// The cargo target folder (`CARGO_TARGET_DIR`, else `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join("target"),
    }
}

/// The toolchain folder: `explicit`, else `IKD_CUDA_TOOLCHAIN`, else
/// `<target folder>/cuda-toolchain`.
pub fn toolchain_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(d) = explicit {
        return d.to_path_buf();
    }
    match std::env::var_os("IKD_CUDA_TOOLCHAIN") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => target_dir().join("cuda-toolchain"),
    }
}

/// The pins as one line, written beside an installed toolchain: a folder whose line differs is
/// installed again.
fn pins_line() -> String {
    WHEELS.join(" ")
}

/// The CUDA compiler in `dir`, installed there from PyPI with `pip install --target` when it is
/// missing or holds other pins (a half-finished install is never used: the wheels go to a
/// staging folder renamed into place).
pub fn toolchain(dir: &Path) -> Result<Toolchain> {
    let wheels = dir.join("wheels");
    let stamp = dir.join("pins.txt");
    let tc = Toolchain { root: wheels.join("nvidia").join("cu13") };
    let current = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == pins_line());
    if current && tc.root.join("bin").join("nvcc").is_file() {
        return Ok(tc);
    }
    let python = python_with_pip()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staging = dir.join("wheels.partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    eprintln!("installing NVIDIA's CUDA 13.0 compiler from PyPI into {}", wheels.display());
    let started = Instant::now();
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"])
        .arg("--root-user-action=ignore")
        .arg("--target")
        .arg(&staging)
        .args(WHEELS)
        .status()
        .with_context(|| format!("running {python} -m pip"))?;
    if !status.success() {
        bail!(
            "pip could not install the CUDA wheels ({}) into {}",
            WHEELS.join(", "),
            staging.display()
        );
    }
    if wheels.exists() {
        std::fs::remove_dir_all(&wheels)
            .with_context(|| format!("removing {}", wheels.display()))?;
    }
    std::fs::rename(&staging, &wheels)
        .with_context(|| format!("moving {} to {}", staging.display(), wheels.display()))?;
    ikd_io::atomic_write(&stamp, pins_line().as_bytes())?;
    eprintln!("installed in {:.0} s", started.elapsed().as_secs_f64());
    if !tc.root.join("bin").join("nvcc").is_file() {
        bail!("the CUDA wheels hold no {}", tc.root.join("bin").join("nvcc").display());
    }
    Ok(tc)
}

/// A Python with pip: `python3 -m pip` as found, else Debian's `python3-pip` installed through
/// apt-get when this runs as root.
pub fn python_with_pip() -> Result<String> {
    let works = |py: &str| {
        Command::new(py).args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success())
    };
    for py in ["python3", "python"] {
        if works(py) {
            return Ok(py.to_string());
        }
    }
    let hint = "the CUDA compiler is installed from PyPI with pip: install Python 3 and pip \
                (`sudo apt-get install python3-pip`)";
    if !crate::test::is_root() {
        bail!("python3 with pip not found: {hint}");
    }
    eprintln!("python3 with pip not found: installing Debian's python3-pip with apt-get");
    if !(crate::test::apt_get(&["update", "-qq"])
        && crate::test::apt_get(&["install", "-y", "-qq", "python3-pip"])
        && works("python3"))
    {
        bail!("installing python3-pip with apt-get failed (see above); {hint}");
    }
    Ok("python3".into())
}

/// `cargo xtask cuda-check`: installs the compiler when needed and runs clippy on every target
/// of the workspace with `--features cuda`, warnings denied.
pub fn run(args: &CudaCheckArgs) -> Result<()> {
    let dir = toolchain_dir(args.toolchain.as_deref());
    let tc = toolchain(&dir)?;
    let release = tc.nvcc_release()?;
    eprintln!("nvcc: {release} ({})", tc.root.display());
    if !release.contains("release 13.0") {
        bail!(
            "{} is not CUDA 13.0 ({release}): remove {} to install the pinned release",
            tc.root.display(),
            dir.display()
        );
    }
    if args.env_only {
        for (k, v) in tc.env() {
            println!("export {k}={}", ikd_cli::slurm::shell_quote(&v.to_string_lossy()));
        }
        return Ok(());
    }
    let started = Instant::now();
    let status = crate::test::cargo(&workspace_root())
        .envs(tc.env())
        .args(["clippy", "--workspace", "--all-targets", "--locked", "--features", "cuda"])
        .args(["--", "-D", "warnings"])
        .status()
        .context("running cargo clippy --features cuda")?;
    eprintln!("cargo clippy --features cuda: {:.0} s", started.elapsed().as_secs_f64());
    if !status.success() {
        bail!("the `cuda` feature does not compile cleanly (clippy's findings are above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wheel_is_pinned_to_one_release() {
        for w in WHEELS {
            let (_, version) = w.split_once("==").unwrap_or_else(|| panic!("{w} is not pinned"));
            assert!(version.starts_with("13.0."), "{w}");
        }
        assert!(WHEELS.iter().any(|w| w.starts_with("nvidia-nvvm==")), "nvvm pinned too");
    }

    #[test]
    fn the_environment_puts_nvcc_first() {
        let tc = Toolchain { root: PathBuf::from("/tc/nvidia/cu13") };
        let env = tc.env();
        let path = &env.iter().find(|(k, _)| k == "PATH").unwrap().1;
        assert_eq!(std::env::split_paths(path).next().unwrap(), Path::new("/tc/nvidia/cu13/bin"));
        assert!(env.iter().any(|(k, v)| k == "CUDARC_CUDA_VERSION" && v == "13000"));
        assert!(env.iter().any(|(k, v)| k == "CUDA_ROOT" && v == "/tc/nvidia/cu13"));
    }

    #[test]
    fn an_installed_toolchain_with_the_pins_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("wheels/nvidia/cu13/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("nvcc"), "").unwrap();
        std::fs::write(dir.path().join("pins.txt"), pins_line()).unwrap();
        // no pip is run: the folder is taken as it is
        let tc = toolchain(dir.path()).unwrap();
        assert_eq!(tc.root, dir.path().join("wheels/nvidia/cu13"));
    }
}
