//! Download, verification and extraction against a local HTTP server on 127.0.0.1 serving
//! archives built by the tests.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ikd_data::{Category, MVTEC_CATEGORIES};
use ikd_datasets::DatasetError;
use ikd_datasets::{
    ensure_dataset, fetch_mvtec, sha256_file, verify_extracted, CategoryCounts, Counts,
    FetchOptions, Manifest,
};

use crate::common::{datasets_dir, tiny_dataset};

// ------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 server with Range support.

#[derive(Clone, Default)]
pub struct Route {
    pub body: Vec<u8>,
    /// Cut the first full (non-range) transfer after this many bytes.
    pub cut_first_at: Option<usize>,
    /// Answer range requests with a full 200 response.
    pub ignore_range: bool,
}

/// What the server saw: (path, `Range` header).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

pub struct Server {
    base: String,
    log: Log,
}

impl Server {
    pub fn start(routes: HashMap<String, Route>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log: Log = Arc::default();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut cut_done: HashMap<String, bool> = HashMap::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = handle(stream, &routes, &log2, &mut cut_done);
            }
        });
        Self { base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.log.lock().unwrap().clone()
    }
}

fn handle(
    mut stream: TcpStream,
    routes: &HashMap<String, Route>,
    log: &Log,
    cut_done: &mut HashMap<String, bool>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path =
        request_line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let Some(route) = routes.get(&path) else {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let len = route.body.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    match start {
        Some(s) if !route.ignore_range => {
            if s >= len {
                return stream.write_all(
                    b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {s}-{}/{len}\r\nConnection: close\r\n\r\n",
                len - s,
                len - 1
            )?;
            stream.write_all(&route.body[s..])
        }
        _ => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
            )?;
            match route.cut_first_at {
                Some(k) if !cut_done.get(&path).copied().unwrap_or(false) => {
                    cut_done.insert(path, true);
                    stream.write_all(&route.body[..k])?;
                    stream.flush()?;
                    // Drop the connection half way.
                    stream.shutdown(std::net::Shutdown::Both)
                }
                _ => stream.write_all(&route.body),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Archives

type Builder = tar::Builder<liblzma::write::XzEncoder<File>>;

/// Writes `<out>`: the categories under `src` (+ a top-level licence file), then whatever `extra`
/// appends.
fn build_archive(src: &Path, out: &Path, extra: impl FnOnce(&mut Builder)) -> Vec<u8> {
    let enc = liblzma::write::XzEncoder::new(File::create(out).unwrap(), 6);
    let mut b = tar::Builder::new(enc);
    b.follow_symlinks(false);
    let mut names: Vec<_> = fs::read_dir(src).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for n in names {
        b.append_dir_all(&n, src.join(&n)).unwrap();
    }
    let licence = b"test licence\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(licence.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "license.txt", &licence[..]).unwrap();
    extra(&mut b);
    b.into_inner().unwrap().finish().unwrap();
    fs::read(out).unwrap()
}

/// Appends an entry with a raw (unchecked) name and, for links, a raw target.
fn append_raw(b: &mut Builder, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    /// Where the dataset is downloaded to.
    dest: PathBuf,
    /// The source folder of the archive.
    src: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tiny_dataset(&src, true);
    // Markers of the generator are not part of a real archive.
    for c in ["carpet", "grid"] {
        fs::remove_file(src.join(c).join(ikd_data::synthetic::MARKER)).unwrap();
    }
    let work = dir.path().join("work");
    fs::create_dir_all(&work).unwrap();
    Fixture { dest: dir.path().join("data"), src, work, _dir: dir }
}

fn manifest_for(bytes: &[u8], url: &str) -> Manifest {
    let counts = Counts { train: 3, test_good: 2, test_defect: 5 };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a");
    fs::write(&p, bytes).unwrap();
    Manifest {
        name: "toy".into(),
        url: url.into(),
        file_name: "toy.tar.xz".into(),
        size: Some(bytes.len() as u64),
        sha256: sha256_file(&p, false).unwrap(),
        extract_dir: "toy".into(),
        totals: Some(Counts { train: 6, test_good: 4, test_defect: 10 }),
        categories: vec![
            CategoryCounts { name: "carpet".into(), counts: Some(counts) },
            CategoryCounts { name: "grid".into(), counts: Some(counts) },
        ],
        ..Manifest::default()
    }
}

fn opts(server: &Server, path: &str, retries: u32) -> FetchOptions {
    FetchOptions {
        url: Some(server.url(path)),
        progress: false,
        retries,
        retry_delay: Duration::from_millis(10),
        keep_archive: true,
    }
}

pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

// ------------------------------------------------------------------------------------------
// The cases

#[test]
fn good_archive_downloads_verifies_and_extracts() {
    let f = fixture();
    let bytes = build_archive(&f.src, &f.work.join("a.tar.xz"), |_| {});
    let server = Server::start(HashMap::from([(
        "toy.tar.xz".to_string(),
        Route { body: bytes.clone(), ..Default::default() },
    )]));
    let m = manifest_for(&bytes, "http://invalid.invalid/never-used");
    let root = fetch_mvtec(&m, &f.dest, &opts(&server, "toy.tar.xz", 0)).unwrap();
    assert_eq!(root, f.dest.join("toy"));
    assert_eq!(listing(&f.dest), vec!["toy", "toy.tar.xz"]);
    assert_eq!(fs::read(f.dest.join("toy.tar.xz")).unwrap(), bytes);
    assert!(root.join("license.txt").is_file());
    let marker = ikd_datasets::Marker::read(&root).unwrap().unwrap();
    assert_eq!(marker.sha256, m.sha256);
    let cat = Category::open(&root, "carpet").unwrap();
    assert_eq!((cat.train.len(), cat.n_test_good(), cat.n_test_defect()), (3, 2, 5));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].1, None);

    // Second run: the extracted copy is verified and used, nothing is requested.
    fetch_mvtec(&m, &f.dest, &opts(&server, "toy.tar.xz", 0)).unwrap();
    // --data-root: an existing copy elsewhere is used as is.
    let elsewhere =
        ensure_dataset(&m, Some(&f.src), &f.work.join("unused"), &opts(&server, "x", 0)).unwrap();
    assert_eq!(elsewhere, f.src);
    assert!(!f.work.join("unused").exists());
    assert_eq!(server.requests().len(), 1);

    // Counts are checked: a manifest that expects more is refused with both numbers.
    let mut wrong = m.clone();
    wrong.categories[1].counts = Some(Counts { train: 4, test_good: 2, test_defect: 5 });
    wrong.totals.as_mut().unwrap().train = 7;
    let e = verify_extracted(&root, &wrong).unwrap_err();
    assert!(matches!(e, DatasetError::CountMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("expected 4 training images, found 3"), "{e}");
    // And a category the archive lacks is named.
    let mut missing = m.clone();
    missing.categories.push(CategoryCounts { name: "wood".into(), counts: None });
    let e = verify_extracted(&root, &missing).unwrap_err();
    assert!(e.to_string().contains("category `wood` not found"), "{e}");

    // Keep-archive off: the verified archive is removed after extraction.
    let f2 = fixture();
    let o = FetchOptions { keep_archive: false, ..opts(&server, "toy.tar.xz", 0) };
    fetch_mvtec(&m, &f2.dest, &o).unwrap();
    assert_eq!(listing(&f2.dest), vec!["toy"]);
}

#[test]
fn cut_off_transfer_resumes_with_a_range_request() {
    let f = fixture();
    let bytes = build_archive(&f.src, &f.work.join("a.tar.xz"), |_| {});
    let half = bytes.len() / 2;
    let route = Route { body: bytes.clone(), cut_first_at: Some(half), ..Default::default() };
    let server = Server::start(HashMap::from([("toy.tar.xz".to_string(), route.clone())]));
    let m = manifest_for(&bytes, "http://invalid.invalid/");

    // No automatic retry: the run fails and leaves the partial file.
    let e = fetch_mvtec(&m, &f.dest, &opts(&server, "toy.tar.xz", 0)).unwrap_err();
    assert!(matches!(e, DatasetError::Http { .. }), "{e:?}");
    let part = f.dest.join("toy.tar.xz.part");
    let have = fs::metadata(&part).unwrap().len() as usize;
    assert!(have > 0 && have <= half, "partial file of {have} bytes");
    assert!(!f.dest.join("toy").exists());

    // The next run resumes where the first stopped.
    let root = fetch_mvtec(&m, &f.dest, &opts(&server, "toy.tar.xz", 0)).unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].1.as_deref(), Some(format!("bytes={have}-").as_str()));
    assert_eq!(fs::read(f.dest.join("toy.tar.xz")).unwrap(), bytes);
    assert!(!part.exists());
    Category::open(&root, "grid").unwrap();

    // With retries, one run gets through on its own.
    let f2 = fixture();
    let server2 = Server::start(HashMap::from([("toy.tar.xz".to_string(), route)]));
    fetch_mvtec(&m, &f2.dest, &opts(&server2, "toy.tar.xz", 2)).unwrap();
    let reqs = server2.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].1.as_deref().unwrap().starts_with("bytes="));

    // A server that ignores ranges: the download starts again from zero and still succeeds.
    let f3 = fixture();
    let server3 = Server::start(HashMap::from([(
        "toy.tar.xz".to_string(),
        Route { body: bytes.clone(), cut_first_at: Some(half), ignore_range: true },
    )]));
    fetch_mvtec(&m, &f3.dest, &opts(&server3, "toy.tar.xz", 1)).unwrap();
    assert_eq!(fs::read(f3.dest.join("toy.tar.xz")).unwrap(), bytes);
}

#[test]
fn wrong_checksum_is_reported_and_nothing_is_deleted() {
    let f = fixture();
    let bytes = build_archive(&f.src, &f.work.join("a.tar.xz"), |_| {});
    let server = Server::start(HashMap::from([(
        "toy.tar.xz".to_string(),
        Route { body: bytes.clone(), ..Default::default() },
    )]));
    let good = manifest_for(&bytes, "http://invalid.invalid/");
    let mut m = good.clone();
    m.sha256 = "ab".repeat(32);
    let e = fetch_mvtec(&m, &f.dest, &opts(&server, "toy.tar.xz", 0)).unwrap_err();
    assert!(matches!(e, DatasetError::ChecksumMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("expected {}", "ab".repeat(32))), "{msg}");
    assert!(msg.contains(&format!("found {}", good.sha256)), "{msg}");
    assert!(msg.contains("toy.tar.xz.sha256-mismatch"), "{msg}");
    // The download is kept for inspection; nothing was extracted.
    assert_eq!(listing(&f.dest), vec!["toy.tar.xz.sha256-mismatch"]);

    // An archive the user put in place is verified, reported, and left untouched.
    let f2 = fixture();
    fs::create_dir_all(&f2.dest).unwrap();
    let mut corrupt = bytes.clone();
    corrupt[100] ^= 0xff;
    fs::write(f2.dest.join("toy.tar.xz"), &corrupt).unwrap();
    let e = fetch_mvtec(&good, &f2.dest, &opts(&server, "toy.tar.xz", 0)).unwrap_err();
    assert!(matches!(e, DatasetError::ChecksumMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("expected {}", good.sha256)));
    assert_eq!(fs::read(f2.dest.join("toy.tar.xz")).unwrap(), corrupt);
    assert_eq!(listing(&f2.dest), vec!["toy.tar.xz"]);
    assert_eq!(server.requests().len(), 1, "no download when the archive is present");

    // A wrong size is caught before hashing.
    let mut short = good.clone();
    short.size = short.size.map(|s| s + 1);
    let f3 = fixture();
    let e = fetch_mvtec(&short, &f3.dest, &opts(&server, "toy.tar.xz", 0)).unwrap_err();
    assert!(e.to_string().contains("server announces"), "{e}");
}

fn refused(extra: impl FnOnce(&mut Builder), expect: &[&str]) {
    let f = fixture();
    let bytes = build_archive(&f.src, &f.work.join("a.tar.xz"), extra);
    let server = Server::start(HashMap::from([(
        "toy.tar.xz".to_string(),
        Route { body: bytes.clone(), ..Default::default() },
    )]));
    let m = manifest_for(&bytes, "http://invalid.invalid/");
    let e = fetch_mvtec(&m, &f.dest, &opts(&server, "toy.tar.xz", 0)).unwrap_err();
    assert!(matches!(e, DatasetError::UnsafeEntry { .. }), "{e:?}");
    let msg = e.to_string();
    for s in expect {
        assert!(msg.contains(s), "`{s}` not in: {msg}");
    }
    // Nothing escaped, nothing half-extracted is left: only the verified archive remains.
    assert_eq!(listing(&f.dest), vec!["toy.tar.xz"]);
    let parent = f.dest.parent().unwrap();
    assert!(!parent.join("escape.txt").exists());
    assert!(!parent.join("passwd").exists());
    assert!(!Path::new("/tmp/ikd-data-abs-escape.txt").exists());
}

#[test]
fn parent_dir_entry_is_refused() {
    refused(
        |b| append_raw(b, "../escape.txt", tar::EntryType::Regular, None, b"gotcha"),
        &["../escape.txt", "`..`"],
    );
    refused(
        |b| append_raw(b, "carpet/../../escape.txt", tar::EntryType::Regular, None, b"x"),
        &["carpet/../../escape.txt"],
    );
    refused(
        |b| append_raw(b, "/tmp/ikd-data-abs-escape.txt", tar::EntryType::Regular, None, b"x"),
        &["absolute path"],
    );
}

#[test]
fn symlink_entry_pointing_out_is_refused() {
    refused(
        |b| {
            append_raw(b, "carpet/evil", tar::EntryType::Symlink, Some("../.."), b"");
            append_raw(b, "carpet/evil/escape.txt", tar::EntryType::Regular, None, b"x");
        },
        &["carpet/evil", "link to `../..`"],
    );
    refused(
        |b| append_raw(b, "grid/etc", tar::EntryType::Symlink, Some("/etc"), b""),
        &["grid/etc", "link to `/etc`"],
    );
    refused(
        |b| append_raw(b, "passwd", tar::EntryType::Link, Some("/etc/passwd"), b""),
        &["passwd", "links could point outside"],
    );
    // Even a link that stays inside: a dataset holds none.
    refused(
        |b| append_raw(b, "carpet/alias", tar::EntryType::Symlink, Some("train"), b""),
        &["carpet/alias", "link to `train`"],
    );
}

#[test]
fn mvtec_manifest_is_valid() {
    let m = Manifest::load(datasets_dir().join("mvtec_ad.json")).unwrap();
    assert_eq!(m.file_name, "mvtec_anomaly_detection.tar.xz");
    assert_eq!(m.size, Some(5_264_982_680));
    assert_eq!(m.sha256, "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d");
    assert_eq!(m.totals, Some(Counts { train: 3629, test_good: 467, test_defect: 1258 }));
    let names: Vec<&str> = m.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, MVTEC_CATEGORIES.to_vec());
    assert_eq!(m.url_env.as_deref(), Some(ikd_datasets::MVTEC_URL_ENV));
    assert_eq!(m.resolve_url(Some("http://127.0.0.1:1/x")), "http://127.0.0.1:1/x");

    // A broken manifest is refused with its path.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.json");
    fs::write(&p, "{\"name\": 1}").unwrap();
    let e = Manifest::load(&p).unwrap_err();
    assert!(e.to_string().contains("m.json: invalid manifest"), "{e}");
    let mut bad = m.clone();
    bad.totals.as_mut().unwrap().train += 1;
    fs::write(&p, serde_json::to_string(&bad).unwrap()).unwrap();
    let e = Manifest::load(&p).unwrap_err();
    assert!(e.to_string().contains("per-category counts sum to"), "{e}");
    let mut bad = m;
    bad.extract_dir = "../x".into();
    assert!(bad.validate().is_err());
}
