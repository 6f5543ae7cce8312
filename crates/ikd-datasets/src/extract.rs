//! Safe extraction of tar, tar.gz, tar.xz and zip archives ([`extract_archive`]): an entry that
//! could land outside the target (`..`, absolute paths, symbolic and hard links, devices and
//! FIFOs) is refused with [`DatasetError::UnsafeEntry`].

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::error::{DatasetError, IoContext, Result};
use crate::manifest::ArchiveFormat;

/// Why an archive path is refused, if it is.
pub(crate) fn unsafe_path(p: &Path) -> Option<&'static str> {
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

fn refuse(archive: &Path, entry: &str, reason: &str) -> DatasetError {
    DatasetError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    }
}

/// Extracts an archive (its [`ArchiveFormat`] from its file name) into the folder `into` (created
/// if missing), refusing any entry that could land outside it or is not a plain file or folder:
/// paths with `..`, absolute paths, symbolic and hard links (a dataset holds none), devices and
/// FIFOs. On a refused entry it stops with [`DatasetError::UnsafeEntry`]; what was extracted so far
/// stays in `into` (see [`fetch_dataset`](crate::fetch_dataset) for the all-or-nothing wrapper).
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
/// ikd_datasets::extract_archive(&archive, &dir.path().join("out"), false)?;
/// assert_eq!(std::fs::read(dir.path().join("out/x/hello.txt")).unwrap(), b"hi");
/// # Ok::<(), ikd_datasets::DatasetError>(())
/// ```
pub fn extract_archive(archive: &Path, into: &Path, progress: bool) -> Result<()> {
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let format = ArchiveFormat::from_name(&name)
        .ok_or_else(|| DatasetError::NotAnArchive { path: archive.to_path_buf() })?;
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
/// ikd_datasets::extract_tar_xz("a.tar.xz".as_ref(), "out".as_ref(), false)?;
/// # Ok::<(), ikd_datasets::DatasetError>(())
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
            .map_err(|e| DatasetError::Io { path: into.join(&path), source: e })?;
        if !inside {
            return Err(refuse(archive, &shown, "would be written outside the target folder"));
        }
    }
    Ok(())
}

fn extract_zip(archive: &Path, into: &Path, pb: &ikd_io::progress::ProgressBar) -> Result<()> {
    let file = File::open(archive).at(archive)?;
    let zip_err = |e: zip::result::ZipError| DatasetError::Io {
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
    Err(DatasetError::Layout {
        path: staging.to_path_buf(),
        message: format!("the archive holds no `{probe}` (not the expected dataset layout)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths() {
        assert!(unsafe_path(Path::new("a/b.png")).is_none());
        assert!(unsafe_path(Path::new("./a")).is_none());
        assert_eq!(unsafe_path(Path::new("a/../../b")), Some("path contains `..`"));
        assert_eq!(unsafe_path(Path::new("/etc/passwd")), Some("absolute path"));
    }
}
