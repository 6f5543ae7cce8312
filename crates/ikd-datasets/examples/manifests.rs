//! What `fetch_dataset` would download for each benchmark: the manifests of a `datasets/`
//! folder, read and validated, with their archive, size and image counts. No network.
//!
//! `cargo run -p ikd-datasets --example manifests [DATASETS_DIR]` (default: the workspace's
//! `datasets/`).

use std::path::PathBuf;

use ikd_datasets::{manifest_path, Manifest, DATASETS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets")));
    println!(
        "{:<12} {:>10}  {:<36} {:>10} {:>7}",
        "dataset", "MiB", "archive", "categories", "train"
    );
    for (name, _aliases, _file) in DATASETS {
        let m = Manifest::load(manifest_path(&dir, name)?)?;
        let mib = m.size.map_or("?".to_string(), |b| format!("{:.0}", b as f64 / (1 << 20) as f64));
        let train = m.totals.map_or("?".to_string(), |t| t.train.to_string());
        println!("{name:<12} {mib:>10}  {:<36} {:>10} {train:>7}", m.file_name, m.categories.len());
    }
    Ok(())
}
