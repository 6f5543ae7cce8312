//! Verified, resumable download and safe extraction of a dataset archive described by a
//! [`Manifest`] (for MVTec AD: `datasets/mvtec_ad.json` at the workspace root).
//!
//! - The archive is streamed to `<dest>/<file_name>.part` with a progress bar. After an
//!   interruption the next attempt (an automatic retry or a later run) resumes with an HTTP
//!   `Range: bytes=<len>-` request; a server that answers `200` instead of `206` is downloaded again
//!   from the start.
//! - Size and SHA-256 are checked before anything is extracted. A mismatch deletes nothing: a file
//!   the user put in place stays where it is, a freshly downloaded one is kept as
//!   `<file_name>.sha256-mismatch`, and the error says what was expected and what was found.
//! - Extraction refuses entries that would land outside the target (`..`, absolute paths, links
//!   whose target is absolute or climbs with `..`, devices and FIFOs), writes into a temporary
//!   folder next to the target, checks the counts of the manifest there and only then renames it
//!   into place.
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

/// Where a dataset archive comes from and what it must contain.
///
/// ```
/// use ikd_data::download::{Manifest, Counts, CategoryCounts};
/// let m = Manifest {
///     name: "toy".into(),
///     url: "http://127.0.0.1:1/toy.tar.xz".into(),
///     url_env: None,
///     file_name: "toy.tar.xz".into(),
///     size: 10,
///     sha256: "0".repeat(64),
///     extract_dir: "toy".into(),
///     totals: Counts { train: 1, test_good: 1, test_defect: 1 },
///     categories: vec![CategoryCounts { name: "a".into(), counts: None }],
/// };
/// assert!(m.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Human-readable name of the dataset.
    pub name: String,
    /// The published download URL.
    pub url: String,
    /// An environment variable that, when set and non-empty, overrides `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// The archive's file name (a `.tar.xz`).
    pub file_name: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// The archive's SHA-256, lower-case hex.
    pub sha256: String,
    /// The folder (under the destination) the archive is extracted into.
    pub extract_dir: String,
    /// The image counts over all categories.
    pub totals: Counts,
    /// The categories the archive holds.
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
    /// assert_eq!(m.totals.train, 3629);
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
    /// # use ikd_data::download::{Manifest, Counts};
    /// let m = Manifest { name: "x".into(), url: "http://h/x".into(), url_env: None,
    ///     file_name: "x.tar.xz".into(), size: 1, sha256: "abc".into(), extract_dir: "x".into(),
    ///     totals: Counts::default(), categories: vec![] };
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
        if self.categories.iter().all(|c| c.counts.is_some()) {
            let mut sum = Counts::default();
            for c in self.categories.iter().filter_map(|c| c.counts.as_ref()) {
                sum.add(c);
            }
            if sum != self.totals {
                return Err(format!(
                    "per-category counts sum to {sum:?} but totals say {:?}",
                    self.totals
                ));
            }
        }
        Ok(())
    }

    /// The URL to download from: `override_url` if given, else the manifest's environment
    /// variable if set and non-empty, else the manifest's URL.
    ///
    /// ```
    /// # use ikd_data::download::{Manifest, Counts};
    /// # let m = Manifest { name: "x".into(), url: "http://h/x".into(), url_env: None,
    /// #     file_name: "x.tar.xz".into(), size: 1, sha256: "0".repeat(64), extract_dir: "x".into(),
    /// #     totals: Counts::default(), categories: vec![] };
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

/// Options of [`fetch_mvtec`].
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

/// Checks a file's size and SHA-256; the error says what was expected and what was found.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("f");
/// std::fs::write(&p, b"abc").unwrap();
/// let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// assert!(ikd_data::download::verify_file(&p, 3, sha, false).is_ok());
/// assert!(ikd_data::download::verify_file(&p, 4, sha, false).is_err());
/// ```
pub fn verify_file(path: &Path, size: u64, sha256: &str, progress: bool) -> Result<()> {
    let found = fs::metadata(path).at(path)?.len();
    if found != size {
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

/// Extracts a `.tar.xz` archive into the folder `into` (created if missing), refusing any entry
/// that could land outside it: paths with `..` or absolute paths, symbolic or hard links whose
/// target is absolute or contains `..`, and devices or FIFOs. On a refused entry it stops with
/// [`DataError::UnsafeEntry`]; what was extracted so far stays in `into` (see [`fetch_mvtec`] for
/// the all-or-nothing wrapper).
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
/// ikd_data::download::extract_tar_xz(&archive, &dir.path().join("out"), false)?;
/// assert_eq!(std::fs::read(dir.path().join("out/x/hello.txt")).unwrap(), b"hi");
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn extract_tar_xz(archive: &Path, into: &Path, progress: bool) -> Result<()> {
    let file = File::open(archive).at(archive)?;
    let len = file.metadata().at(archive)?.len();
    let pb = ikd_io::progress::bytes(Some(len), "extract", progress);
    fs::create_dir_all(into).at(into)?;
    let reader = Counting { inner: BufReader::with_capacity(1 << 20, file), pb: pb.clone() };
    let xz = liblzma::read::XzDecoder::new_multi_decoder(reader);
    let mut tar = tar::Archive::new(xz);
    tar.set_preserve_permissions(false);
    tar.set_unpack_xattrs(false);
    tar.set_preserve_mtime(false);
    let refuse = |entry: &str, reason: &str| DataError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    for entry in tar.entries().at(archive)? {
        let mut entry = entry.at(archive)?;
        let path = entry.path().at(archive)?.into_owned();
        let shown = path.display().to_string();
        if let Some(reason) = unsafe_path(&path) {
            return Err(refuse(&shown, reason));
        }
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous | T::Directory | T::GNUSparse => {}
            // Metadata records (pax and GNU long-name headers) carry no file.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::Symlink | T::Link => {
                let target =
                    entry.link_name().at(archive)?.map(|t| t.into_owned()).unwrap_or_default();
                if let Some(reason) = unsafe_path(&target) {
                    return Err(refuse(
                        &shown,
                        &format!("link to `{}` points outside ({reason})", target.display()),
                    ));
                }
            }
            other => {
                return Err(refuse(&shown, &format!("unsupported entry type {other:?}")));
            }
        }
        let inside = entry
            .unpack_in(into)
            .map_err(|e| DataError::Io { path: into.join(&path), source: e })?;
        if !inside {
            return Err(refuse(&shown, "would be written outside the target folder"));
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// Checks that an extracted dataset holds the manifest's categories in MVTec AD layout (every
/// category opens: masks paired, headers readable) with the manifest's counts, per category where
/// the manifest gives them and in total. Returns the counted totals.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// use ikd_data::download::{CategoryCounts, Counts, Manifest};
/// let counts = Counts { train: 4, test_good: 2, test_defect: 2 };
/// let m = Manifest { name: "toy".into(), url: "http://127.0.0.1:1/toy.tar.xz".into(), url_env: None,
///     file_name: "toy.tar.xz".into(), size: 1, sha256: "0".repeat(64), extract_dir: "toy".into(),
///     totals: counts, categories: vec![CategoryCounts { name: "carpet".into(), counts: Some(counts) }] };
/// let found = ikd_data::download::verify_extracted(dir.path(), &m)?;
/// assert_eq!(found, counts);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn verify_extracted(root: &Path, manifest: &Manifest) -> Result<Counts> {
    let mut total = Counts::default();
    for cc in &manifest.categories {
        let cat = Category::open(root, &cc.name)?;
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
    check_counts(root, &manifest.totals, &total)?;
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

/// The folder inside a fresh extraction that holds the categories: the extraction folder itself,
/// or its single sub-folder when the archive wraps everything in one top-level folder.
fn dataset_root_in(staging: &Path, manifest: &Manifest) -> Result<PathBuf> {
    let first = &manifest.categories[0].name;
    if staging.join(first).is_dir() {
        return Ok(staging.to_path_buf());
    }
    let subdirs: Vec<PathBuf> = fs::read_dir(staging)
        .at(staging)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    if let [only] = subdirs.as_slice() {
        if only.join(first).is_dir() {
            return Ok(only.clone());
        }
    }
    Err(DataError::MissingCategory { name: first.clone(), path: staging.join(first) })
}

/// Makes sure the dataset of `manifest` is available and returns its root folder.
///
/// With `data_root`, that folder is checked with [`verify_extracted`] and returned: nothing is
/// downloaded. Otherwise [`fetch_mvtec`] into `dest`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// use ikd_data::download::{CategoryCounts, Counts, Manifest};
/// let counts = Counts { train: 4, test_good: 2, test_defect: 2 };
/// let m = Manifest { name: "toy".into(), url: "http://127.0.0.1:1/toy.tar.xz".into(), url_env: None,
///     file_name: "toy.tar.xz".into(), size: 1, sha256: "0".repeat(64), extract_dir: "toy".into(),
///     totals: counts, categories: vec![CategoryCounts { name: "carpet".into(), counts: Some(counts) }] };
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
        None => fetch_mvtec(manifest, dest, opts),
    }
}

/// Downloads (resumably), verifies and extracts the archive of `manifest` into
/// `<dest>/<extract_dir>`, which it returns. Works for any manifest, MVTec AD's included.
///
/// Steps: an existing `<dest>/<extract_dir>` is verified and returned; an existing
/// `<dest>/<file_name>` is verified (never deleted) instead of downloading; otherwise the archive
/// is downloaded to `<file_name>.part` with up to `opts.retries` automatic resumptions, verified
/// and renamed. It is then extracted into a staging folder beside the target
/// ([`ikd_io::StagedDir`]), counted, and renamed to `<dest>/<extract_dir>`.
///
/// ```no_run
/// use ikd_data::download::{fetch_mvtec, FetchOptions, Manifest};
/// let m = Manifest::load("datasets/mvtec_ad.json")?;
/// let root = fetch_mvtec(&m, std::path::Path::new("data"), &FetchOptions::default())?;
/// let bottle = ikd_data::Category::open(&root, "bottle")?;
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn fetch_mvtec(manifest: &Manifest, dest: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    manifest
        .validate()
        .map_err(|message| DataError::Manifest { path: PathBuf::from(&manifest.name), message })?;
    let target = dest.join(&manifest.extract_dir);
    if target.exists() {
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
            match download_resumable(&url, &part, Some(manifest.size), opts.progress) {
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

    let staged = ikd_io::StagedDir::new(&target)?;
    extract_tar_xz(&archive, staged.path(), opts.progress)?;
    let root = dataset_root_in(staged.path(), manifest)?;
    verify_extracted(&root, manifest)?;
    staged.commit_subfolder(&root)?;
    if !opts.keep_archive {
        fs::remove_file(&archive).at(&archive)?;
    }
    info!("{} ready at {}", manifest.name, target.display());
    Ok(target)
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
