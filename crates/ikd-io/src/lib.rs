//! # ikd-io
//!
//! How every crate of the workspace writes files and shows progress — one policy, in one place:
//!
//! - [`atomic_write`] / [`atomic_write_with`] / [`atomic_copy`]: a file appears complete or not
//!   at all. The bytes go to a temporary file in the destination's folder, are flushed to disk
//!   (`fsync`), and the file is renamed over the destination; the folder is synced too. On any
//!   error the temporary file is removed and the destination is left as it was.
//! - [`StagedDir`]: a folder built beside its destination under a hidden name and renamed into
//!   place when complete; dropped without [`StagedDir::commit`], it is removed.
//! - [`progress`]: the progress bars of long work (loading, training, downloads), one style.
//! - [`csv_field`]: how a field is quoted in the CSV files the workspace writes.
//!
//! ```
//! use std::io::Write;
//! let dir = tempfile::tempdir()?;
//! // a file
//! ikd_io::atomic_write(&dir.path().join("metrics.json"), b"{}")?;
//! // a folder of files, all or nothing
//! let staged = ikd_io::StagedDir::new(dir.path().join("report"))?;
//! ikd_io::atomic_write_with(&staged.path().join("report.md"), |f| f.write_all(b"# Report\n"))?;
//! let report = staged.commit()?;
//! assert_eq!(std::fs::read_to_string(report.join("report.md"))?, "# Report\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub mod progress;

/// A file operation that failed, with the file it concerned.
///
/// Its message is `<path>: <cause>`; the cause is not repeated as a [`source`]
/// (`std::error::Error::source`), so error chains print it once.
///
/// [`source`]: std::error::Error::source
#[derive(Debug)]
pub struct Error {
    /// The file or folder.
    pub path: PathBuf,
    /// What went wrong.
    pub cause: io::Error,
}

impl Error {
    /// `cause` at `path`.
    pub fn new(path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Self { path: path.into(), cause }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.cause)
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(e.cause.kind(), e.to_string())
    }
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds the path to an [`io::Result`].
trait At<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::new(path, e))
    }
}

/// A fresh hidden name beside `path`: `.<name>.<pid>-<n>.tmp`.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// The folder `path` is in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a folder's entries (a rename within it) to disk, where the platform can.
fn sync_dir(dir: &Path) {
    // Windows cannot open folders as files; elsewhere a failure here loses only durability
    // across a power cut, not the rename itself.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `path` through `write`, atomically: the content goes to a temporary file in the same
/// folder (created if missing), is flushed to disk and renamed over `path`. If `write` or any
/// step fails, the temporary file is removed and `path` is left as it was. The error of `write`
/// is reported against `path`.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir()?;
/// let p = dir.path().join("log.txt");
/// ikd_io::atomic_write_with(&p, |f| writeln!(f, "step 1"))?;
/// assert_eq!(std::fs::read_to_string(&p)?, "step 1\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn atomic_write_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let dir = parent_of(path);
    fs::create_dir_all(dir).at(dir)?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    match result {
        Ok(()) => {
            sync_dir(dir);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(Error::new(path, e))
        }
    }
}

/// [`atomic_write_with`] for bytes already in memory.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let p = dir.path().join("config.json");
/// ikd_io::atomic_write(&p, br#"{"epochs": 50}"#)?;
/// assert_eq!(std::fs::read(&p)?, br#"{"epochs": 50}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// Copies `from` to `to` atomically ([`atomic_write_with`]), with `from`'s permissions (an
/// executable stays one); an unreadable `from` is an error naming it, and `to` is then left as it
/// was.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let (a, b) = (dir.path().join("a.bin"), dir.path().join("copies/b.bin"));
/// std::fs::write(&a, [1u8, 2, 3])?;
/// ikd_io::atomic_copy(&a, &b)?;
/// assert_eq!(std::fs::read(&b)?, [1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn atomic_copy(from: &Path, to: &Path) -> Result<()> {
    let mut src = File::open(from).at(from)?;
    let mut read_error = None;
    let result = atomic_write_with(to, |f| {
        let copied = src
            .metadata()
            .and_then(|m| f.set_permissions(m.permissions()))
            .and_then(|()| io::copy(&mut src, f));
        copied.map(|_| ()).map_err(|e| {
            // tell a failed read of `from` from a failed write of `to`
            let kind = e.kind();
            read_error = Some(e);
            io::Error::from(kind)
        })
    });
    match (result, read_error) {
        (Err(_), Some(e)) => Err(Error::new(from, e)),
        (r, _) => r,
    }
}

/// A CSV field as RFC 4180 writes it: quoted (with `"` doubled) when it holds a comma, a quote
/// or a line break, as it is otherwise.
///
/// ```
/// assert_eq!(ikd_io::csv_field("carpet"), "carpet");
/// assert_eq!(ikd_io::csv_field("runs/a,b"), "\"runs/a,b\"");
/// assert_eq!(ikd_io::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
/// ```
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// A folder built under a hidden name beside its destination and renamed into place when
/// complete, so that nobody ever sees it half-made.
///
/// The staging folder is `.<name>.partial` in the destination's parent; one left over by an
/// interrupted process is removed by the next [`StagedDir::new`] for the same destination.
/// Dropped without [`commit`](StagedDir::commit), the staging folder is removed.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let target = dir.path().join("carpet");
/// {
///     let staged = ikd_io::StagedDir::new(&target)?;
///     std::fs::create_dir(staged.path().join("train"))?;
///     // dropped here without commit: nothing appears
/// }
/// assert!(!target.exists());
/// let staged = ikd_io::StagedDir::new(&target)?;
/// std::fs::create_dir(staged.path().join("train"))?;
/// staged.commit()?;
/// assert!(target.join("train").is_dir());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Creates the (empty) staging folder for `target`, removing one left over by an earlier
    /// run, and the parent folders as needed.
    pub fn new(target: impl Into<PathBuf>) -> Result<Self> {
        let target = target.into();
        let name = target
            .file_name()
            .ok_or_else(|| {
                Error::new(&target, io::Error::new(io::ErrorKind::InvalidInput, "no folder name"))
            })?
            .to_string_lossy()
            .into_owned();
        let staging = parent_of(&target).join(format!(".{name}.partial"));
        if fs::symlink_metadata(&staging).is_ok() {
            fs::remove_dir_all(&staging).at(&staging)?;
        }
        fs::create_dir_all(&staging).at(&staging)?;
        Ok(Self { staging, target, committed: false })
    }

    /// The staging folder: write the contents here.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The destination.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the staging folder to the destination, which must not exist (an existing one is
    /// an error naming it, and the staging folder is removed). Returns the destination.
    pub fn commit(self) -> Result<PathBuf> {
        let from = self.staging.clone();
        self.commit_from(&from, false)
    }

    /// [`commit`](StagedDir::commit), replacing an existing destination: the old folder is
    /// renamed aside, the new one into place, then the old one is removed.
    pub fn commit_replacing(self) -> Result<PathBuf> {
        let from = self.staging.clone();
        self.commit_from(&from, true)
    }

    /// Renames `sub`, a folder inside the staging folder, to the destination (e.g. the one
    /// top-level folder an archive was extracted to), then removes the rest of the staging
    /// folder. The destination must not exist.
    pub fn commit_subfolder(self, sub: &Path) -> Result<PathBuf> {
        if !sub.starts_with(&self.staging) {
            return Err(Error::new(
                sub,
                io::Error::new(io::ErrorKind::InvalidInput, "not inside the staging folder"),
            ));
        }
        self.commit_from(sub, false)
    }

    fn commit_from(mut self, from: &Path, replace: bool) -> Result<PathBuf> {
        let target = self.target.clone();
        let mut aside = None;
        if fs::symlink_metadata(&target).is_ok() {
            if !replace {
                return Err(Error::new(
                    &target,
                    io::Error::new(io::ErrorKind::AlreadyExists, "already exists"),
                ));
            }
            let old = temp_path(&target);
            fs::rename(&target, &old).at(&target)?;
            aside = Some(old);
        }
        if let Err(e) = fs::rename(from, &target) {
            if let Some(old) = &aside {
                let _ = fs::rename(old, &target);
            }
            return Err(Error::new(&target, e));
        }
        sync_dir(parent_of(&target));
        if let Some(old) = aside {
            let _ = fs::remove_dir_all(old);
        }
        if from != self.staging {
            let _ = fs::remove_dir_all(&self.staging);
        }
        self.committed = true;
        Ok(target)
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
