//! `cargo xtask download --dataset NAME`: a benchmark (MVTec AD by default; MVTec LOCO AD,
//! MVTec AD 2, VisA, BTAD, KolektorSDD) downloaded (resumably), verified, extracted and converted
//! to MVTec AD layout, or an existing copy checked.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ikd_datasets::{ensure_dataset, manifest_path, DatasetError, FetchOptions, Manifest};

/// Arguments of `cargo xtask download` (also part of `reproduce`).
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// The dataset: mvtec, mvtec_loco, mvtec_ad2, visa, btad or kolektor (its manifest is
    /// `datasets/<name>.json`).
    #[arg(long, default_value = "mvtec")]
    pub dataset: String,
    /// Another manifest (URL, size, SHA-256, layout, counts) instead of the dataset's.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Download from this URL instead of the manifest's (also: the manifest's `url_env`, e.g.
    /// `IKD_MVTEC_URL`, `IKD_VISA_URL`).
    #[arg(long)]
    pub url: Option<String>,
    /// Download and extract under this folder.
    #[arg(long, default_value_os_t = crate::util::workspace_root().join("data"))]
    pub dest: PathBuf,
    /// Use the extracted (and converted) dataset in this folder (verified against the
    /// manifest's layout and counts; nothing is downloaded).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Hide progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

impl DownloadArgs {
    /// The manifest file: `--manifest`, or the one of `--dataset`.
    pub fn manifest_path(&self) -> Result<PathBuf> {
        match &self.manifest {
            Some(m) => Ok(m.clone()),
            None => manifest_path(&crate::util::workspace_root().join("datasets"), &self.dataset)
                .map_err(|e| match e {
                    // the library names no flag: say how folder mode is asked for here
                    DatasetError::UnknownDataset { .. } => anyhow::anyhow!(
                        "{e}; in folder mode: `ikd train --normal-dir DIR [--abnormal-dir DIR] \
                         [--mask-dir DIR]`"
                    ),
                    e => e.into(),
                }),
        }
    }

    /// The manifest, read and validated.
    pub fn manifest(&self) -> Result<Manifest> {
        Ok(Manifest::load(self.manifest_path()?)?)
    }

    /// Makes the dataset available and returns its root (the folder holding the categories).
    pub fn ensure(&self) -> Result<PathBuf> {
        let manifest = self.manifest()?;
        let opts = FetchOptions {
            url: self.url.clone(),
            progress: !self.no_progress,
            ..FetchOptions::default()
        };
        ensure_dataset(&manifest, self.data_root.as_deref(), &self.dest, &opts)
            .with_context(|| format!("making {} available", manifest.name))
    }
}

/// `cargo xtask download`.
pub fn run(args: &DownloadArgs) -> Result<()> {
    let root = args.ensure()?;
    println!("dataset: {}", root.display());
    Ok(())
}
