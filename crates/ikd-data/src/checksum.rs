//! The SHA-256 of a file: how a run identifies the teacher weights it was trained with, and how
//! a downloaded archive is verified (`ikd-datasets`).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

/// The SHA-256 of a file, lower-case hex.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("f");
/// std::fs::write(&p, b"abc").unwrap();
/// assert_eq!(
///     ikd_data::sha256_file(&p, false)?,
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn sha256_file(path: &Path, progress: bool) -> Result<String> {
    let mut f = File::open(path).at(path)?;
    let len = f.metadata().at(path)?.len();
    let pb = ikd_io::progress::bytes(Some(len), "sha-256", progress);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    Ok(hex::encode(h.finalize()))
}
