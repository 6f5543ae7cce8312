//! Fetching timm's published HRNet weights from the Hugging Face hub.
//!
//! Weights live in the model repository `timm/<name>.ms_in1k` as `model.safetensors`. The
//! standard hub cache is used (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`), so files
//! downloaded by Python's `huggingface_hub` are found too. With `HF_HUB_OFFLINE=1` only the cache
//! is consulted; a miss is an error explaining how to pass a local file instead. Downloads show
//! a progress bar on stderr.

use std::path::PathBuf;

use crate::{Error, Result};

/// File name of the weights inside a timm hub repository.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Pretrained tag of timm's ImageNet-1k HRNet weights.
pub const DEFAULT_TAG: &str = "ms_in1k";

/// Where and how to look for hub files.
///
/// ```
/// use ikd_hrnet::HubOptions;
/// let opts = HubOptions::from_vars(|k| match k {
///     "HF_HOME" => Some("/data/hf".to_string()),
///     "HF_HUB_OFFLINE" => Some("1".to_string()),
///     _ => None,
/// });
/// assert!(opts.offline);
/// assert_eq!(opts.cache_dir, std::path::PathBuf::from("/data/hf/hub"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache directory (the `hub` folder: it holds `models--<org>--<name>`).
    pub cache_dir: PathBuf,
    /// Only look in the cache, never touch the network.
    pub offline: bool,
    /// Hub endpoint (default `https://huggingface.co`, or `HF_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Show a download progress bar.
    pub progress: bool,
}

impl HubOptions {
    /// Options from the process environment: `HF_HOME` (cache at `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`), `HF_HUB_OFFLINE` (`1`, `true`, `yes` or `on`), `HF_ENDPOINT`.
    ///
    /// ```
    /// let opts = ikd_hrnet::HubOptions::from_env();
    /// assert!(opts.cache_dir.ends_with("hub"));
    /// ```
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Options from a variable lookup (for [`HubOptions::from_env`] and tests).
    ///
    /// ```
    /// let opts = ikd_hrnet::HubOptions::from_vars(|k| (k == "HOME").then(|| "/home/u".into()));
    /// assert_eq!(opts.cache_dir, std::path::PathBuf::from("/home/u/.cache/huggingface/hub"));
    /// assert!(!opts.offline);
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let nonempty = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let cache_dir = match nonempty("HF_HOME") {
            Some(home) => PathBuf::from(home).join("hub"),
            None => {
                let home = nonempty("HOME").or_else(|| nonempty("USERPROFILE")).unwrap_or_default();
                PathBuf::from(home).join(".cache").join("huggingface").join("hub")
            }
        };
        let offline = nonempty("HF_HUB_OFFLINE")
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        Self { cache_dir, offline, endpoint: nonempty("HF_ENDPOINT"), progress: true }
    }
}

/// The hub repository id of timm's weights for a model name: `timm/<name>.ms_in1k`, or the name
/// as given when it already carries a `.tag` (e.g. `hrnet_w18.ms_aug_in1k`).
///
/// ```
/// assert_eq!(ikd_hrnet::timm_repo_id("hrnet_w32"), "timm/hrnet_w32.ms_in1k");
/// assert_eq!(ikd_hrnet::timm_repo_id("hrnet_w18.ms_aug_in1k"), "timm/hrnet_w18.ms_aug_in1k");
/// ```
pub fn timm_repo_id(name: &str) -> String {
    let name = name.trim().trim_start_matches("timm/");
    if name.contains('.') {
        format!("timm/{name}")
    } else {
        format!("timm/{name}.{DEFAULT_TAG}")
    }
}

/// Returns the local path of timm's `model.safetensors` for `name` (e.g. `hrnet_w32`),
/// downloading it into the hub cache when needed, with the options of the environment
/// ([`HubOptions::from_env`]).
///
/// ```no_run
/// let path = ikd_hrnet::fetch_timm_weights("hrnet_w32")?;
/// # Ok::<(), ikd_hrnet::Error>(())
/// ```
pub fn fetch_timm_weights(name: &str) -> Result<PathBuf> {
    fetch_timm_weights_with(name, &HubOptions::from_env())
}

/// [`fetch_timm_weights`] with explicit options. A cached file is returned without any network
/// access; offline and not cached is [`Error::HubOffline`].
///
/// ```
/// let dir = std::env::temp_dir().join(format!("ikd-hrnet-doc-hub-{}", std::process::id()));
/// let opts = ikd_hrnet::HubOptions {
///     cache_dir: dir.clone(),
///     offline: true,
///     endpoint: None,
///     progress: false,
/// };
/// let err = ikd_hrnet::fetch_timm_weights_with("hrnet_w32", &opts).unwrap_err();
/// assert!(err.to_string().contains("HF_HUB_OFFLINE"));
/// ```
pub fn fetch_timm_weights_with(name: &str, opts: &HubOptions) -> Result<PathBuf> {
    let repo_id = timm_repo_id(name);
    let cache = hf_hub::Cache::new(opts.cache_dir.clone());
    if let Some(path) = cache.model(repo_id.clone()).get(WEIGHTS_FILE) {
        tracing::debug!(repo = %repo_id, path = %path.display(), "weights found in the hub cache");
        return Ok(path);
    }
    if opts.offline {
        return Err(Error::HubOffline {
            repo: repo_id,
            file: WEIGHTS_FILE.to_string(),
            cache_dir: opts.cache_dir.clone(),
        });
    }
    let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(cache).with_progress(false);
    if let Some(endpoint) = &opts.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let hub_err = |e: hf_hub::api::sync::ApiError| Error::Hub {
        repo: repo_id.clone(),
        message: e.to_string(),
    };
    let api = builder.build().map_err(hub_err)?;
    tracing::info!(repo = %repo_id, "downloading {WEIGHTS_FILE} from the hub");
    let repo = api.model(repo_id.clone());
    if opts.progress {
        repo.download_with_progress(WEIGHTS_FILE, DownloadBar::default()).map_err(hub_err)
    } else {
        repo.download(WEIGHTS_FILE).map_err(hub_err)
    }
}

/// An indicatif progress bar for hf-hub downloads.
#[derive(Debug, Default)]
struct DownloadBar {
    bar: Option<ikd_io::progress::ProgressBar>,
}

impl hf_hub::api::Progress for DownloadBar {
    fn init(&mut self, size: usize, filename: &str) {
        self.bar = Some(ikd_io::progress::bytes(Some(size as u64), filename, true));
    }

    fn update(&mut self, size: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(size as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
