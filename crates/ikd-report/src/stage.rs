//! Writing the report folder through the workspace's one I/O policy ([`ikd_io`]): built in a
//! staging folder beside its destination and renamed into place, so a report is never
//! half-written; files inside it are written atomically.

use std::path::Path;

use crate::Result;

/// Fills a fresh staging folder beside `out` ([`ikd_io::StagedDir`]) through `fill`, then puts
/// it in `out`'s place (an existing report is replaced only once the new one is complete).
/// When `fill` fails, the staging folder is removed and `out` is left as it was.
pub(crate) fn build_staged<T>(out: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    if out.file_name().is_none() {
        return Err(ikd::Error::bad_file(
            out,
            "a report needs a folder name (not `/` or `..`)".into(),
        )
        .into());
    }
    let staged = ikd_io::StagedDir::new(out).map_err(ikd::Error::from)?;
    let value = fill(staged.path())?;
    staged.commit_replacing().map_err(ikd::Error::from)?;
    Ok(value)
}

/// Writes `bytes` to `path` atomically ([`ikd_io::atomic_write`]).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(ikd_io::atomic_write(path, bytes).map_err(ikd::Error::from)?)
}

/// Copies `from` to `to` atomically ([`ikd_io::atomic_copy`]).
pub(crate) fn copy(from: &Path, to: &Path) -> Result<()> {
    Ok(ikd_io::atomic_copy(from, to).map_err(ikd::Error::from)?)
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
