//! Verified, resumable download and safe extraction of a dataset archive described by a
//! [`Manifest`] (one per dataset under `datasets/` at the workspace root: [`DATASETS`]), and its
//! conversion to MVTec AD layout where the archive has another ([`crate::convert`]).
//!
//! - The archive is streamed to `<dest>/<file_name>.part` with a progress bar. After an
//!   interruption the next attempt (an automatic retry or a later run) resumes with an HTTP
//!   `Range: bytes=<len>-` request; a server that answers `200` instead of `206` is downloaded again
//!   from the start.
//! - Size and SHA-256 are checked before anything is extracted. A mismatch deletes nothing: a file
//!   the user put in place stays where it is, a freshly downloaded one is kept as
//!   `<file_name>.sha256-mismatch`, and the error says what was expected and what was found.
//! - Extraction (tar, tar.gz, tar.xz, zip: [`ArchiveFormat`]) refuses entries that could land
//!   outside the target (`..`, absolute paths, symbolic and hard links, devices and FIFOs),
//!   writes into a temporary folder next to the target, converts it where the manifest says so,
//!   checks the counts of the manifest there, writes the marker [`MARKER`] with the archive's
//!   SHA-256 and only then renames it into place. An interrupted extraction or conversion leaves
//!   only a staging folder, which the next run removes and redoes.
//! - An existing extracted copy (`--data-root`, or `<dest>/<extract_dir>`) is checked against the
//!   manifest's counts and used as is: nothing is downloaded.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::error::{DataError, IoContext, Result};
use crate::layout::Category;

/// The environment variable that overrides the MVTec AD download URL.
///
/// ```
/// assert_eq!(ikd_data::download::MVTEC_URL_ENV, "IKD_MVTEC_URL");
/// ```
pub const MVTEC_URL_ENV: &str = "IKD_MVTEC_URL";

/// Image counts of a dataset (or of one category).
///
/// ```
/// let c = ikd_data::download::Counts { train: 3, test_good: 1, test_defect: 2 };
/// assert_eq!(c.total(), 6);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Images in `train/good`.
    pub train: usize,
    /// Images in `test/good`.
    pub test_good: usize,
    /// Images in `test/<defect>` for every defect other than `good` (each has a mask).
    pub test_defect: usize,
}

impl Counts {
    /// All images.
    ///
    /// ```
    /// assert_eq!(ikd_data::download::Counts::default().total(), 0);
    /// ```
    pub fn total(&self) -> usize {
        self.train + self.test_good + self.test_defect
    }

    fn add(&mut self, o: &Counts) {
        self.train += o.train;
        self.test_good += o.test_good;
        self.test_defect += o.test_defect;
    }
}

/// One category of a manifest, with its counts where they are known.
///
/// ```
/// let c = ikd_data::download::CategoryCounts { name: "bottle".into(), counts: None };
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
/// assert!(ikd_data::download::DATASETS.iter().any(|d| d.0 == "visa"));
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
/// let p = ikd_data::download::manifest_path("datasets".as_ref(), "BTAD")?;
/// assert_eq!(p, std::path::Path::new("datasets/btad.json"));
/// assert!(ikd_data::download::manifest_path("datasets".as_ref(), "mpdd").is_err());
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn manifest_path(datasets_dir: &Path, name: &str) -> Result<PathBuf> {
    let n = name.to_ascii_lowercase();
    DATASETS
        .iter()
        .find(|(id, aliases, _)| *id == n || aliases.contains(&n.as_str()))
        .map(|(_, _, file)| datasets_dir.join(file))
        .ok_or_else(|| {
            let known: Vec<&str> = DATASETS.iter().map(|d| d.0).collect();
            DataError::InvalidArgument(format!(
                "unknown dataset `{name}`: known are {} (MPDD, KSDD2, DAGM and your own folders: \
                 folder mode, --normal-dir/--abnormal-dir/--mask-dir)",
                known.join(", ")
            ))
        })
}

/// The kind of archive, from the file name's ending.
///
/// ```
/// use ikd_data::download::ArchiveFormat;
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
/// let c: ikd_data::download::Conversion = serde_json::from_str("\"visa\"").unwrap();
/// assert_eq!(c, ikd_data::download::Conversion::Visa);
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
/// let l = ikd_data::download::LayoutDescription::default();
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
    crate::GOOD.into()
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
/// use ikd_data::download::{Manifest, Counts, CategoryCounts};
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
    /// let m = ikd_data::download::Manifest::load(path)?; // datasets/mvtec_ad.json
    /// assert_eq!(m.categories.len(), 15);
    /// assert_eq!(m.totals.unwrap().train, 3629);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).at(path)?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| DataError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        m.validate()
            .map_err(|message| DataError::Manifest { path: path.to_path_buf(), message })?;
        Ok(m)
    }

    /// Checks the manifest's consistency; the message says what is wrong.
    ///
    /// ```
    /// # use ikd_data::download::Manifest;
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
            if unsafe_path(Path::new(path)).is_some() {
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
    /// # use ikd_data::download::Manifest;
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

/// Options of [`fetch_dataset`].
///
/// ```
/// let o = ikd_data::download::FetchOptions { progress: false, ..Default::default() };
/// assert_eq!(o.retries, 3);
/// ```
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Download from here instead of the manifest's URL (see [`Manifest::resolve_url`]).
    pub url: Option<String>,
    /// Show progress bars.
    pub progress: bool,
    /// How many times an interrupted download is resumed automatically before giving up.
    pub retries: u32,
    /// Pause before the first retry (doubled for each further one).
    pub retry_delay: Duration,
    /// Keep the verified archive after a successful extraction.
    pub keep_archive: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            url: None,
            progress: true,
            retries: 3,
            retry_delay: Duration::from_secs(2),
            keep_archive: true,
        }
    }
}

/// `<path>` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn http_err(url: &str, message: impl ToString) -> DataError {
    DataError::Http { url: url.to_string(), message: message.to_string() }
}

/// Whether a URL's host is the loopback interface.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Downloads `url` into `part` (created or appended to), resuming from `part`'s current length
/// with an HTTP `Range` request. Returns once the server's body has been read to its end; the
/// length is checked against `expected_size` when it is given.
///
/// ```no_run
/// let part = std::path::Path::new("data/archive.tar.xz.part");
/// ikd_data::download::download_resumable("http://127.0.0.1:8000/archive.tar.xz", part, Some(1234), false)?;
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn download_resumable(
    url: &str,
    part: &Path,
    expected_size: Option<u64>,
    progress: bool,
) -> Result<()> {
    let mut have = match fs::metadata(part) {
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    if let Some(size) = expected_size {
        if have == size {
            return Ok(());
        }
        if have > size {
            warn!(
                "{}: partial download is larger ({have} bytes) than the archive ({size}); starting again",
                part.display()
            );
            File::create(part).at(part)?;
            have = 0;
        }
    }
    let mut config = ureq::Agent::config_builder();
    if is_loopback(url) {
        // A local server (tests, a local mirror): never through a proxy from the environment.
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut req = agent.get(url);
    if have > 0 {
        info!("resuming {} at byte {have}", part.display());
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| http_err(url, e))?;
    let status = resp.status().as_u16();
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    // Decide where the body goes before touching the partial file.
    let append = match status {
        206 if have > 0 => {
            let cr = header("content-range").unwrap_or_default();
            let start = cr
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.trim().parse::<u64>().ok());
            if start != Some(have) {
                return Err(http_err(
                    url,
                    format!("asked for bytes {have}- but the server sent range `{cr}`"),
                ));
            }
            true
        }
        200 => {
            if have > 0 {
                warn!("{url}: server ignored the range request; downloading from the start");
                have = 0;
            }
            false
        }
        416 if have > 0 && expected_size.is_none() => return Ok(()),
        s => return Err(http_err(url, format!("HTTP status {s}"))),
    };
    if let (Some(size), Some(len)) = (expected_size, content_length) {
        if have + len != size {
            return Err(http_err(
                url,
                format!("server announces {} bytes but the manifest says {size}", have + len),
            ));
        }
    }
    let mut file = if append {
        OpenOptions::new().append(true).open(part).at(part)?
    } else {
        File::create(part).at(part)?
    };
    let total = expected_size.or(content_length.map(|l| l + have));
    let pb = ikd_io::progress::bytes(total, "download", progress);
    pb.set_position(have);
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = have;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.flush().at(part)?;
                return Err(http_err(url, format!("transfer interrupted after {got} bytes: {e}")));
            }
        };
        file.write_all(&buf[..n]).at(part)?;
        got += n as u64;
        pb.set_position(got);
    }
    file.sync_all().at(part)?;
    pb.finish_and_clear();
    if let Some(size) = expected_size {
        if got != size {
            return Err(http_err(url, format!("transfer ended after {got} of {size} bytes")));
        }
    }
    Ok(())
}

/// The SHA-256 of a file, lower-case hex.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("f");
/// std::fs::write(&p, b"abc").unwrap();
/// assert_eq!(
///     ikd_data::download::sha256_file(&p, false)?,
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn sha256_file(path: &Path, progress: bool) -> Result<String> {
    let mut f = File::open(path).at(path)?;
    let len = f.metadata().at(path)?.len();
    let pb = ikd_io::progress::bytes(Some(len), "sha-256", progress);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    Ok(hex::encode(h.finalize()))
}

/// Checks a file's size (where known) and SHA-256; the error says what was expected and what was
/// found.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("f");
/// std::fs::write(&p, b"abc").unwrap();
/// let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// assert!(ikd_data::download::verify_file(&p, Some(3), sha, false).is_ok());
/// assert!(ikd_data::download::verify_file(&p, None, sha, false).is_ok());
/// assert!(ikd_data::download::verify_file(&p, Some(4), sha, false).is_err());
/// ```
pub fn verify_file(path: &Path, size: Option<u64>, sha256: &str, progress: bool) -> Result<()> {
    let found = fs::metadata(path).at(path)?.len();
    if let Some(size) = size.filter(|&s| s != found) {
        return Err(DataError::SizeMismatch { path: path.to_path_buf(), expected: size, found });
    }
    let digest = sha256_file(path, progress)?;
    if !digest.eq_ignore_ascii_case(sha256) {
        return Err(DataError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: sha256.to_ascii_lowercase(),
            found: digest,
        });
    }
    Ok(())
}

/// Why an archive path is refused, if it is.
fn unsafe_path(p: &Path) -> Option<&'static str> {
    for c in p.components() {
        match c {
            Component::ParentDir => return Some("path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Some("absolute path"),
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    None
}

/// A reader that reports the bytes it reads to a progress bar.
struct Counting<R> {
    inner: R,
    pb: ikd_io::progress::ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pb.inc(n as u64);
        Ok(n)
    }
}

fn refuse(archive: &Path, entry: &str, reason: &str) -> DataError {
    DataError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    }
}

/// Extracts an archive (its [`ArchiveFormat`] from its file name) into the folder `into` (created
/// if missing), refusing any entry that could land outside it or is not a plain file or folder:
/// paths with `..`, absolute paths, symbolic and hard links (a dataset holds none), devices and
/// FIFOs. On a refused entry it stops with [`DataError::UnsafeEntry`]; what was extracted so far
/// stays in `into` (see [`fetch_dataset`] for the all-or-nothing wrapper).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let archive = dir.path().join("a.tar.xz");
/// let enc = liblzma::write::XzEncoder::new(std::fs::File::create(&archive).unwrap(), 6);
/// let mut builder = tar::Builder::new(enc);
/// let mut h = tar::Header::new_gnu();
/// h.set_size(2);
/// h.set_mode(0o644);
/// h.set_cksum();
/// builder.append_data(&mut h, "x/hello.txt", &b"hi"[..]).unwrap();
/// builder.into_inner().unwrap().finish().unwrap();
/// ikd_data::download::extract_archive(&archive, &dir.path().join("out"), false)?;
/// assert_eq!(std::fs::read(dir.path().join("out/x/hello.txt")).unwrap(), b"hi");
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn extract_archive(archive: &Path, into: &Path, progress: bool) -> Result<()> {
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let format = ArchiveFormat::from_name(&name).ok_or_else(|| {
        DataError::InvalidArgument(format!(
            "{}: not a .tar, .tar.gz, .tar.xz or .zip archive",
            archive.display()
        ))
    })?;
    let file = File::open(archive).at(archive)?;
    let len = file.metadata().at(archive)?.len();
    let pb = ikd_io::progress::bytes(Some(len), "extract", progress);
    fs::create_dir_all(into).at(into)?;
    let reader = Counting { inner: BufReader::with_capacity(1 << 20, file), pb: pb.clone() };
    match format {
        ArchiveFormat::Tar => extract_tar(archive, reader, into)?,
        ArchiveFormat::TarGz => {
            extract_tar(archive, flate2::read::MultiGzDecoder::new(reader), into)?
        }
        ArchiveFormat::TarXz => {
            extract_tar(archive, liblzma::read::XzDecoder::new_multi_decoder(reader), into)?
        }
        ArchiveFormat::Zip => {
            drop(reader);
            extract_zip(archive, into, &pb)?
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// [`extract_archive`] for a `.tar.xz` (kept for callers of the MVTec AD-only version).
///
/// ```no_run
/// ikd_data::download::extract_tar_xz("a.tar.xz".as_ref(), "out".as_ref(), false)?;
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn extract_tar_xz(archive: &Path, into: &Path, progress: bool) -> Result<()> {
    extract_archive(archive, into, progress)
}

fn extract_tar<R: Read>(archive: &Path, reader: R, into: &Path) -> Result<()> {
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(false);
    tar.set_unpack_xattrs(false);
    tar.set_preserve_mtime(false);
    for entry in tar.entries().at(archive)? {
        let mut entry = entry.at(archive)?;
        let path = entry.path().at(archive)?.into_owned();
        let shown = path.display().to_string();
        if let Some(reason) = unsafe_path(&path) {
            return Err(refuse(archive, &shown, reason));
        }
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous | T::Directory | T::GNUSparse => {}
            // Metadata records (pax and GNU long-name headers) carry no file.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::Symlink | T::Link => {
                let target =
                    entry.link_name().at(archive)?.map(|t| t.into_owned()).unwrap_or_default();
                let why = unsafe_path(&target).map_or(String::new(), |r| format!(", {r}"));
                return Err(refuse(
                    archive,
                    &shown,
                    &format!(
                        "link to `{}`{why}: links could point outside, and a dataset holds none",
                        target.display()
                    ),
                ));
            }
            other => {
                return Err(refuse(archive, &shown, &format!("unsupported entry type {other:?}")));
            }
        }
        let inside = entry
            .unpack_in(into)
            .map_err(|e| DataError::Io { path: into.join(&path), source: e })?;
        if !inside {
            return Err(refuse(archive, &shown, "would be written outside the target folder"));
        }
    }
    Ok(())
}

fn extract_zip(archive: &Path, into: &Path, pb: &ikd_io::progress::ProgressBar) -> Result<()> {
    let file = File::open(archive).at(archive)?;
    let zip_err = |e: zip::result::ZipError| DataError::Io {
        path: archive.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    };
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_err)?;
        let raw = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let shown_path = PathBuf::from(raw.replace('\\', "/"));
        if let Some(reason) = unsafe_path(&shown_path) {
            return Err(refuse(archive, &raw, reason));
        }
        if entry.is_symlink() {
            return Err(refuse(
                archive,
                &raw,
                "symbolic link: links could point outside, and a dataset holds none",
            ));
        }
        let Some(rel) = entry.enclosed_name() else {
            return Err(refuse(archive, &raw, "would be written outside the target folder"));
        };
        let out = into.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&out).at(&out)?;
            continue;
        }
        if !entry.is_file() {
            return Err(refuse(archive, &raw, "not a file or folder"));
        }
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        let mut f = File::create(&out).at(&out)?;
        std::io::copy(&mut entry, &mut f).at(&out)?;
        pb.inc(entry.compressed_size());
    }
    Ok(())
}

/// Checks that an extracted (and converted) dataset holds the manifest's categories in MVTec AD
/// layout (every category opens: masks paired, every defective image with its mask, headers
/// readable, the defect-free class named as the manifest's layout says) with the manifest's
/// counts, per category and in total where the manifest gives them. Returns the counted totals.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// use ikd_data::download::{CategoryCounts, Counts, Manifest};
/// let counts = Counts { train: 4, test_good: 2, test_defect: 2 };
/// let m = Manifest { name: "toy".into(), url: "http://127.0.0.1:1/toy.tar.xz".into(),
///     file_name: "toy.tar.xz".into(), sha256: "0".repeat(64), extract_dir: "toy".into(),
///     totals: Some(counts), categories: vec![CategoryCounts { name: "carpet".into(), counts: Some(counts) }],
///     ..Manifest::default() };
/// let found = ikd_data::download::verify_extracted(dir.path(), &m)?;
/// assert_eq!(found, counts);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn verify_extracted(root: &Path, manifest: &Manifest) -> Result<Counts> {
    let mut total = Counts::default();
    for cc in &manifest.categories {
        let cat = Category::open_with(root, &cc.name, crate::MaskPolicy::Required)?;
        if cat.normal != manifest.layout.normal {
            return Err(DataError::MissingDir {
                path: cat.dir.join("train").join(&manifest.layout.normal),
            });
        }
        let found = Counts {
            train: cat.train.len(),
            test_good: cat.n_test_good(),
            test_defect: cat.n_test_defect(),
        };
        if let Some(expected) = &cc.counts {
            check_counts(&cat.dir, expected, &found)?;
        }
        total.add(&found);
    }
    if let Some(totals) = &manifest.totals {
        check_counts(root, totals, &total)?;
    }
    Ok(total)
}

fn check_counts(path: &Path, expected: &Counts, found: &Counts) -> Result<()> {
    for (what, e, f) in [
        ("training images", expected.train, found.train),
        ("defect-free test images", expected.test_good, found.test_good),
        ("defective test images", expected.test_defect, found.test_defect),
    ] {
        if e != f {
            return Err(DataError::CountMismatch {
                path: path.to_path_buf(),
                what: what.to_string(),
                expected: e,
                found: f,
            });
        }
    }
    Ok(())
}

/// The folder inside a fresh extraction that holds `probe` (a category folder, or a file such
/// as VisA's `split_csv/1cls.csv`): the extraction folder itself, or its single sub-folder when
/// the archive wraps everything in one top-level folder (twice at most).
pub(crate) fn root_holding(staging: &Path, probe: &str) -> Result<PathBuf> {
    let mut dir = staging.to_path_buf();
    for _ in 0..3 {
        if dir.join(probe).exists() {
            return Ok(dir);
        }
        let subdirs: Vec<PathBuf> = fs::read_dir(&dir)
            .at(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        match subdirs.as_slice() {
            [only] => dir = only.clone(),
            _ => break,
        }
    }
    Err(DataError::Layout {
        path: staging.to_path_buf(),
        message: format!("the archive holds no `{probe}` (not the expected dataset layout)"),
    })
}

/// The marker file a fetched dataset folder holds: which archive (SHA-256) it came from and how
/// it was converted.
///
/// ```
/// assert_eq!(ikd_data::download::MARKER, ".ikd-dataset.json");
/// ```
pub const MARKER: &str = ".ikd-dataset.json";

/// The contents of [`MARKER`].
///
/// ```
/// let m = ikd_data::download::Marker { dataset: "VisA".into(), archive: "VisA_20220922.tar".into(),
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
            .map_err(|e| DataError::Manifest { path: p, message: e.to_string() })
    }
}

/// Makes sure the dataset of `manifest` is available and returns its root folder.
///
/// With `data_root`, that folder is checked with [`verify_extracted`] and returned: nothing is
/// downloaded. Otherwise [`fetch_dataset`] into `dest`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// use ikd_data::download::{CategoryCounts, Counts, Manifest};
/// let counts = Counts { train: 4, test_good: 2, test_defect: 2 };
/// let m = Manifest { name: "toy".into(), url: "http://127.0.0.1:1/toy.tar.xz".into(),
///     file_name: "toy.tar.xz".into(), sha256: "0".repeat(64), extract_dir: "toy".into(),
///     totals: Some(counts), categories: vec![CategoryCounts { name: "carpet".into(), counts: Some(counts) }],
///     ..Manifest::default() };
/// use ikd_data::download::{ensure_dataset, FetchOptions};
/// // An existing copy (--data-root): verified, nothing downloaded.
/// let root = ensure_dataset(&m, Some(dir.path()), &dir.path().join("downloads"), &FetchOptions::default())?;
/// assert_eq!(root, dir.path());
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn ensure_dataset(
    manifest: &Manifest,
    data_root: Option<&Path>,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<PathBuf> {
    match data_root {
        Some(root) => {
            let counts = verify_extracted(root, manifest)?;
            info!("using the existing copy at {} ({} images)", root.display(), counts.total());
            Ok(root.to_path_buf())
        }
        None => fetch_dataset(manifest, dest, opts),
    }
}

/// Downloads (resumably), verifies, extracts and converts the archive of `manifest` into
/// `<dest>/<extract_dir>`, which it returns. Works for every manifest of [`DATASETS`].
///
/// Steps: an existing `<dest>/<extract_dir>` is checked (its [`MARKER`] must name the manifest's
/// SHA-256) and verified, then returned; an existing `<dest>/<file_name>` is verified (never
/// deleted) instead of downloading; otherwise the archive is downloaded to `<file_name>.part`
/// with up to `opts.retries` automatic resumptions, verified and renamed. It is then extracted
/// into a staging folder beside the target ([`ikd_io::StagedDir`]), converted (into a second
/// staging folder) where the manifest says so, counted, marked, and renamed to
/// `<dest>/<extract_dir>`.
///
/// ```no_run
/// use ikd_data::download::{fetch_dataset, FetchOptions, Manifest};
/// let m = Manifest::load("datasets/visa.json")?;
/// let root = fetch_dataset(&m, std::path::Path::new("data"), &FetchOptions::default())?;
/// let candle = ikd_data::Category::open(&root, "candle")?;
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn fetch_dataset(manifest: &Manifest, dest: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    manifest
        .validate()
        .map_err(|message| DataError::Manifest { path: PathBuf::from(&manifest.name), message })?;
    let target = dest.join(&manifest.extract_dir);
    if target.exists() {
        if let Some(marker) = Marker::read(&target)? {
            if !marker.sha256.eq_ignore_ascii_case(&manifest.sha256) {
                return Err(DataError::Layout {
                    path: target.join(MARKER),
                    message: format!(
                        "this folder was made from an archive with SHA-256 {}, the manifest wants {}; move it away to fetch again",
                        marker.sha256, manifest.sha256
                    ),
                });
            }
        }
        verify_extracted(&target, manifest)?;
        info!("{} already extracted at {}", manifest.name, target.display());
        return Ok(target);
    }
    fs::create_dir_all(dest).at(dest)?;
    let archive = dest.join(&manifest.file_name);
    if archive.exists() {
        info!("verifying the existing archive {}", archive.display());
        verify_file(&archive, manifest.size, &manifest.sha256, opts.progress)?;
    } else {
        let url = manifest.resolve_url(opts.url.as_deref());
        let part = with_suffix(&archive, ".part");
        info!("downloading {} from {url}", manifest.name);
        let mut attempt = 0;
        loop {
            match download_resumable(&url, &part, manifest.size, opts.progress) {
                Ok(()) => break,
                Err(e @ (DataError::Http { .. } | DataError::Io { .. }))
                    if attempt < opts.retries =>
                {
                    let delay = opts.retry_delay * 2u32.saturating_pow(attempt);
                    warn!("{e}; resuming in {delay:?}");
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = verify_file(&part, manifest.size, &manifest.sha256, opts.progress) {
            let kept = with_suffix(&archive, ".sha256-mismatch");
            fs::rename(&part, &kept).at(&kept)?;
            return Err(match e {
                DataError::ChecksumMismatch { expected, found, .. } => {
                    DataError::ChecksumMismatch { path: kept, expected, found }
                }
                DataError::SizeMismatch { expected, found, .. } => {
                    DataError::SizeMismatch { path: kept, expected, found }
                }
                other => other,
            });
        }
        fs::rename(&part, &archive).at(&archive)?;
    }

    let marker = Marker {
        dataset: manifest.name.clone(),
        archive: manifest.file_name.clone(),
        sha256: manifest.sha256.to_ascii_lowercase(),
        conversion: manifest.conversion,
    };
    let marker_json = serde_json::to_vec_pretty(&marker)
        .map_err(|e| DataError::InvalidArgument(format!("marker: {e}")))?;
    match manifest.conversion {
        None => {
            let staged = ikd_io::StagedDir::new(&target)?;
            extract_archive(&archive, staged.path(), opts.progress)?;
            let root = root_holding(staged.path(), &manifest.categories[0].name)?;
            check_file_checksums(&root, manifest)?;
            verify_extracted(&root, manifest)?;
            ikd_io::atomic_write(&root.join(MARKER), &marker_json)?;
            staged.commit_subfolder(&root)?;
        }
        Some(conversion) => {
            // The raw extraction is a staging folder of its own (removed when this returns); the
            // converted dataset is built in the target's staging folder.
            let raw = ikd_io::StagedDir::new(with_suffix(&target, ".source"))?;
            extract_archive(&archive, raw.path(), opts.progress)?;
            let source = root_holding(raw.path(), &crate::convert::probe(conversion, manifest))?;
            check_file_checksums(&source, manifest)?;
            let staged = ikd_io::StagedDir::new(&target)?;
            crate::convert::convert(conversion, &source, staged.path(), manifest, opts.progress)?;
            verify_extracted(staged.path(), manifest)?;
            ikd_io::atomic_write(&staged.path().join(MARKER), &marker_json)?;
            staged.commit()?;
            drop(raw);
        }
    }
    if !opts.keep_archive {
        fs::remove_file(&archive).at(&archive)?;
    }
    info!("{} ready at {}", manifest.name, target.display());
    Ok(target)
}

/// The MVTec AD-only name of [`fetch_dataset`].
///
/// ```no_run
/// let m = ikd_data::download::Manifest::load("datasets/mvtec_ad.json")?;
/// ikd_data::download::fetch_mvtec(&m, "data".as_ref(), &Default::default())?;
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn fetch_mvtec(manifest: &Manifest, dest: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    fetch_dataset(manifest, dest, opts)
}

fn check_file_checksums(root: &Path, manifest: &Manifest) -> Result<()> {
    for (rel, sha) in &manifest.file_checksums {
        let p = root.join(rel);
        if !p.is_file() {
            return Err(DataError::Layout {
                path: p,
                message: "missing from the archive (the manifest lists its checksum)".into(),
            });
        }
        verify_file(&p, None, sha, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        for u in [
            "http://127.0.0.1:8000/a.tar.xz",
            "http://localhost/a",
            "http://[::1]:9/x",
            "http://user:pw@127.0.0.2:1/",
        ] {
            assert!(is_loopback(u), "{u}");
        }
        for u in [
            "https://www.mydrive.ch/shares/x",
            "http://10.0.0.1/a",
            "http://127.0.0.1.example.com/",
        ] {
            assert!(!is_loopback(u), "{u}");
        }
    }

    #[test]
    fn unsafe_paths() {
        assert!(unsafe_path(Path::new("a/b.png")).is_none());
        assert!(unsafe_path(Path::new("./a")).is_none());
        assert_eq!(unsafe_path(Path::new("a/../../b")), Some("path contains `..`"));
        assert_eq!(unsafe_path(Path::new("/etc/passwd")), Some("absolute path"));
    }
}
