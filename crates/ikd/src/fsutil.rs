//! The run's JSON files, read with errors naming the file and written atomically
//! ([`ikd_io::atomic_write`]).

use std::fs;
use std::path::Path;

use crate::{Error, Result};

/// Reads the JSON file `path` as a `T`; content that does not parse is [`Error::BadFile`] saying
/// the file is not `what`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("not {what}: {e}")))
}

/// Writes `value` to `path` as indented JSON, atomically.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Internal(format!("encoding {}: {e}", path.display())))?;
    Ok(ikd_io::atomic_write(path, json.as_bytes())?)
}
