//! `cargo xtask test`'s publishing check: every library crate of the workspace packaged as
//! crates.io would take it (`cargo package`), and built from its package alone (the verification
//! build of `cargo publish --dry-run`) with its docs built as docs.rs would (`cargo doc`, rustdoc's
//! warnings denied) where that is cheap: the crates that do not depend on candle.
//! `cargo xtask package --verify-all` does both for every one of them (minutes: candle and its
//! dependencies build again in cargo's plain dev profile).
//!
//! A library crate publishes unless its manifest says `publish = false` (the workspace-hack, the
//! Python bindings, benches and xtask do): new crates are checked without being listed here. Each
//! needs the metadata crates.io shows (description, license, repository, readme, keywords,
//! categories), the license files in its folder (links to the root's LICENSE-MIT and
//! LICENSE-APACHE) and a runnable example (`examples/`); `cargo package` itself checks that every
//! sibling dependency carries a version beside its path.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::test::cargo;

/// Arguments of `cargo xtask package`.
#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// Run the verification build for every publishable crate, candle's included.
    #[arg(long)]
    pub verify_all: bool,
}

/// `cargo xtask package`.
pub fn run(args: &PackageArgs) -> Result<()> {
    check(&crate::util::workspace_root(), args.verify_all)
}

/// A workspace crate that publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publishable {
    pub(crate) name: String,
    /// Its folder.
    pub(crate) dir: PathBuf,
    /// It depends on candle (through normal dependencies): its verification build compiles
    /// candle again.
    pub(crate) candle: bool,
    /// What crates.io needs and the manifest or folder lacks.
    pub(crate) missing: Vec<String>,
}

/// Packages every publishable library crate; verification builds for the ones without candle
/// (all of them with `verify_all`).
pub fn check(root: &Path, verify_all: bool) -> Result<()> {
    let start = Instant::now();
    let out = cargo(root)
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
    let crates = publishable(&meta);
    if crates.is_empty() {
        bail!("no publishable library crate found in the workspace");
    }
    let incomplete: Vec<String> = crates
        .iter()
        .filter(|c| !c.missing.is_empty())
        .map(|c| format!("{}: {}", c.name, c.missing.join(", ")))
        .collect();
    if !incomplete.is_empty() {
        bail!(
            "crates that publish lack what crates.io needs (set it as the other crates do, most \
             fields inherited from [workspace.package]):\n  {}",
            incomplete.join("\n  ")
        );
    }
    let (verified, unverified): (Vec<&Publishable>, Vec<&Publishable>) =
        crates.iter().partition(|c| verify_all || !c.candle);
    // All together first (a crate's siblings resolve to their packages), then the verification
    // builds: the crates without candle depend on none with it.
    if !unverified.is_empty() {
        package(root, &crates.iter().collect::<Vec<_>>(), false)?;
    }
    if !verified.is_empty() {
        package(root, &verified, true)?;
        docs(root, &verified)?;
    }
    println!(
        "packaged {} crate(s) in {:.0} s; verification build and docs of {}{}",
        crates.len(),
        start.elapsed().as_secs_f64(),
        names(&verified),
        if unverified.is_empty() {
            String::new()
        } else {
            format!(" (not of {}: `cargo xtask package --verify-all`)", names(&unverified))
        }
    );
    Ok(())
}

fn names(crates: &[&Publishable]) -> String {
    crates.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// `cargo package` of `crates` together (siblings resolve to each other's packages through
/// cargo's local overlay registry), with or without the verification build.
fn package(root: &Path, crates: &[&Publishable], verify: bool) -> Result<()> {
    let mut c = cargo(root);
    c.args(["package", "--allow-dirty"]);
    if !verify {
        c.arg("--no-verify");
    }
    for p in crates {
        c.args(["-p", &p.name]);
    }
    let status = c.status().context("running cargo package")?;
    if !status.success() {
        bail!(
            "`cargo package{} -p {}` failed (see above)",
            if verify { "" } else { " --no-verify" },
            names(crates).replace(", ", " -p ")
        );
    }
    Ok(())
}

/// Their documentation as docs.rs builds it, rustdoc's warnings denied.
fn docs(root: &Path, crates: &[&Publishable]) -> Result<()> {
    let mut c = cargo(root);
    c.args(["doc", "--no-deps", "--locked"]).env("RUSTDOCFLAGS", "-D warnings");
    for p in crates {
        c.args(["-p", &p.name]);
    }
    if !c.status().context("running cargo doc")?.success() {
        bail!("rustdoc found problems in the documentation of {} (see above)", names(crates));
    }
    Ok(())
}

/// The workspace's library crates that publish, from `cargo metadata` (with its resolve graph).
pub(crate) fn publishable(meta: &serde_json::Value) -> Vec<Publishable> {
    let empty = Vec::new();
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let packages = meta["packages"].as_array().unwrap_or(&empty);
    let candle: Vec<&str> = packages
        .iter()
        .filter(|p| p["name"] == "candle-core")
        .filter_map(|p| p["id"].as_str())
        .collect();
    let mut out: Vec<Publishable> = packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(&id)))
        // `publish = false` reads as an empty list of registries
        .filter(|p| p["publish"].as_array().is_none_or(|r| !r.is_empty()))
        .filter(|p| {
            p["targets"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .any(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "lib")))
        })
        .map(|p| {
            let dir = p["manifest_path"]
                .as_str()
                .and_then(|m| Path::new(m).parent())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let id = p["id"].as_str().unwrap_or_default();
            Publishable {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                candle: crate::test::build_closure_of(meta, id)
                    .iter()
                    .any(|d| candle.contains(&d.as_str())),
                missing: missing(p, &dir),
                dir,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What a package lacks for crates.io: metadata fields, license files, an example.
fn missing(p: &serde_json::Value, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for field in ["description", "license", "repository", "readme"] {
        if p[field].as_str().is_none_or(str::is_empty) {
            out.push(format!("`{field}`"));
        }
    }
    for field in ["keywords", "categories"] {
        if p[field].as_array().is_none_or(Vec::is_empty) {
            out.push(format!("`{field}`"));
        }
    }
    for file in ["LICENSE-MIT", "LICENSE-APACHE", "README.md"] {
        if !dir.join(file).is_file() {
            out.push(format!("{file} in {} (link the root's)", dir.display()));
        }
    }
    let has_example = p["targets"].as_array().is_some_and(|ts| {
        ts.iter().any(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "example")))
    });
    if !has_example {
        out.push("a runnable example in examples/".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishable_crates_are_the_libraries_not_marked_publish_false() {
        let full = |name: &str, publish: serde_json::Value, kinds: &[&str]| {
            serde_json::json!({
                "name": name, "id": name, "publish": publish,
                "manifest_path": format!("/nowhere/{name}/Cargo.toml"),
                "description": "d", "license": "MIT", "repository": "r", "readme": "README.md",
                "keywords": ["k"], "categories": ["science"],
                "targets": kinds.iter().map(|k| serde_json::json!({"kind": [k]})).collect::<Vec<_>>(),
            })
        };
        let meta = serde_json::json!({
            "workspace_members": ["lib", "hack", "bin", "uses-candle"],
            "packages": [
                full("lib", serde_json::Value::Null, &["lib", "example"]),
                full("hack", serde_json::json!([]), &["lib"]),
                full("bin", serde_json::Value::Null, &["bin"]),
                {"name": "uses-candle", "id": "uses-candle", "publish": null,
                 "manifest_path": "/nowhere/uses-candle/Cargo.toml",
                 "targets": [{"kind": ["lib"]}]},
                {"name": "candle-core", "id": "candle-core", "targets": [{"kind": ["lib"]}]},
            ],
            "resolve": {"nodes": [
                {"id": "uses-candle", "deps": [{"pkg": "candle-core", "dep_kinds": [{"kind": null}]}]},
                {"id": "lib", "deps": [{"pkg": "candle-core", "dep_kinds": [{"kind": "dev"}]}]},
            ]}
        });
        let p = publishable(&meta);
        assert_eq!(p.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["lib", "uses-candle"]);
        assert!(!p[0].candle, "a dev-dependency on candle does not count");
        assert!(p[1].candle);
        // /nowhere has no files; the second package has no metadata and no example either
        assert!(p[0].missing.iter().all(|m| m.contains("/nowhere/lib")));
        assert_eq!(p[0].missing.len(), 3);
        for want in
            ["`description`", "`keywords`", "`categories`", "a runnable example in examples/"]
        {
            assert!(p[1].missing.iter().any(|m| m == want), "{want}: {:?}", p[1].missing);
        }
    }
}
