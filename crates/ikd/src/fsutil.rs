//! Writing files so that a crash or a full disk never leaves a half-written output.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `path` through `write` into a temporary file beside it, flushes it to disk and renames it
/// into place. On any error the temporary file is removed and `path` is left as it was.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("out.txt");
/// ikd::atomic_write_with(&p, |f| f.write_all(b"hi").map_err(|e| ikd::Error::io(&p, e))).unwrap();
/// assert_eq!(std::fs::read(&p).unwrap(), b"hi");
/// ```
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| Error::io(path, e))?;
        write(&mut file)?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`atomic_write_with`] for bytes already in memory.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("a.json");
/// ikd::atomic_write(&p, b"{}").unwrap();
/// assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    atomic_write_with(path, |f| f.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Reads the JSON file `path` as a `T`; content that does not parse is [`Error::BadFile`] saying
/// the file is not `what`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("not {what}: {e}")))
}

/// Writes `value` to `path` as indented JSON, atomically ([`atomic_write`]).
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json =
        serde_json::to_string_pretty(value).map_err(|e| Error::bad_file(path, e.to_string()))?;
    atomic_write(path, json.as_bytes())
}
