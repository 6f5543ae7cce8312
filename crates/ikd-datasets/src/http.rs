//! Resumable HTTP download ([`download_resumable`]): the archive is streamed to a `.part` file
//! with a progress bar; after an interruption the next attempt resumes with an HTTP
//! `Range: bytes=<len>-` request, and a server that answers `200` instead of `206` is downloaded
//! again from the start. A server on the loopback interface (tests, a local mirror) is reached
//! without any proxy from the environment.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use tracing::{info, warn};

use crate::error::{DatasetError, IoContext, Result};

fn http_err(url: &str, message: impl ToString) -> DatasetError {
    DatasetError::Http { url: url.to_string(), message: message.to_string() }
}

/// Whether a URL's host is the loopback interface.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Downloads `url` into `part` (created or appended to), resuming from `part`'s current length
/// with an HTTP `Range` request. Returns once the server's body has been read to its end; the
/// length is checked against `expected_size` when it is given.
///
/// ```no_run
/// let part = std::path::Path::new("data/archive.tar.xz.part");
/// ikd_datasets::download_resumable("http://127.0.0.1:8000/archive.tar.xz", part, Some(1234), false)?;
/// # Ok::<(), ikd_datasets::DatasetError>(())
/// ```
pub fn download_resumable(
    url: &str,
    part: &Path,
    expected_size: Option<u64>,
    progress: bool,
) -> Result<()> {
    let Some(have) = resume_point(part, expected_size)? else {
        return Ok(());
    };
    let mut req = agent(url).get(url);
    if have > 0 {
        info!("resuming {} at byte {have}", part.display());
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| http_err(url, e))?;
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    // Decide where the body goes before touching the partial file.
    let status = resp.status().as_u16();
    let Some(have) = body_offset(url, status, have, expected_size, header("content-range"))? else {
        return Ok(());
    };
    if let (Some(size), Some(len)) = (expected_size, content_length) {
        if have + len != size {
            return Err(http_err(
                url,
                format!("server announces {} bytes but the manifest says {size}", have + len),
            ));
        }
    }
    let file = if have > 0 {
        OpenOptions::new().append(true).open(part).at(part)?
    } else {
        File::create(part).at(part)?
    };
    let total = expected_size.or(content_length.map(|l| l + have));
    let pb = ikd_io::progress::bytes(total, "download", progress);
    pb.set_position(have);
    let got = copy_body(url, resp.into_body().into_reader(), file, part, have, &pb)?;
    pb.finish_and_clear();
    if let Some(size) = expected_size {
        if got != size {
            return Err(http_err(url, format!("transfer ended after {got} of {size} bytes")));
        }
    }
    Ok(())
}

/// The byte to resume `part` at, or `None` when it already holds the whole file; a partial file
/// larger than the expected size is emptied.
fn resume_point(part: &Path, expected_size: Option<u64>) -> Result<Option<u64>> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    match expected_size {
        Some(size) if have == size => Ok(None),
        Some(size) if have > size => {
            warn!(
                "{}: partial download is larger ({have} bytes) than the archive ({size}); starting again",
                part.display()
            );
            File::create(part).at(part)?;
            Ok(Some(0))
        }
        _ => Ok(Some(have)),
    }
}

/// An HTTP agent for `url`: status codes as values, generous timeouts, and no proxy from the
/// environment for a server on the loopback interface (tests, a local mirror).
fn agent(url: &str) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder();
    if is_loopback(url) {
        config = config.proxy(None);
    }
    config
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// Where the response's body starts in the file, from its status: `have` for a `206` answering
/// the range asked for, 0 for a `200` (the whole file again), `None` for a `416` on a file of
/// unknown size (already complete); any other answer is an error.
fn body_offset(
    url: &str,
    status: u16,
    have: u64,
    expected_size: Option<u64>,
    content_range: Option<String>,
) -> Result<Option<u64>> {
    match status {
        206 if have > 0 => {
            let cr = content_range.unwrap_or_default();
            let start = cr
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.trim().parse::<u64>().ok());
            if start != Some(have) {
                return Err(http_err(
                    url,
                    format!("asked for bytes {have}- but the server sent range `{cr}`"),
                ));
            }
            Ok(Some(have))
        }
        200 => {
            if have > 0 {
                warn!("{url}: server ignored the range request; downloading from the start");
            }
            Ok(Some(0))
        }
        416 if have > 0 && expected_size.is_none() => Ok(None),
        s => Err(http_err(url, format!("HTTP status {s}"))),
    }
}

/// Copies the body into `file` (which holds `have` bytes already), showing progress; returns
/// the file's length. An interrupted transfer keeps what arrived, for the next resumption.
fn copy_body(
    url: &str,
    mut reader: impl Read,
    mut file: File,
    part: &Path,
    have: u64,
    pb: &ikd_io::progress::ProgressBar,
) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut got = have;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.flush().at(part)?;
                return Err(http_err(url, format!("transfer interrupted after {got} bytes: {e}")));
            }
        };
        file.write_all(&buf[..n]).at(part)?;
        got += n as u64;
        pb.set_position(got);
    }
    file.sync_all().at(part)?;
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        for u in [
            "http://127.0.0.1:8000/a.tar.xz",
            "http://localhost/a",
            "http://[::1]:9/x",
            "http://user:pw@127.0.0.2:1/",
        ] {
            assert!(is_loopback(u), "{u}");
        }
        for u in [
            "https://www.mydrive.ch/shares/x",
            "http://10.0.0.1/a",
            "http://127.0.0.1.example.com/",
        ] {
            assert!(!is_loopback(u), "{u}");
        }
    }
}
