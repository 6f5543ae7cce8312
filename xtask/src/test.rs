//! `cargo xtask test`: the whole test suite, set up first. What the tests need beyond Rust is
//! checked and, where it can be, installed: Debian's `chromium` for the report's rendering test
//! (through apt-get when run as root; otherwise one line saying what to install), and Debian's
//! `slurm-wlm` and `munge` for the SLURM test's one-node cluster, the same way. The suite is
//! built first, listing what had to be compiled (after `cargo xtask demo`, only the workspace's own
//! crates), then run with `--no-fail-fast`, so one failing test binary never hides the others.
//!
//! After the Rust tests: every library crate packaged as crates.io would take it
//! ([`crate::package`]), and the `ikd-metrics` Python wheel built, installed and tested with
//! pytest ([`crate::python`]); one failing part never hides the others.
//!
//! `cargo xtask lint`: rustfmt and clippy, as CI runs them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util::workspace_root;

/// Arguments of `cargo xtask test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// Install nothing: only say what is missing.
    #[arg(long)]
    pub no_install: bool,
    /// Fail when the build compiles a dependency (a crate from outside the workspace). After
    /// `cargo xtask demo` every dependency is built already; `IKD_DENY_DEPENDENCY_BUILDS=1` sets
    /// this too (CI does).
    #[arg(long)]
    pub deny_dependency_builds: bool,
    /// Skip the packaging check (`cargo package` of every library crate; see
    /// `cargo xtask package`).
    #[arg(long)]
    pub no_package: bool,
    /// Skip the Python package's tests (building the `ikd-metrics` wheel, installing it into a
    /// virtual environment under target/python and running pytest there; needs python3).
    #[arg(long)]
    pub no_python: bool,
    /// Arguments passed on to `cargo test` after the workspace's own (e.g. `-- NAME` to run the
    /// tests whose name contains NAME).
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// `cargo xtask test`.
pub fn run(args: &TestArgs) -> Result<()> {
    let root = workspace_root();
    let fixtures = root.join("..").join("shared").join("fixtures");
    if !fixtures.is_dir() {
        eprintln!(
            "warning: {} is missing: the parity tests read the reference fixtures from there \
             (a `shared/` folder beside the checkout)",
            fixtures.display()
        );
    }
    ensure_chromium(!args.no_install)?;
    ensure_slurm(!args.no_install)?;

    let deny = args.deny_dependency_builds
        || std::env::var("IKD_DENY_DEPENDENCY_BUILDS").is_ok_and(|v| v == "1" || v == "true");
    let demo_deps = demo_dependencies(&root)?;
    let built = build_tests(&root)?;
    let (own, deps): (Vec<_>, Vec<_>) = built.into_iter().partition(|c| c.local);
    let (again, test_only): (Vec<_>, Vec<_>) =
        deps.into_iter().partition(|c| demo_deps.contains(&c.id));
    println!("compiled {} workspace crate(s): {}", own.len(), names(&own));
    println!(
        "compiled {} test-only dependencies (not part of the demo): {}",
        test_only.len(),
        names(&test_only)
    );
    println!("compiled {} of the demo's dependencies: {}", again.len(), names(&again));
    if deny && !again.is_empty() {
        bail!(
            "the test build compiled {} of the demo's dependencies again ({}): their features, \
             profile or build-script environment differ between the two builds; after a \
             dependency change run `cargo hakari generate` and `cargo hakari manage-deps` \
             (crates/ikd-workspace-hack unifies the features)",
            again.len(),
            names(&again)
        );
    }

    let status = cargo(&root)
        .args(["test", "--workspace", "--locked", "--no-fail-fast"])
        .args(&args.cargo_args)
        .status()
        .context("running cargo test")?;
    let mut failed = Vec::new();
    if !status.success() {
        failed.push("the Rust test suite failed (the failing tests are listed above)".to_string());
    }
    if !args.no_package {
        if let Err(e) = crate::package::check(&root, false) {
            failed.push(format!("packaging: {e:#}"));
        }
    }
    if !args.no_python {
        if let Err(e) = crate::python::test(&root) {
            failed.push(format!("the Python package: {e:#}"));
        }
    }
    // the ONNX parity check of `ikd export` (after the suite, also when it failed)
    if args.cargo_args.is_empty() {
        if let Err(e) = onnx_parity(&root, !args.no_install) {
            failed.push(format!("the ONNX parity check: {e:#}"));
        }
    } else {
        println!("ONNX parity check skipped: `cargo xtask test` was given a selection of tests");
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

/// The parity check of `ikd export` (`crates/ikd-export/tests/it/parity.rs`, ignored by a plain
/// `cargo test`): onnxruntime and OpenVINO run the exported graph to the `Predictor`'s maps,
/// scores and decisions. Its Python environment, `target/onnx-parity/venv` with the packages of
/// `crates/ikd-export/parity/requirements.txt` from PyPI, is made once (under a minute on this
/// project's machines, 394 MB) and then reused.
fn onnx_parity(root: &Path, install: bool) -> Result<()> {
    let venv = root.join("target").join("onnx-parity").join("venv");
    let python = venv.join("bin").join("python");
    let reqs = root.join("crates/ikd-export/parity/requirements.txt");
    let imports = "import onnx, onnxruntime, openvino, numpy";
    let ready = python.is_file()
        && Command::new(&python)
            .args(["-c", imports])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let how = format!(
            "python3 -m venv {0} && {0}/bin/pip install -r {1}",
            venv.display(),
            reqs.display()
        );
        if !install {
            bail!(
                "the ONNX parity check needs a Python environment with onnx, onnxruntime, openvino and numpy at {}: make it with `{how}` (or run without --no-install)",
                venv.display()
            );
        }
        if !python.is_file() {
            println!("making the ONNX parity check's Python environment: {}", venv.display());
            match Command::new("python3").arg("-m").arg("venv").arg(&venv).status() {
                Err(e) => bail!(
                    "the ONNX parity check needs python3 with its venv module, and python3 could not be run ({e}); on Debian: apt-get install python3 python3-venv"
                ),
                Ok(s) if !s.success() => bail!(
                    "`python3 -m venv {}` failed (see above): the ONNX parity check needs Python's venv module (on Debian: apt-get install python3-venv)",
                    venv.display()
                ),
                Ok(_) => {}
            }
        }
        println!(
            "installing onnx, onnxruntime, openvino and numpy from PyPI into {}",
            venv.display()
        );
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&reqs)
            .status()
            .with_context(|| format!("running {}", python.display()))?;
        if !status.success() {
            bail!(
                "pip could not install the packages of {} from PyPI into {} (see above): the ONNX parity check needs onnx, onnxruntime, openvino and numpy; retry with `{how}`",
                reqs.display(),
                venv.display()
            );
        }
    }
    println!("ONNX parity check: onnxruntime and OpenVINO against the Predictor");
    let status = cargo(root)
        .args(["test", "-p", "ikd-export", "--test", "it", "--locked", "--"])
        .args(["--ignored", "--nocapture", "parity"])
        .env("IKD_PARITY_PYTHON", &python)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("the ONNX parity check failed (above)");
    }
    Ok(())
}

/// `cargo xtask lint`: `cargo fmt --check` and clippy on every target with warnings denied.
pub fn lint() -> Result<()> {
    let root = workspace_root();
    let fmt =
        cargo(&root).args(["fmt", "--all", "--check"]).status().context("running cargo fmt")?;
    let clippy = cargo(&root)
        .args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])
        .status()
        .context("running cargo clippy")?;
    match (fmt.success(), clippy.success()) {
        (true, true) => Ok(()),
        (false, _) => bail!("formatting differs from rustfmt's (run `cargo fmt --all`)"),
        (true, false) => bail!("clippy found problems (listed above)"),
    }
}

/// The cargo that runs this task (`CARGO`), in the workspace root, without the variables that
/// `cargo run` set for xtask itself (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …): build scripts
/// watch some of them (ring's `rerun-if-env-changed`), and seeing xtask's values instead of the
/// shell's made the test build rebuild ring, rustls and ureq after `cargo xtask demo`.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root);
    without_cargo_run_env(&mut c);
    c
}

/// Removes from `c`'s environment the variables that `cargo run` set for xtask itself (see
/// [`cargo`]), for every command that runs cargo (maturin too).
pub(crate) fn without_cargo_run_env(c: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(key, "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE")
        {
            c.env_remove(key);
        }
    }
}

/// A crate the test build compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Compiled {
    /// cargo's package id.
    id: String,
    name: String,
    /// A workspace crate (a path dependency), not one from a registry.
    local: bool,
}

fn names(crates: &[Compiled]) -> String {
    if crates.is_empty() {
        return "none".into();
    }
    let mut v: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    v.join(", ")
}

/// Builds every test target (`cargo test --no-run`) and returns what was compiled rather than
/// found fresh.
fn build_tests(root: &Path) -> Result<Vec<Compiled>> {
    let out = cargo(root)
        .args([
            "test",
            "--workspace",
            "--locked",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("the tests do not build (the errors are above)");
    }
    Ok(compiled_units(&String::from_utf8_lossy(&out.stdout)))
}

/// The packages of cargo's JSON messages whose artifacts were not fresh.
fn compiled_units(messages: &str) -> Vec<Compiled> {
    let mut out: Vec<Compiled> = messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["fresh"].as_bool() == Some(false))
        .filter_map(|m| {
            let id = m["package_id"].as_str()?;
            Some(Compiled {
                id: id.to_string(),
                name: package_name(id),
                local: id.starts_with("path+"),
            })
        })
        .collect();
    out.dedup();
    out
}

/// The package ids that `cargo xtask demo` builds: xtask's dependencies on this machine's platform,
/// followed through normal and build dependencies (not dev-dependencies), from `cargo metadata`.
fn demo_dependencies(root: &Path) -> Result<BTreeSet<String>> {
    let rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")?;
    let out = cargo(root)
        .args(["metadata", "--format-version", "1", "--locked", "--filter-platform", &host])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed (see above)");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
    Ok(build_closure(&meta, "xtask"))
}

/// The ids of the packages `root_name` depends on through normal and build dependencies.
fn build_closure(meta: &serde_json::Value, root_name: &str) -> BTreeSet<String> {
    let empty = Vec::new();
    let packages = meta["packages"].as_array().unwrap_or(&empty);
    let roots: Vec<&str> = packages
        .iter()
        .filter(|p| p["name"] == root_name)
        .filter_map(|p| p["id"].as_str())
        .collect();
    closure(meta, roots)
}

/// The ids of the packages the package `id` depends on through normal and build dependencies.
pub(crate) fn build_closure_of(meta: &serde_json::Value, id: &str) -> BTreeSet<String> {
    closure(meta, vec![id])
}

fn closure<'a>(meta: &'a serde_json::Value, mut todo: Vec<&'a str>) -> BTreeSet<String> {
    static EMPTY: Vec<serde_json::Value> = Vec::new();
    let empty = &EMPTY;
    let nodes = meta["resolve"]["nodes"].as_array().unwrap_or(empty);
    let mut seen = BTreeSet::new();
    while let Some(id) = todo.pop() {
        let Some(node) = nodes.iter().find(|n| n["id"] == id) else { continue };
        for dep in node["deps"].as_array().unwrap_or(empty) {
            let kinds = dep["dep_kinds"].as_array().unwrap_or(empty);
            let needed = kinds.iter().any(|k| k["kind"] != "dev");
            if let (true, Some(pkg)) = (needed, dep["pkg"].as_str()) {
                if seen.insert(pkg.to_string()) {
                    todo.push(pkg);
                }
            }
        }
    }
    seen
}

/// A package's name from its id: `registry+https://…#candle-core@0.11.1` → `candle-core`,
/// `path+file:///w/crates/ikd#0.1.0` → `ikd` (the folder's name when the id carries no name).
fn package_name(id: &str) -> String {
    let (url, frag) = id.split_once('#').unwrap_or((id, ""));
    match frag.split_once('@') {
        Some((name, _)) => name.to_string(),
        None => url.rsplit('/').next().unwrap_or(url).to_string(),
    }
}

/// Finds `chromium`; when it is missing, installs Debian's package as root (when `install`) or
/// says what to install.
fn ensure_chromium(install: bool) -> Result<()> {
    if has_chromium() {
        return Ok(());
    }
    let hint = "the report's rendering test needs Debian's chromium: install it with \
                `sudo apt-get install chromium` (the test fails until it is there)";
    if !install || !is_root() || !has("apt-get") {
        eprintln!("warning: chromium not found: {hint}");
        return Ok(());
    }
    eprintln!("chromium not found: installing Debian's chromium with apt-get (the report test renders the report in it)");
    if !(apt_get(&["update", "-qq"])
        && apt_get(&["install", "-y", "-qq", "chromium"])
        && has_chromium())
    {
        bail!("installing chromium with apt-get failed (see above); {hint}");
    }
    Ok(())
}

/// Runs `apt-get ARGS` non-interactively; whether it succeeded.
pub(crate) fn apt_get(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The SLURM test runs a one-node cluster: Debian's `slurm-wlm` (slurmctld, slurmd, sbatch) and
/// `munge`. Installs them when missing (as root, when `install`), or says what to install.
fn ensure_slurm(install: bool) -> Result<()> {
    let programs = ["slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged"];
    let missing = || programs.iter().copied().filter(|p| !has_program(p)).collect::<Vec<_>>();
    let gone = missing();
    if gone.is_empty() {
        return Ok(());
    }
    let hint = "the SLURM test runs a one-node cluster: install Debian's slurm-wlm and munge with `sudo apt-get install slurm-wlm munge` (the test fails until they are there)";
    if !install || !is_root() || !has("apt-get") {
        eprintln!("warning: {} not found: {hint}", gone.join(", "));
        return Ok(());
    }
    eprintln!("{} not found: installing Debian's slurm-wlm and munge with apt-get (the SLURM test starts a one-node cluster)", gone.join(", "));
    if !(apt_get(&["update", "-qq"])
        && apt_get(&["install", "-y", "-qq", "slurm-wlm", "munge"])
        && missing().is_empty())
    {
        bail!("installing slurm-wlm and munge with apt-get failed (see above); {hint}");
    }
    Ok(())
}

/// `program` in PATH or in the system folders (`/usr/sbin` is not in every user's PATH).
fn has_program(program: &str) -> bool {
    has(program)
        || ["/usr/sbin", "/usr/bin", "/sbin"].iter().any(|d| Path::new(d).join(program).is_file())
}

fn has_chromium() -> bool {
    Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn has(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Whether this process runs as root (the effective user id in `/proc/self/status`).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_come_from_ids() {
        assert_eq!(
            package_name(
                "registry+https://github.com/rust-lang/crates.io-index#candle-core@0.11.1"
            ),
            "candle-core"
        );
        assert_eq!(package_name("path+file:///w/crates/ikd#0.1.0"), "ikd");
        assert_eq!(package_name("path+file:///w/xtask#xtask@0.1.0"), "xtask");
    }

    #[test]
    fn only_artifacts_that_were_not_fresh_count() {
        let messages = [
            r#"{"reason":"compiler-artifact","package_id":"registry+https://x#gemm@0.19.0","fresh":true}"#,
            r#"{"reason":"compiler-artifact","package_id":"registry+https://x#zip@9.8.2","fresh":false}"#,
            r#"{"reason":"build-script-executed","package_id":"registry+https://x#libc@0.2.1"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/ikd#0.1.0","fresh":false}"#,
            "not json",
        ]
        .join("\n");
        assert_eq!(
            compiled_units(&messages),
            vec![
                Compiled {
                    id: "registry+https://x#zip@9.8.2".into(),
                    name: "zip".into(),
                    local: false
                },
                Compiled {
                    id: "path+file:///w/crates/ikd#0.1.0".into(),
                    name: "ikd".into(),
                    local: true
                }
            ]
        );
    }

    #[test]
    fn the_demo_closure_follows_normal_and_build_edges_only() {
        let meta = serde_json::json!({
            "packages": [{"name": "xtask", "id": "x"}, {"name": "a", "id": "a"}],
            "resolve": {"nodes": [
                {"id": "x", "deps": [
                    {"pkg": "a", "dep_kinds": [{"kind": null}]},
                    {"pkg": "t", "dep_kinds": [{"kind": "dev"}]},
                ]},
                {"id": "a", "deps": [{"pkg": "b", "dep_kinds": [{"kind": "build"}]}]},
                {"id": "b", "deps": [{"pkg": "a", "dep_kinds": [{"kind": null}]}]},
                {"id": "t", "deps": [{"pkg": "u", "dep_kinds": [{"kind": null}]}]},
            ]}
        });
        let c = build_closure(&meta, "xtask");
        assert_eq!(c, ["a", "b"].iter().map(|s| s.to_string()).collect());
    }
}
