//! Writing the report folder: built next to its destination and renamed into place, so a report
//! is never half-written; files inside it are written atomically (through `ikd::atomic_write`).

use std::path::Path;

use crate::Result;

/// Fills a fresh staging folder beside `out` (`.<name>.partial-<pid>`) through `fill`, then puts
/// it in `out`'s place: an existing `out` is first moved aside and removed only once the new
/// folder is in place (and put back if that fails). When `fill` fails, the staging folder is
/// removed and `out` is left as it was.
pub(crate) fn build_staged<T>(out: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| {
        ikd::Error::bad_file(out, "a report needs a folder name (not `/` or `..`)".into())
    })?;
    std::fs::create_dir_all(parent).map_err(|e| ikd::Error::io(parent, e))?;
    let pid = std::process::id();
    let stage = parent.join(format!(".{name}.partial-{pid}"));
    let old = parent.join(format!(".{name}.old-{pid}"));
    for leftover in [&stage, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(|e| ikd::Error::io(leftover, e))?;
        }
    }
    std::fs::create_dir(&stage).map_err(|e| ikd::Error::io(&stage, e))?;
    let value = match fill(&stage) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    let replaced = out.exists();
    if replaced {
        if let Err(e) = std::fs::rename(out, &old) {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(ikd::Error::io(out, e).into());
        }
    }
    if let Err(e) = std::fs::rename(&stage, out) {
        if replaced {
            let _ = std::fs::rename(&old, out);
        }
        let _ = std::fs::remove_dir_all(&stage);
        return Err(ikd::Error::io(out, e).into());
    }
    if replaced {
        let removed =
            if old.is_dir() { std::fs::remove_dir_all(&old) } else { std::fs::remove_file(&old) };
        if let Err(e) = removed {
            tracing::warn!("could not remove the previous report {}: {e}", old.display());
        }
    }
    Ok(value)
}

/// Writes `bytes` to `path` atomically, creating its folder.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(ikd::atomic_write(path, bytes)?)
}

/// Copies `from` to `to` atomically.
pub(crate) fn copy(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).map_err(|e| ikd::Error::io(from, e))?;
    write(to, &bytes)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ReportError;

    /// The paths under `dir`.
    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_folder_appears_whole_or_not_at_all() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("reports").join("r");
        build_staged(&out, |d| write(&d.join("a.txt"), b"one")).unwrap();
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"one");

        // A failed build leaves the old report and no staging folder.
        let err = build_staged(&out, |d| {
            write(&d.join("a.txt"), b"two")?;
            Err::<(), _>(ReportError::NoInput)
        })
        .unwrap_err();
        assert!(matches!(err, ReportError::NoInput));
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"one");
        assert_eq!(listing(&tmp.path().join("reports")), std::slice::from_ref(&out));

        // A successful one replaces it, with nothing left beside it.
        build_staged(&out, |d| write(&d.join("b.txt"), b"three")).unwrap();
        assert!(!out.join("a.txt").exists());
        assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b"three");
        assert_eq!(listing(&tmp.path().join("reports")), [out]);
    }
}
