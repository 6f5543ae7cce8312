//! Verification: of an archive ([`verify_file`]: size and SHA-256, checked before anything is
//! extracted), of single files the manifest lists, and of an extracted dataset against the
//! manifest's layout and counts ([`verify_extracted`]).

use std::fs;
use std::path::Path;

pub use ikd_data::sha256_file;

use crate::error::{DatasetError, IoContext, Result};
use crate::manifest::{Counts, Manifest};
use ikd_data::{Category, MaskPolicy};

/// Checks a file's size (where known) and SHA-256; the error says what was expected and what was
/// found.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("f");
/// std::fs::write(&p, b"abc").unwrap();
/// let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// assert!(ikd_datasets::verify_file(&p, Some(3), sha, false).is_ok());
/// assert!(ikd_datasets::verify_file(&p, None, sha, false).is_ok());
/// assert!(ikd_datasets::verify_file(&p, Some(4), sha, false).is_err());
/// ```
pub fn verify_file(path: &Path, size: Option<u64>, sha256: &str, progress: bool) -> Result<()> {
    let found = fs::metadata(path).at(path)?.len();
    if let Some(size) = size.filter(|&s| s != found) {
        return Err(DatasetError::SizeMismatch { path: path.to_path_buf(), expected: size, found });
    }
    let digest = sha256_file(path, progress)?;
    if !digest.eq_ignore_ascii_case(sha256) {
        return Err(DatasetError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: sha256.to_ascii_lowercase(),
            found: digest,
        });
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
/// use ikd_datasets::{CategoryCounts, Counts, Manifest};
/// let counts = Counts { train: 4, test_good: 2, test_defect: 2 };
/// let m = Manifest { name: "toy".into(), url: "http://127.0.0.1:1/toy.tar.xz".into(),
///     file_name: "toy.tar.xz".into(), sha256: "0".repeat(64), extract_dir: "toy".into(),
///     totals: Some(counts), categories: vec![CategoryCounts { name: "carpet".into(), counts: Some(counts) }],
///     ..Manifest::default() };
/// let found = ikd_datasets::verify_extracted(dir.path(), &m)?;
/// assert_eq!(found, counts);
/// # Ok::<(), ikd_datasets::DatasetError>(())
/// ```
pub fn verify_extracted(root: &Path, manifest: &Manifest) -> Result<Counts> {
    let mut total = Counts::default();
    for cc in &manifest.categories {
        let cat = Category::open_with(root, &cc.name, MaskPolicy::Required)?;
        if cat.normal != manifest.layout.normal {
            let path = cat.dir.join("train").join(&manifest.layout.normal);
            return Err(ikd_data::DataError::MissingDir { path }.into());
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
            return Err(DatasetError::CountMismatch {
                path: path.to_path_buf(),
                what: what.to_string(),
                expected: e,
                found: f,
            });
        }
    }
    Ok(())
}

/// Checks the SHA-256 of each file the manifest lists (`file_checksums`) under `root`.
pub(crate) fn check_file_checksums(root: &Path, manifest: &Manifest) -> Result<()> {
    for (rel, sha) in &manifest.file_checksums {
        let p = root.join(rel);
        if !p.is_file() {
            return Err(DatasetError::Layout {
                path: p,
                message: "missing from the archive (the manifest lists its checksum)".into(),
            });
        }
        verify_file(&p, None, sha, false)?;
    }
    Ok(())
}
