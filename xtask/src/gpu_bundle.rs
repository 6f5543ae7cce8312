//! `cargo xtask gpu-bundle`: everything the lent GPU machine (an H200 with a driver and PyTorch,
//! no Rust, no network, 64 MiB of files) needs for one prepared check, built here without a GPU.
//!
//! The binaries (`ikd`, `xtask`) are built with `--features cuda` against the CUDA compiler of
//! [`crate::cuda`]. candle links cudarc's libraries at build time (`-lcuda -lcublas -lcublasLt
//! -lcurand -lnvrtc -lcudart`): `libcudart` comes from the runtime wheel; the others are link
//! stubs made here — shared libraries defining the symbols the link asks for (read from the
//! linker's `undefined reference` lines), each with the real library's SONAME, so that on the GPU
//! machine the loader finds the real ones. The stubs never travel.
//!
//! The folder: `bin/ikd.xz`, `bin/xtask.xz` (stripped, xz), `fixtures/` (the tiny HRNet and its
//! 12-step trajectory from `../shared/fixtures`), `pytorch/hrnet_bench.py` and timm's wheel when
//! one is found in `--wheels`, and `run.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util::workspace_root;

/// The most the GPU machine takes, all files together.
pub const LIMIT: u64 = 64 * 1024 * 1024;

/// The libraries linked by name, their real SONAMEs, and the symbol prefix that belongs to each
/// (longest first). `cudart` is the runtime wheel's.
const STUBS: &[(&str, &str, &str)] = &[
    ("cublasLt", "libcublasLt.so.13", "cublasLt"),
    ("cublas", "libcublas.so.13", "cublas"),
    ("curand", "libcurand.so.10", "curand"),
    ("nvrtc", "libnvrtc.so.13", "nvrtc"),
    ("cuda", "libcuda.so.1", "cu"),
];

/// Arguments of `cargo xtask gpu-bundle`.
#[derive(Debug, Clone, clap::Args)]
pub struct GpuBundleArgs {
    /// The bundle folder (replaced).
    #[arg(long, default_value_os_t = crate::cuda::target_dir().join("gpu-bundle"))]
    pub out: PathBuf,
    /// Build with the release profile (default: the dev profile, whose dependencies and
    /// compute crates are optimised, and which shares candle's CUDA kernels with `cuda-check`).
    #[arg(long)]
    pub release: bool,
    /// A folder holding timm's wheel (`timm-*.whl`), for a GPU machine whose Python has PyTorch
    /// but not timm (default: `pip download --no-deps timm==1.0.31` into
    /// `<target folder>/gpu-wheels`, reused when there).
    #[arg(long, value_name = "DIR")]
    pub wheels: Option<PathBuf>,
}

/// `cargo xtask gpu-bundle`.
pub fn run(args: &GpuBundleArgs) -> Result<()> {
    let root = workspace_root();
    let fixtures = root.join("..").join("shared").join("fixtures");
    for f in ["hrnet/tiny/config.json", "trajectory/tiny/trajectory.json"] {
        if !fixtures.join(f).is_file() {
            bail!(
                "{}: missing (the bundle carries the parity fixtures)",
                fixtures.join(f).display()
            );
        }
    }
    let tc = crate::cuda::toolchain(&crate::cuda::toolchain_dir(None))?;
    let stubs = crate::cuda::target_dir().join("cuda-stubs");
    let bins = build(&tc, &stubs, args.release)?;

    let staging = args.out.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    let bin_dir = staging.join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    let mut ldd = String::new();
    for (name, exe) in &bins {
        let stripped = bin_dir.join(name);
        std::fs::copy(exe, &stripped).with_context(|| format!("copying {}", exe.display()))?;
        run_ok(Command::new("strip").arg(&stripped), "strip")?;
        ldd.push_str(&format!("{name}: {}\n", needs(&stripped)?));
        run_ok(Command::new("xz").args(["-6", "-T2", "-f"]).arg(&stripped), "xz")?;
    }
    std::fs::write(staging.join("needs.txt"), &ldd)?;
    for f in [
        "hrnet/tiny/config.json",
        "hrnet/tiny/weights.safetensors",
        "hrnet/tiny/io.safetensors",
        "trajectory/tiny/trajectory.json",
        "trajectory/tiny/batches.safetensors",
        "trajectory/tiny/student_init.safetensors",
        "trajectory/tiny/student_final.safetensors",
    ] {
        let dest = staging.join("fixtures").join(f);
        std::fs::create_dir_all(dest.parent().unwrap_or(&staging))?;
        std::fs::copy(fixtures.join(f), &dest)
            .with_context(|| format!("copying {}", fixtures.join(f).display()))?;
    }
    let py = staging.join("pytorch");
    std::fs::create_dir_all(&py)?;
    std::fs::copy(root.join("benches/pytorch/hrnet_bench.py"), py.join("hrnet_bench.py"))?;
    {
        let dir = match &args.wheels {
            Some(d) => d.clone(),
            None => timm_wheel_dir()?,
        };
        let dir = &dir;
        let wheel = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("timm-") && n.ends_with(".whl"))
            })
            .with_context(|| format!("{}: no timm-*.whl", dir.display()))?;
        std::fs::copy(&wheel, py.join(wheel.file_name().unwrap_or_default()))?;
    }
    let run_sh = staging.join("run.sh");
    std::fs::write(&run_sh, include_str!("../gpu-bundle/run.sh"))?;
    set_executable(&run_sh)?;

    let size = folder_size(&staging)?;
    if size > LIMIT {
        bail!(
            "the bundle holds {size} bytes, more than the GPU machine's {LIMIT}: {}",
            staging.display()
        );
    }
    if args.out.exists() {
        std::fs::remove_dir_all(&args.out)
            .with_context(|| format!("removing {}", args.out.display()))?;
    }
    std::fs::rename(&staging, &args.out)?;
    println!("{}: {:.1} MiB", args.out.display(), size as f64 / 1048576.0);
    for (name, _) in &bins {
        let p = args.out.join("bin").join(format!("{name}.xz"));
        println!("  bin/{name}.xz {:.1} MiB", std::fs::metadata(&p)?.len() as f64 / 1048576.0);
    }
    print!("{ldd}");
    Ok(())
}

/// The timm release of the fixtures (`../shared/README.md`).
const TIMM: &str = "timm==1.0.31";

/// `<target folder>/gpu-wheels` holding timm's wheel, downloaded with pip when missing.
fn timm_wheel_dir() -> Result<PathBuf> {
    let dir = crate::cuda::target_dir().join("gpu-wheels");
    let has = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|r| {
            r.flatten().any(|e| e.file_name().to_string_lossy().starts_with("timm-"))
        })
    };
    if has(&dir) {
        return Ok(dir);
    }
    let python = crate::cuda::python_with_pip()?;
    run_ok(
        Command::new(python)
            .args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"])
            .arg("--dest")
            .arg(&dir)
            .arg(TIMM),
        "pip download timm",
    )?;
    if !has(&dir) {
        bail!("pip download left no timm wheel in {}", dir.display());
    }
    Ok(dir)
}

/// What a binary needs of the machine: its shared libraries (`NEEDED`) and the newest glibc
/// symbol version it uses, from `objdump`.
fn needs(binary: &Path) -> Result<String> {
    let dynamic =
        Command::new("objdump").arg("-p").arg(binary).output().context("running objdump -p")?;
    let libs: Vec<String> = String::from_utf8_lossy(&dynamic.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED").map(|n| n.trim().to_string()))
        .collect();
    let symbols =
        Command::new("objdump").arg("-T").arg(binary).output().context("running objdump -T")?;
    let text = String::from_utf8_lossy(&symbols.stdout);
    let glibc = text
        .split("GLIBC_")
        .skip(1)
        .filter_map(|r| {
            let v: String = r.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let parts: Vec<u32> = v.split('.').filter_map(|p| p.parse().ok()).collect();
            (!parts.is_empty()).then_some(parts)
        })
        .max()
        .map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
        .unwrap_or_default();
    Ok(format!("glibc >= {glibc}; {}", libs.join(", ")))
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed");
    }
    Ok(())
}

fn folder_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() { folder_size(&e.path())? } else { m.len() };
    }
    Ok(total)
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// Builds `ikd` and `xtask` with CUDA, making link stubs for what the link asks for; returns
/// each binary's name and path.
fn build(
    tc: &crate::cuda::Toolchain,
    stubs: &Path,
    release: bool,
) -> Result<Vec<(String, PathBuf)>> {
    std::fs::create_dir_all(stubs)?;
    for name in ["libcudart.so", "libcudart.so.13"] {
        let link = stubs.join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(tc.root.join("lib").join("libcudart.so.13"), &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    let mut symbols: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (lib, _, _) in STUBS {
        symbols.insert(lib, read_symbols(stubs, lib));
    }
    // cudarc's references, read from its compiled library when a build left one (a superset of
    // what the link keeps); what is still missing is read from the linker's errors below
    let deps =
        crate::cuda::target_dir().join(if release { "release" } else { "debug" }).join("deps");
    for s in cudarc_references(&deps) {
        if let Some(lib) = owner(&s) {
            let list = symbols.entry(lib).or_default();
            if !list.contains(&s) {
                list.push(s);
            }
        }
    }
    for attempt in 0..3 {
        for (lib, soname, _) in STUBS {
            make_stub(stubs, lib, soname, &symbols[lib])?;
        }
        let mut cargo = crate::test::cargo(&workspace_root());
        cargo
            .envs(tc.env())
            .env("LIBRARY_PATH", stubs)
            .args(["build", "--locked", "-p", "ikd-cli", "-p", "xtask"])
            .args([
                "--features",
                "ikd-cli/cuda,xtask/cuda",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(Stdio::piped());
        if release {
            cargo.arg("--release");
        }
        let out = cargo.output().context("running cargo build --features cuda")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            let bins = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|m| m["reason"] == "compiler-artifact")
                .filter_map(|m| {
                    let name = m["target"]["name"].as_str()?;
                    let exe = m["executable"].as_str()?;
                    ["ikd", "xtask"].contains(&name).then(|| (name.to_string(), PathBuf::from(exe)))
                })
                .collect::<Vec<_>>();
            if bins.len() != 2 {
                bail!("cargo built {bins:?}, not ikd and xtask");
            }
            return Ok(bins);
        }
        let missing = undefined_symbols(&stderr);
        if missing.is_empty() || attempt == 2 {
            eprintln!("{stderr}");
            bail!("the CUDA build failed (see above)");
        }
        eprintln!("link stubs: {} symbols to define", missing.len());
        for s in missing {
            let lib = owner(&s).with_context(|| format!("no CUDA library provides `{s}`"))?;
            let list = symbols.entry(lib).or_default();
            if !list.contains(&s) {
                list.push(s);
            }
        }
        for (lib, list) in &mut symbols {
            list.sort();
            std::fs::write(stubs.join(format!("{lib}.symbols")), list.join("\n"))?;
        }
    }
    bail!("the CUDA build did not link")
}

/// The CUDA symbols (`cu*`, `nvrtc*`) that cudarc's compiled libraries in `deps` leave undefined
/// (`nm -u`); none when there is no such library yet.
fn cudarc_references(deps: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(deps) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("libcudarc-") && name.ends_with(".rlib")) {
            continue;
        }
        let Ok(o) = Command::new("nm").arg("-u").arg(e.path()).stderr(Stdio::null()).output()
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            // `                 U cuInit`; file headers (`x.o:`) and defined symbols are not
            if let ["U", sym] = line.split_whitespace().collect::<Vec<_>>()[..] {
                let ident = sym.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if ident && (sym.starts_with("cu") || sym.starts_with("nvrtc")) {
                    out.push(sym.to_string());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The library a symbol belongs to, by its prefix.
fn owner(symbol: &str) -> Option<&'static str> {
    STUBS.iter().find(|(_, _, prefix)| symbol.starts_with(prefix)).map(|(lib, _, _)| *lib)
}

fn read_symbols(stubs: &Path, lib: &str) -> Vec<String> {
    std::fs::read_to_string(stubs.join(format!("{lib}.symbols")))
        .map(|s| s.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The symbols of the linker's `undefined reference to `X'` (GNU ld) and `undefined symbol: X`
/// (lld) lines.
fn undefined_symbols(stderr: &str) -> Vec<String> {
    let gnu = stderr.split("undefined reference to `").skip(1).filter_map(|r| r.split('\'').next());
    let lld = stderr
        .split("undefined symbol: ")
        .skip(1)
        .filter_map(|r| r.split(|c: char| c.is_whitespace()).next());
    let mut out: Vec<String> =
        gnu.chain(lld).map(|s| s.split('@').next().unwrap_or(s).to_string()).collect();
    out.sort();
    out.dedup();
    out
}

/// `stubs/lib<lib>.so` with SONAME `soname`, defining `symbols` as functions that fail (they are
/// for linking; the real library is loaded where the binary runs).
fn make_stub(stubs: &Path, lib: &str, soname: &str, symbols: &[String]) -> Result<()> {
    let mut c = String::from("/* link stub: the real library is loaded at run time */\n");
    for s in symbols {
        c.push_str(&format!("int {s}(void) {{ return 100; }}\n"));
    }
    let src = stubs.join(format!("{lib}.c"));
    std::fs::write(&src, c)?;
    run_ok(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(stubs.join(format!("lib{lib}.so")))
            .arg(format!("-Wl,-soname,{soname}"))
            .arg(&src),
        "cc (a link stub)",
    )?;
    // the SONAME too, so that the binary also starts here with the stubs on LD_LIBRARY_PATH
    // (CUDA then reports no device and the CPU works as before)
    let link = stubs.join(soname);
    if !link.exists() {
        std::os::unix::fs::symlink(format!("lib{lib}.so"), &link)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_references_are_read_and_owned() {
        let err = "foo.o: in function `x':\nundefined reference to `cuInit'\n\
                   undefined reference to `cublasLtMatmul'\nundefined reference to `cuInit'\n\
                   rust-lld: error: undefined symbol: nvrtcCompileProgram\n>>> referenced by";
        let s = undefined_symbols(err);
        assert_eq!(s, vec!["cuInit", "cublasLtMatmul", "nvrtcCompileProgram"]);
        assert_eq!(owner("cuInit"), Some("cuda"));
        assert_eq!(owner("cublasLtMatmul"), Some("cublasLt"));
        assert_eq!(owner("cublasSgemm_v2"), Some("cublas"));
        assert_eq!(owner("curandCreateGenerator"), Some("curand"));
        assert_eq!(owner("malloc"), None);
    }
}
