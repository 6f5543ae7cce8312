//! The crate's error type.

use std::path::PathBuf;

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
    /// The text given as the paper's table is not one (see
    /// [`PaperTable::parse`](crate::PaperTable::parse)).
    #[error("the paper's table: {0}")]
    BadPaperTable(String),
    /// A file or folder could not be read or written, or its content is not what it should be
    /// (a run's files, the paper's table, the report's files): `ikd`'s
    /// [`Io`](ikd::Error::Io) or [`BadFile`](ikd::Error::BadFile), naming the file.
    #[error(transparent)]
    File(#[from] ikd::Error),
    /// Drawing or encoding a PNG curve failed.
    #[error("drawing {what}: {msg}")]
    Draw {
        /// The figure.
        what: String,
        /// What went wrong.
        msg: String,
    },
}

/// The crate's result type.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;
