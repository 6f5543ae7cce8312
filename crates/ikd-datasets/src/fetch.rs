//! Making a dataset available: [`ensure_dataset`] (an existing copy, checked) and
//! [`fetch_dataset`] (download, verification, extraction, conversion, all-or-nothing).
//!
//! - Size and SHA-256 are checked before anything is extracted. A mismatch deletes nothing: a file
//!   the user put in place stays where it is, a freshly downloaded one is kept as
//!   `<file_name>.sha256-mismatch`, and the error says what was expected and what was found.
//! - Extraction writes into a temporary folder next to the target, converts it where the
//!   manifest says so, checks the counts of the manifest there, writes the marker [`MARKER`]
//!   with the archive's SHA-256 and only then renames it into place. An interrupted extraction
//!   or conversion leaves only a staging folder, which the next run removes and redoes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::error::{DatasetError, IoContext, Result};
use crate::extract::{extract_archive, root_holding};
use crate::http::download_resumable;
use crate::manifest::{Manifest, Marker, MARKER};
use crate::verify::{check_file_checksums, verify_extracted, verify_file};

/// Options of [`fetch_dataset`].
///
/// ```
/// let o = ikd_datasets::FetchOptions { progress: false, ..Default::default() };
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
/// use ikd_datasets::{CategoryCounts, Counts, Manifest};
/// let counts = Counts { train: 4, test_good: 2, test_defect: 2 };
/// let m = Manifest { name: "toy".into(), url: "http://127.0.0.1:1/toy.tar.xz".into(),
///     file_name: "toy.tar.xz".into(), sha256: "0".repeat(64), extract_dir: "toy".into(),
///     totals: Some(counts), categories: vec![CategoryCounts { name: "carpet".into(), counts: Some(counts) }],
///     ..Manifest::default() };
/// use ikd_datasets::{ensure_dataset, FetchOptions};
/// // An existing copy (a data root): verified, nothing downloaded.
/// let root = ensure_dataset(&m, Some(dir.path()), &dir.path().join("downloads"), &FetchOptions::default())?;
/// assert_eq!(root, dir.path());
/// # Ok::<(), ikd_datasets::DatasetError>(())
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
/// `<dest>/<extract_dir>`, which it returns. Works for every manifest of
/// [`DATASETS`](crate::DATASETS).
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
/// use ikd_datasets::{fetch_dataset, FetchOptions, Manifest};
/// let m = Manifest::load("datasets/visa.json")?;
/// let root = fetch_dataset(&m, std::path::Path::new("data"), &FetchOptions::default())?;
/// let candle = ikd_data::Category::open(&root, "candle")?;
/// # Ok::<(), ikd_datasets::DatasetError>(())
/// ```
pub fn fetch_dataset(manifest: &Manifest, dest: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    manifest.validate().map_err(|message| DatasetError::Manifest {
        path: PathBuf::from(&manifest.name),
        message,
    })?;
    let target = dest.join(&manifest.extract_dir);
    if target.exists() {
        check_existing(manifest, &target)?;
        info!("{} already extracted at {}", manifest.name, target.display());
        return Ok(target);
    }
    fs::create_dir_all(dest).at(dest)?;
    let archive = dest.join(&manifest.file_name);
    if archive.exists() {
        info!("verifying the existing archive {}", archive.display());
        verify_file(&archive, manifest.size, &manifest.sha256, opts.progress)?;
    } else {
        download_verified(manifest, &archive, opts)?;
    }
    unpack(manifest, &archive, &target, opts.progress)?;
    if !opts.keep_archive {
        fs::remove_file(&archive).at(&archive)?;
    }
    info!("{} ready at {}", manifest.name, target.display());
    Ok(target)
}

/// The MVTec AD-only name of [`fetch_dataset`].
///
/// ```no_run
/// let m = ikd_datasets::Manifest::load("datasets/mvtec_ad.json")?;
/// ikd_datasets::fetch_mvtec(&m, "data".as_ref(), &Default::default())?;
/// # Ok::<(), ikd_datasets::DatasetError>(())
/// ```
pub fn fetch_mvtec(manifest: &Manifest, dest: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    fetch_dataset(manifest, dest, opts)
}

/// Checks an existing dataset folder: made from the manifest's archive (its marker, where it
/// has one), with the manifest's layout and counts.
fn check_existing(manifest: &Manifest, target: &Path) -> Result<()> {
    if let Some(marker) = Marker::read(target)? {
        if !marker.sha256.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(DatasetError::Layout {
                path: target.join(MARKER),
                message: format!(
                    "this folder was made from an archive with SHA-256 {}, the manifest wants {}; move it away to fetch again",
                    marker.sha256, manifest.sha256
                ),
            });
        }
    }
    verify_extracted(target, manifest)?;
    Ok(())
}

/// Downloads the archive to `<archive>.part` (resuming up to `opts.retries` times), verifies it
/// and renames it to `archive`; a download that fails verification is kept as
/// `<archive>.sha256-mismatch`, and the error names that file.
fn download_verified(manifest: &Manifest, archive: &Path, opts: &FetchOptions) -> Result<()> {
    let url = manifest.resolve_url(opts.url.as_deref());
    let part = with_suffix(archive, ".part");
    info!("downloading {} from {url}", manifest.name);
    let mut attempt = 0;
    loop {
        match download_resumable(&url, &part, manifest.size, opts.progress) {
            Ok(()) => break,
            Err(e @ (DatasetError::Http { .. } | DatasetError::Io { .. }))
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
        let kept = with_suffix(archive, ".sha256-mismatch");
        fs::rename(&part, &kept).at(&kept)?;
        return Err(match e {
            DatasetError::ChecksumMismatch { expected, found, .. } => {
                DatasetError::ChecksumMismatch { path: kept, expected, found }
            }
            DatasetError::SizeMismatch { expected, found, .. } => {
                DatasetError::SizeMismatch { path: kept, expected, found }
            }
            other => other,
        });
    }
    fs::rename(&part, archive).at(archive)
}

/// Extracts (and converts) a verified archive into `target`, all or nothing: built in staging
/// folders, counted, marked, then renamed into place.
fn unpack(manifest: &Manifest, archive: &Path, target: &Path, progress: bool) -> Result<()> {
    let marker = Marker {
        dataset: manifest.name.clone(),
        archive: manifest.file_name.clone(),
        sha256: manifest.sha256.to_ascii_lowercase(),
        conversion: manifest.conversion,
    };
    let marker_json = serde_json::to_vec_pretty(&marker)
        .map_err(|e| DatasetError::Layout { path: target.join(MARKER), message: e.to_string() })?;
    match manifest.conversion {
        None => {
            let staged = ikd_io::StagedDir::new(target)?;
            extract_archive(archive, staged.path(), progress)?;
            let root = root_holding(staged.path(), &manifest.categories[0].name)?;
            check_file_checksums(&root, manifest)?;
            verify_extracted(&root, manifest)?;
            ikd_io::atomic_write(&root.join(MARKER), &marker_json)?;
            staged.commit_subfolder(&root)?;
        }
        Some(conversion) => {
            // The raw extraction is a staging folder of its own (removed when this returns); the
            // converted dataset is built in the target's staging folder.
            let raw = ikd_io::StagedDir::new(with_suffix(target, ".source"))?;
            extract_archive(archive, raw.path(), progress)?;
            let source = root_holding(raw.path(), &crate::convert::probe(conversion, manifest))?;
            check_file_checksums(&source, manifest)?;
            let staged = ikd_io::StagedDir::new(target)?;
            crate::convert::convert(conversion, &source, staged.path(), manifest, progress)?;
            verify_extracted(staged.path(), manifest)?;
            ikd_io::atomic_write(&staged.path().join(MARKER), &marker_json)?;
            staged.commit()?;
            drop(raw);
        }
    }
    Ok(())
}

/// `<path>` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
