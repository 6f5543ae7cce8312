//! `cargo xtask download`: MVTec AD, downloaded (resumably), verified and extracted, or an
//! existing copy checked.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ikd_data::download::{ensure_dataset, FetchOptions, Manifest};

/// Arguments of `cargo xtask download` (also part of `reproduce`).
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// The dataset's manifest (URL, size, SHA-256, counts).
    #[arg(long, default_value_os_t = crate::util::workspace_root().join("datasets").join("mvtec_ad.json"))]
    pub manifest: PathBuf,
    /// Download from this URL instead of the manifest's (also: the manifest's `url_env`,
    /// `IKD_MVTEC_URL`).
    #[arg(long)]
    pub url: Option<String>,
    /// Download and extract under this folder.
    #[arg(long, default_value_os_t = crate::util::workspace_root().join("data"))]
    pub dest: PathBuf,
    /// Use the extracted dataset in this folder (verified against the manifest's counts; nothing
    /// is downloaded).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Hide progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

impl DownloadArgs {
    /// Makes the dataset available and returns its root (the folder holding the categories).
    pub fn ensure(&self) -> Result<PathBuf> {
        let manifest = Manifest::load(&self.manifest)?;
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
