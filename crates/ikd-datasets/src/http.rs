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
    let mut have = match fs::metadata(part) {
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    if let Some(size) = expected_size {
        if have == size {
            return Ok(());
        }
        if have > size {
            warn!(
                "{}: partial download is larger ({have} bytes) than the archive ({size}); starting again",
                part.display()
            );
            File::create(part).at(part)?;
            have = 0;
        }
    }
    let mut config = ureq::Agent::config_builder();
    if is_loopback(url) {
        // A local server (tests, a local mirror): never through a proxy from the environment.
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut req = agent.get(url);
    if have > 0 {
        info!("resuming {} at byte {have}", part.display());
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| http_err(url, e))?;
    let status = resp.status().as_u16();
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    // Decide where the body goes before touching the partial file.
    let append = match status {
        206 if have > 0 => {
            let cr = header("content-range").unwrap_or_default();
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
            true
        }
        200 => {
            if have > 0 {
                warn!("{url}: server ignored the range request; downloading from the start");
                have = 0;
            }
            false
        }
        416 if have > 0 && expected_size.is_none() => return Ok(()),
        s => return Err(http_err(url, format!("HTTP status {s}"))),
    };
    if let (Some(size), Some(len)) = (expected_size, content_length) {
        if have + len != size {
            return Err(http_err(
                url,
                format!("server announces {} bytes but the manifest says {size}", have + len),
            ));
        }
    }
    let mut file = if append {
        OpenOptions::new().append(true).open(part).at(part)?
    } else {
        File::create(part).at(part)?
    };
    let total = expected_size.or(content_length.map(|l| l + have));
    let pb = ikd_io::progress::bytes(total, "download", progress);
    pb.set_position(have);
    let mut reader = resp.into_body().into_reader();
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
    pb.finish_and_clear();
    if let Some(size) = expected_size {
        if got != size {
            return Err(http_err(url, format!("transfer ended after {got} of {size} bytes")));
        }
    }
    Ok(())
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
