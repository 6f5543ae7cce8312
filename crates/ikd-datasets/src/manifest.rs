//! What a dataset is: its [`Manifest`] (one per dataset under `datasets/` at the workspace
//! root: [`DATASETS`]), the image counts it promises ([`Counts`]), its archive's format
//! ([`ArchiveFormat`]), its conversion to MVTec AD layout ([`Conversion`]), and the [`Marker`]
//! a fetched dataset folder holds.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use ikd_data::Counts;

use crate::error::{DatasetError, IoContext, Result};

/// The environment variable that overrides the MVTec AD download URL.
///
/// ```
/// assert_eq!(ikd_datasets::MVTEC_URL_ENV, "IKD_MVTEC_URL");
/// ```
pub const MVTEC_URL_ENV: &str = "IKD_MVTEC_URL";

/// One category of a manifest, with its counts where they are known.
///
/// ```
/// let c = ikd_datasets::CategoryCounts { name: "bottle".into(), counts: None };
/// assert_eq!(c.name, "bottle");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCounts {
    /// The category folder's name.
    pub name: String,
    /// Its image counts, if the manifest gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
}

/// The datasets with a manifest: (name for `--dataset`, other accepted names, manifest file
/// under `datasets/`).
///
/// ```
/// assert!(ikd_datasets::DATASETS.iter().any(|d| d.0 == "visa"));
/// ```
pub const DATASETS: [(&str, &[&str], &str); 6] = [
    ("mvtec", &["mvtec_ad", "mvtec-ad"], "mvtec_ad.json"),
    ("mvtec_loco", &["loco", "mvtec-loco"], "mvtec_loco.json"),
    ("mvtec_ad2", &["ad2", "mvtec-ad2", "mvtec_ad_2"], "mvtec_ad2.json"),
    ("visa", &[], "visa.json"),
    ("btad", &[], "btad.json"),
    ("kolektor", &["kolektorsdd", "ksdd"], "kolektorsdd.json"),
];

/// The manifest file (under `datasets_dir`) of a dataset named as in [`DATASETS`]; an unknown
/// name is an error listing the known ones.
///
/// ```
/// let p = ikd_datasets::manifest_path("datasets".as_ref(), "BTAD")?;
/// assert_eq!(p, std::path::Path::new("datasets/btad.json"));
/// assert!(ikd_datasets::manifest_path("datasets".as_ref(), "mpdd").is_err());
/// # Ok::<(), ikd_datasets::DatasetError>(())
/// ```
pub fn manifest_path(datasets_dir: &Path, name: &str) -> Result<PathBuf> {
    let n = name.to_ascii_lowercase();
    DATASETS
        .iter()
        .find(|(id, aliases, _)| *id == n || aliases.contains(&n.as_str()))
        .map(|(_, _, file)| datasets_dir.join(file))
        .ok_or_else(|| {
            let known: Vec<&str> = DATASETS.iter().map(|d| d.0).collect();
            DatasetError::UnknownDataset { name: name.to_string(), known: known.join(", ") }
        })
}

/// The kind of archive, from the file name's ending.
///
/// ```
/// use ikd_datasets::ArchiveFormat;
/// assert_eq!(ArchiveFormat::from_name("a.tar.xz"), Some(ArchiveFormat::TarXz));
/// assert_eq!(ArchiveFormat::from_name("KolektorSDD.zip"), Some(ArchiveFormat::Zip));
/// assert_eq!(ArchiveFormat::from_name("a.rar"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `.tar`
    Tar,
    /// `.tar.gz`, `.tgz`
    TarGz,
    /// `.tar.xz`, `.txz`
    TarXz,
    /// `.zip`
    Zip,
}

impl ArchiveFormat {
    /// The format of a file name, if it is one of the four.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        if n.ends_with(".tar.xz") || n.ends_with(".txz") {
            Some(Self::TarXz)
        } else if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if n.ends_with(".tar") {
            Some(Self::Tar)
        } else if n.ends_with(".zip") {
            Some(Self::Zip)
        } else {
            None
        }
    }
}

/// How an archive's layout becomes MVTec AD layout ([`crate::convert`]).
///
/// ```
/// let c: ikd_datasets::Conversion = serde_json::from_str("\"visa\"").unwrap();
/// assert_eq!(c, ikd_datasets::Conversion::Visa);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversion {
    /// `split_csv/1cls.csv` → `<object>/train/good`, `test/{good,bad}`, binarised masks.
    Visa,
    /// BMP → PNG, `ok`/`ko` kept (the loader reads `ok` as the defect-free class).
    Btad,
    /// `kosNN/PartN.jpg` + `PartN_label.bmp` → one category, normal images split 80/20 with a
    /// fixed seed (written to `split.csv`).
    Kolektor,
    /// `ground_truth/<defect>/<stem>/NNN.png` → their union `ground_truth/<defect>/<stem>_mask.png`.
    Loco,
    /// `test_public` → `test` and `ground_truth` (`test_private*` have no ground truth: dropped).
    MvtecAd2,
}

/// The description of a dataset's layout: what its archive holds and what the loader reads after
/// extraction (and conversion).
///
/// ```
/// let l = ikd_datasets::LayoutDescription::default();
/// assert_eq!(l.normal, "good");
/// assert_eq!(l.mask_suffix, "_mask");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutDescription {
    /// The archive's own layout, in words (as its authors ship it).
    #[serde(default)]
    pub source: String,
    /// The defect-free class's folder name after conversion (`good`, `ok`).
    #[serde(default = "default_normal")]
    pub normal: String,
    /// How masks are named: `ground_truth/<defect>/<stem><mask_suffix>.png`.
    #[serde(default = "default_mask_suffix")]
    pub mask_suffix: String,
    /// The splits the dataset folder holds (`train`, `test`, and e.g. `validation`).
    #[serde(default = "default_splits")]
    pub splits: Vec<String>,
}

fn default_normal() -> String {
    ikd_data::GOOD.into()
}
fn default_mask_suffix() -> String {
    "_mask".into()
}
fn default_splits() -> Vec<String> {
    vec!["train".into(), "test".into()]
}

impl Default for LayoutDescription {
    fn default() -> Self {
        Self {
            source: String::new(),
            normal: default_normal(),
            mask_suffix: default_mask_suffix(),
            splits: default_splits(),
        }
    }
}

/// Where a dataset archive comes from and what it must contain.
///
/// ```
/// use ikd_datasets::{Manifest, Counts, CategoryCounts};
/// let m = Manifest {
///     name: "toy".into(),
///     url: "http://127.0.0.1:1/toy.tar.xz".into(),
///     file_name: "toy.tar.xz".into(),
///     size: Some(10),
///     sha256: "0".repeat(64),
///     extract_dir: "toy".into(),
///     totals: Some(Counts { train: 1, test_good: 1, test_defect: 1 }),
///     categories: vec![CategoryCounts { name: "a".into(), counts: None }],
///     ..Manifest::default()
/// };
/// assert!(m.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Human-readable name of the dataset.
    pub name: String,
    /// The published download URL.
    pub url: String,
    /// An environment variable that, when set and non-empty, overrides `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// The archive's file name (`.tar`, `.tar.gz`, `.tar.xz` or `.zip`: [`ArchiveFormat`]).
    pub file_name: String,
    /// The archive's size in bytes, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The archive's SHA-256, lower-case hex.
    pub sha256: String,
    /// The folder (under the destination) the dataset is extracted (and converted) into.
    pub extract_dir: String,
    /// How the archive becomes MVTec AD layout; `None`: it already is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
    /// Files of the archive (paths relative to its dataset folder) with their SHA-256, checked
    /// after extraction (VisA's split file).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub file_checksums: std::collections::BTreeMap<String, String>,
    /// The layout, before and after conversion.
    #[serde(default)]
    pub layout: LayoutDescription,
    /// Where the counts come from, and other facts worth knowing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    /// The image counts over all categories, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<Counts>,
    /// The categories the dataset holds.
    pub categories: Vec<CategoryCounts>,
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains('/')
        && !s.contains('\\')
        && !s.contains('\0')
}

impl Manifest {
    /// Reads and validates a manifest (JSON).
    ///
    /// ```
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/mvtec_ad.json");
    /// let m = ikd_datasets::Manifest::load(path)?; // datasets/mvtec_ad.json
    /// assert_eq!(m.categories.len(), 15);
    /// assert_eq!(m.totals.unwrap().train, 3629);
    /// # Ok::<(), ikd_datasets::DatasetError>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).at(path)?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| DatasetError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        m.validate()
            .map_err(|message| DatasetError::Manifest { path: path.to_path_buf(), message })?;
        Ok(m)
    }

    /// Checks the manifest's consistency; the message says what is wrong.
    ///
    /// ```
    /// # use ikd_datasets::Manifest;
    /// let m = Manifest { name: "x".into(), url: "http://h/x".into(), file_name: "x.tar.xz".into(),
    ///     sha256: "abc".into(), extract_dir: "x".into(), ..Manifest::default() };
    /// assert!(m.validate().unwrap_err().contains("sha256"));
    /// ```
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha256 must be 64 hex digits, got `{}`", self.sha256));
        }
        if self.url.trim().is_empty() {
            return Err("url is empty".into());
        }
        if !plain_name(&self.file_name) {
            return Err(format!("file_name `{}` must be a plain file name", self.file_name));
        }
        if ArchiveFormat::from_name(&self.file_name).is_none() {
            return Err(format!(
                "file_name `{}` must end in .tar, .tar.gz, .tar.xz or .zip",
                self.file_name
            ));
        }
        for (path, sha) in &self.file_checksums {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("file_checksums: `{path}` needs 64 hex digits, got `{sha}`"));
            }
            if crate::extract::unsafe_path(Path::new(path)).is_some() {
                return Err(format!("file_checksums: `{path}` must be a relative path"));
            }
        }
        if !plain_name(&self.extract_dir) {
            return Err(format!("extract_dir `{}` must be a plain folder name", self.extract_dir));
        }
        if self.categories.is_empty() {
            return Err("no categories".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.categories {
            if !plain_name(&c.name) {
                return Err(format!("category name `{}` must be a plain folder name", c.name));
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!("category `{}` listed twice", c.name));
            }
        }
        if let (Some(totals), true) =
            (self.totals, self.categories.iter().all(|c| c.counts.is_some()))
        {
            let mut sum = Counts::default();
            for c in self.categories.iter().filter_map(|c| c.counts.as_ref()) {
                sum.add(c);
            }
            if sum != totals {
                return Err(format!(
                    "per-category counts sum to {sum:?} but totals say {totals:?}"
                ));
            }
        }
        Ok(())
    }

    /// The URL to download from: `override_url` if given, else the manifest's environment
    /// variable if set and non-empty, else the manifest's URL.
    ///
    /// ```
    /// # use ikd_datasets::Manifest;
    /// # let m = Manifest { name: "x".into(), url: "http://h/x".into(), file_name: "x.tar.xz".into(),
    /// #     sha256: "0".repeat(64), extract_dir: "x".into(), ..Manifest::default() };
    /// assert_eq!(m.resolve_url(Some("http://127.0.0.1:9/x")), "http://127.0.0.1:9/x");
    /// assert_eq!(m.resolve_url(None), "http://h/x");
    /// ```
    pub fn resolve_url(&self, override_url: Option<&str>) -> String {
        if let Some(u) = override_url {
            return u.to_string();
        }
        if let Some(var) = &self.url_env {
            if let Ok(u) = std::env::var(var) {
                if !u.trim().is_empty() {
                    return u.trim().to_string();
                }
            }
        }
        self.url.clone()
    }
}
/// The marker file a fetched dataset folder holds: which archive (SHA-256) it came from and how
/// it was converted.
///
/// ```
/// assert_eq!(ikd_datasets::MARKER, ".ikd-dataset.json");
/// ```
pub const MARKER: &str = ".ikd-dataset.json";

/// The contents of [`MARKER`].
///
/// ```
/// let m = ikd_datasets::Marker { dataset: "VisA".into(), archive: "VisA_20220922.tar".into(),
///     sha256: "0".repeat(64), conversion: None };
/// assert!(serde_json::to_string(&m).unwrap().contains("VisA"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The manifest's name of the dataset.
    pub dataset: String,
    /// The archive's file name.
    pub archive: String,
    /// The archive's SHA-256.
    pub sha256: String,
    /// The conversion applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
}

impl Marker {
    /// Reads `<dir>/.ikd-dataset.json`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let p = dir.join(MARKER);
        if !p.exists() {
            return Ok(None);
        }
        let text = fs::read_to_string(&p).at(&p)?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| DatasetError::Manifest { path: p, message: e.to_string() })
    }
}
