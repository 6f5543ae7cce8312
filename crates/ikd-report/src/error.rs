//! The crate's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading runs or writing a report; each variant names the
/// folder or file at fault.
///
/// ```
/// let e = ikd_report::ReportError::NoFinishedRun { path: "runs/empty".into() };
/// assert!(e.to_string().starts_with("runs/empty holds no finished run"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No run folder was given.
    #[error("no run folder given: name run folders or folders of run folders")]
    NoInput,
    /// A folder given as a run (or a folder of runs) holds no finished run.
    #[error(
        "{} holds no finished run (a run folder has {} and {}; a folder of runs has such folders)",
        path.display(),
        ikd::files::STUDENT,
        ikd::files::METRICS
    )]
    NoFinishedRun {
        /// The folder.
        path: PathBuf,
    },
    /// Reading or writing a file or folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file exists but its content is not what it should be.
    #[error("{}: {msg}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The text given as the paper's table is not one (see
    /// [`PaperTable::parse`](crate::PaperTable::parse)).
    #[error("the paper's table: {0}")]
    BadPaperTable(String),
    /// Reading a run's files through the engine failed (the message names the file).
    #[error(transparent)]
    Run(#[from] ikd::Error),
    /// Drawing or encoding a PNG curve failed.
    #[error("drawing {what}: {msg}")]
    Draw {
        /// The figure.
        what: String,
        /// What went wrong.
        msg: String,
    },
}

impl ReportError {
    /// An I/O error on `path`.
    ///
    /// ```
    /// let e = ikd_report::ReportError::io("a.csv".as_ref(), std::io::ErrorKind::NotFound.into());
    /// assert!(e.to_string().starts_with("a.csv: "));
    /// ```
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io { path: path.to_path_buf(), source }
    }

    /// A file whose content is wrong.
    ///
    /// ```
    /// let e = ikd_report::ReportError::bad_file("paper.csv".as_ref(), "no header".into());
    /// assert_eq!(e.to_string(), "paper.csv: no header");
    /// ```
    pub fn bad_file(path: &Path, msg: String) -> Self {
        ReportError::BadFile { path: path.to_path_buf(), msg }
    }
}

/// The crate's result type.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;
