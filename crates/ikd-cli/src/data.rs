//! [`DataSelection`]: which images a run trains and tests on, as command-line flags.

use std::path::PathBuf;

use ikd::TrainConfig;
use ikd_data::FolderSpec;

/// The data of a run: a category of a dataset in MVTec AD layout (`--data-root`, `--category`),
/// or a user's plain folders (folder mode: `--normal-dir`, optional `--abnormal-dir` and
/// `--mask-dir`, anomalib's `Folder` convention).
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     data: ikd_cli::DataSelection,
/// }
/// let cli = Cli::parse_from(["x", "--normal-dir", "parts/ok", "--abnormal-dir", "parts/ng"]);
/// let mut config = ikd::TrainConfig::default();
/// cli.data.apply(&mut config);
/// assert_eq!(config.category, "parts");
/// assert_eq!(config.folder.unwrap().abnormal_dir.unwrap(), std::path::Path::new("parts/ng"));
/// ```
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataSelection {
    /// Folder holding the categories in MVTec AD layout (`train/good` or `train/ok`,
    /// `test/<defect>`, optional `ground_truth/<defect>/<stem>_mask.png`).
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// The category (a folder of the data root); in folder mode, the run's name (default: the
    /// normal folder's).
    #[arg(long)]
    pub category: Option<String>,
    /// Folder mode: the defect-free images (20 % of them, chosen with a fixed seed, are held out
    /// for testing unless --normal-test-dir is given).
    #[arg(long, value_name = "DIR", conflicts_with = "data_root")]
    pub normal_dir: Option<PathBuf>,
    /// Folder mode: defective images (test only).
    #[arg(long, value_name = "DIR", requires = "normal_dir")]
    pub abnormal_dir: Option<PathBuf>,
    /// Folder mode: masks of the defective images, named like them (`<stem>.png` or
    /// `<stem>_mask.png`). Without it the test reports image-level metrics only.
    #[arg(long, value_name = "DIR", requires = "abnormal_dir")]
    pub mask_dir: Option<PathBuf>,
    /// Folder mode: defect-free test images (then all of --normal-dir trains).
    #[arg(long, value_name = "DIR", requires = "normal_dir")]
    pub normal_test_dir: Option<PathBuf>,
}

impl DataSelection {
    /// The folder-mode dataset, when `--normal-dir` is given.
    pub fn folder(&self) -> Option<FolderSpec> {
        let normal = self.normal_dir.clone()?;
        Some(FolderSpec {
            abnormal_dir: self.abnormal_dir.clone(),
            mask_dir: self.mask_dir.clone(),
            normal_test_dir: self.normal_test_dir.clone(),
            ..FolderSpec::new(normal)
        })
    }

    /// Whether any data flag was given.
    pub fn given(&self) -> bool {
        self.data_root.is_some() || self.category.is_some() || self.normal_dir.is_some()
    }

    /// Sets in `config` the data given as flags: folder mode replaces the data root (and names
    /// the run after the normal folder unless --category is given).
    pub fn apply(&self, config: &mut TrainConfig) {
        if let Some(folder) = self.folder() {
            config.category = self.category.clone().unwrap_or_else(|| folder.name());
            config.data_root = PathBuf::new();
            config.folder = Some(folder);
            return;
        }
        if let Some(d) = &self.data_root {
            config.data_root = d.clone();
            config.folder = None;
        }
        if let Some(c) = &self.category {
            config.category = c.clone();
        }
    }

    /// Checks that `config` names its data; the message says which flags to pass.
    pub fn check(config: &TrainConfig) -> anyhow::Result<()> {
        if config.folder.is_none()
            && (config.data_root.as_os_str().is_empty() || config.category.is_empty())
        {
            anyhow::bail!(
                "pass --data-root and --category (a dataset in MVTec AD layout), or --normal-dir \
                 [--abnormal-dir [--mask-dir]] (your own folders), or set them in --config"
            );
        }
        Ok(())
    }
}
