//! `ikd serve` on a shared network, tested from outside the process: the real binary on
//! 127.0.0.1 with access tokens (`--token-file`), TLS with a certificate of a CA made here
//! (rcgen), `/metrics` on its own address, SIGHUP with a new token file and a new certificate
//! while requests are in flight, configuration errors, and logs that never hold a token.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};

use super::client::{multipart, Client, Response};
use super::serve::{fixture, test_images, wait_until};
use ikd_serve::ScoreResponse;

/// A certificate authority of the test.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        Self { issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap() }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for localhost and 127.0.0.1: (certificate PEM, key PEM).
    fn issue(&self) -> (String, String) {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let params = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client's TLS settings trusting this CA only.
    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

/// Writes `text` to `path` as a renewal tool would: a file of mode 600 renamed over the old one.
fn write_private(path: &Path, text: &str) {
    write_with_mode(path, text, 0o600);
}

fn write_with_mode(path: &Path, text: &str, mode: u32) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
    std::fs::rename(&tmp, path).unwrap();
}

/// A token no one could guess and easy to find in a log.
fn token(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{tag}-{:x}-{}", nanos.as_nanos(), std::process::id())
}

/// The real `ikd serve`, its output collected as it comes.
struct Served {
    child: Child,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Appends what `from` gives to a shared string until it ends.
fn collect(
    mut from: impl Read + Send + 'static,
    into: &Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    let sink = into.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

impl Served {
    /// Starts `ikd serve` with `args` (RUST_LOG=debug: every log line there is) and waits for its
    /// `ready:` line.
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ikd"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = vec![collect(child.stderr.take().unwrap(), &stderr)];
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut addr, mut metrics) = (None, None);
        let mut lines = String::new();
        loop {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "ikd serve ended: {lines}\n{}", stderr.lock().unwrap());
            lines.push_str(&line);
            let at =
                |l: &str| l.trim().split("://").nth(1).unwrap().split('/').next().unwrap().parse();
            if line.starts_with("listening on https://") {
                addr = Some(at(&line).unwrap());
            } else if line.starts_with("metrics on https://") {
                metrics = Some(at(&line).unwrap());
            } else if line.starts_with("ready: ") {
                break;
            }
        }
        let stdout = Arc::new(Mutex::new(lines));
        readers.push(collect(out, &stdout));
        let addr = addr.expect("an https address");
        Self { child, addr, metrics, stderr, stdout, readers }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
    }

    /// SIGTERM, then the exit status and everything the process wrote.
    fn stop(mut self) -> (Option<i32>, String) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let all = format!("{}{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap());
        (status.code(), all)
    }
}

fn client(addr: SocketAddr, ca: &Ca) -> Client {
    Client::new(addr).with_tls(ca.client(&[b"http/1.1"])).with_timeout(Duration::from_secs(300))
}

fn challenge(r: &Response) -> &str {
    r.header("www-authenticate").unwrap_or_else(|| panic!("no WWW-Authenticate: {}", r.text()))
}

/// `GET /v1/runs` over HTTP/2 (ALPN `h2`): the protocol agreed on and the status.
fn h2_get(addr: SocketAddr, ca: &Ca, token: &str) -> (Option<Vec<u8>>, u16) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let connector = tokio_rustls::TlsConnector::from(ca.client(&[b"h2"]));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (send, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut send = send.ready().await.unwrap();
        let req = http::Request::get("https://localhost/v1/runs")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let (answer, _) = send.send_request(req, true).unwrap();
        (alpn, answer.await.unwrap().status().as_u16())
    })
}

/// Tokens, TLS (HTTP/1.1 and HTTP/2), health routes, the metrics listener, plain HTTP to the TLS
/// port; then SIGHUP with a new token file and a certificate of another CA while two score
/// requests wait in the queue: the new ones take effect, the old ones stop working, the waiting
/// requests are answered 200; a bad token file on a later SIGHUP changes nothing; no token is
/// ever written to the logs.
#[cfg(unix)]
#[test]
fn serve_with_tokens_and_tls_reloads_on_sighup() {
    let f = fixture();
    let images = test_images(&f.root);
    let png = std::fs::read(&images[0]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key, tokens) =
        (tmp.path().join("cert.pem"), tmp.path().join("key.pem"), tmp.path().join("tokens"));
    let (ca1, ca2) = (Ca::new("ikd test CA 1"), Ca::new("ikd test CA 2"));
    let (c1, k1) = ca1.issue();
    write_private(&cert, &c1);
    write_private(&key, &k1);
    let (alpha, beta) = (token("alpha"), token("beta"));
    write_private(&tokens, &format!("# the stations\nstation-a {alpha}\n"));

    let p = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (run, cert_s, key_s, tokens_s) = (p(&f.tested), p(&cert), p(&key), p(&tokens));
    // batches of 3 images or an hour: score requests wait in the queue until a third image comes
    let s = Served::start(&[
        "--run",
        &run,
        "--addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--token-file",
        &tokens_s,
        "--tls-cert",
        &cert_s,
        "--tls-key",
        &key_s,
        "--max-batch",
        "3",
        "--max-wait-ms",
        "3600000",
    ]);

    // health routes are open; everything else needs the token
    let mut open = client(s.addr, &ca1);
    assert_eq!(open.get("/healthz").unwrap().status, 200);
    assert_eq!(open.get("/readyz").unwrap().status, 200);
    let r = open.get("/v1/runs").unwrap();
    assert_eq!((r.status, challenge(&r)), (401, "Bearer realm=\"ikd\""), "{}", r.text());
    let r = open.post("/v1/runs/tested/score", "image/png", &png).unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(open.get("/no/such/route").unwrap().status, 401, "no route is told without a token");
    let wrong = format!("{alpha}x");
    for auth in
        [format!("Bearer {wrong}"), format!("Basic {alpha}"), alpha.clone(), "Bearer".into()]
    {
        let r = client(s.addr, &ca1).with_authorization(&auth).get("/v1/runs").unwrap();
        assert_eq!(r.status, 401, "{auth}: {}", r.text());
        assert!(challenge(&r).starts_with("Bearer realm=\"ikd\""), "{auth}");
    }
    let mut a = client(s.addr, &ca1).with_token(&alpha);
    let r = a.get("/v1/runs").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"name\":\"tested\""), "{}", r.text());
    assert_eq!(a.get("/metrics").unwrap().status, 404, "/metrics has its own address");
    assert_eq!(h2_get(s.addr, &ca1, &alpha), (Some(b"h2".to_vec()), 200), "HTTP/2");
    assert_eq!(h2_get(s.addr, &ca1, &wrong).1, 401);

    // plain HTTP to the TLS port: a plain 400 that says so; the service stays up
    let r = Client::new(s.addr).with_timeout(Duration::from_secs(30)).get("/healthz").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("this port speaks TLS"), "{}", r.text());
    assert_eq!(open.get("/healthz").unwrap().status, 200);

    // two score requests wait in the queue, each on its own connection made with the old pair
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut c = client(s.addr, &ca1).with_token(&alpha);
            let png = png.clone();
            std::thread::spawn(move || c.post("/v1/runs/tested/score", "image/png", &png).unwrap())
        })
        .collect();
    let metrics = s.metrics.expect("a metrics address");
    let mut scrape = client(metrics, &ca1);
    wait_until("both requests to be queued", || {
        let m = scrape.get("/metrics").unwrap().text();
        super::serve::metric(&m, "ikd_queue_depth{run=\"tested\"}") == Some(2.0)
    });
    let m = scrape.get("/metrics").unwrap().text();
    assert!(m.contains("ikd_http_requests_total{route=\"runs\",status=\"401\"}"), "{m}");
    assert!(m.contains("ikd_http_requests_by_client_total{client=\"station-a\",status=\"200\"}"));

    // renewal: a new token file and a certificate of another CA, then SIGHUP
    let (c2, k2) = ca2.issue();
    write_private(&cert, &c2);
    write_private(&key, &k2);
    write_private(&tokens, &format!("station-b {beta}\n"));
    assert_eq!(a.get("/v1/runs").unwrap().status, 200, "the old pair until SIGHUP");
    s.signal("HUP");
    let mut b = client(s.addr, &ca2).with_token(&beta);
    wait_until("the new certificate and token", || {
        b.get("/v1/runs").is_ok_and(|r| r.status == 200)
    });
    let e = client(s.addr, &ca1).get("/healthz").unwrap_err();
    assert!(e.to_string().contains("certificate"), "the old CA's certificate is gone: {e}");
    let r = a.get("/v1/runs").unwrap();
    assert_eq!(r.status, 401, "the old token, on a connection opened before: {}", r.text());
    let r = client(s.addr, &ca2).with_token(&alpha).get("/v1/runs").unwrap();
    assert_eq!(r.status, 401, "the old token on a new connection");
    // a third image completes the batch: the waiting requests are answered
    let r = b.post("/v1/runs/tested/score", "image/png", &png).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    for t in held {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let scored: ScoreResponse = r.json().unwrap();
        assert_eq!(scored.images[0].batch_size, 3, "scored with the request sent after SIGHUP");
    }

    // a token file open to others on the next SIGHUP: refused, logged, the tokens in force stay
    write_with_mode(&tokens, &format!("station-c {alpha}\n"), 0o644);
    s.signal("HUP");
    wait_until("the refused reload to be logged", || {
        s.stderr.lock().unwrap().contains("the previous tokens and certificate stay in force")
    });
    assert_eq!(b.get("/v1/runs").unwrap().status, 200);
    assert_eq!(client(s.addr, &ca2).with_token(&alpha).get("/v1/runs").unwrap().status, 401);
    let (ct, body) = multipart(&[("a.png", &png), ("b.png", &png), ("c.png", &png)]);
    assert_eq!(b.post("/v1/runs/tested/score", &ct, &body).unwrap().status, 200);

    let (code, logs) = s.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("station-a") && logs.contains("station-b"), "names are logged: {logs}");
    assert!(logs.contains("group or others"), "{logs}");
    assert!(logs.contains("refused: unknown token"), "debug lines are in the logs: {logs}");
    for secret in [&alpha, &beta] {
        assert!(!logs.contains(secret.as_str()), "a token in the logs");
    }
    // not even a part of one (the random half of each token)
    for secret in [&alpha, &beta] {
        let tail = secret.split_once('-').unwrap().1;
        assert!(!logs.contains(tail), "a token's part in the logs");
    }
}

/// Each configuration error is one line naming the file, printed before the service listens,
/// exit 1; a non-loopback address without tokens starts with a one-line warning.
#[cfg(unix)]
#[test]
fn serve_configuration_errors_name_the_file_before_listening() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = Ca::new("ikd test CA");
    let ((c1, k1), (_, k2)) = (ca.issue(), ca.issue());
    let path = |name: &str| d.join(name).to_str().unwrap().to_string();
    write_private(&d.join("cert.pem"), &c1);
    write_private(&d.join("key.pem"), &k1);
    write_private(&d.join("other-key.pem"), &k2);
    write_private(&d.join("tokens"), &format!("{}\n", token("gamma")));
    write_private(&d.join("empty"), "# no token yet\n");
    write_with_mode(&d.join("shared"), &format!("{}\n", token("delta")), 0o640);
    write_private(&d.join("not-pem"), "hello\n");
    let run = f.tested.to_str().unwrap();
    let cases: [(&[String], String); 6] = [
        (
            &["--token-file".into(), path("missing")],
            format!("token file {}: cannot read it", path("missing")),
        ),
        (
            &["--token-file".into(), path("empty")],
            format!("token file {}: holds no token", path("empty")),
        ),
        (
            &["--token-file".into(), path("shared")],
            format!(
                "token file {}: readable or writable by group or others (mode 640)",
                path("shared")
            ),
        ),
        (
            &["--tls-cert".into(), path("cert.pem"), "--tls-key".into(), path("other-key.pem")],
            format!(
                "--tls-key {}: does not match the certificate in {}",
                path("other-key.pem"),
                path("cert.pem")
            ),
        ),
        (
            &["--tls-cert".into(), path("not-pem"), "--tls-key".into(), path("key.pem")],
            format!("--tls-cert {}: holds no PEM certificate", path("not-pem")),
        ),
        (
            &["--tls-cert".into(), path("cert.pem"), "--tls-key".into(), path("missing")],
            format!("--tls-key {}: cannot read it", path("missing")),
        ),
    ];
    for (extra, says) in cases {
        let mut args = vec!["serve", "--run", run, "--addr", "127.0.0.1:0"];
        args.extend(extra.iter().map(String::as_str));
        let out = super::ikd(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "it never listened: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = super::ikd_err(&args);
        assert!(err.contains(&says), "{extra:?}: {err}\nshould say: {says}");
        assert!(!err.contains("gamma") && !err.contains("delta"), "{err}");
    }
    let out = super::ikd(&["serve", "--run", run, "--tls-cert", &path("cert.pem")]);
    assert!(!out.status.success(), "--tls-cert needs --tls-key");

    // tokens on a non-loopback address: no warning; none: one warning line
    let s = Served::start_plain(&[
        "--run",
        run,
        "--addr",
        "0.0.0.0:0",
        "--token-file",
        &path("tokens"),
    ]);
    let (_, logs) = s.stop();
    assert!(!logs.contains("no --token-file"), "{logs}");
    let s = Served::start_plain(&["--run", run, "--addr", "0.0.0.0:0"]);
    let (code, logs) = s.stop();
    assert_eq!(code, Some(0));
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("no --token-file")).collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("anyone who can reach 0.0.0.0:"), "{logs}");
    let s = Served::start_plain(&["--run", run, "--addr", "127.0.0.1:0"]);
    let (_, logs) = s.stop();
    assert!(!logs.contains("no --token-file"), "loopback: no warning: {logs}");
}

impl Served {
    /// `ikd serve` without TLS, started and ready (its address is not needed).
    fn start_plain(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ikd"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = String::new();
        while !lines.contains("ready: ") {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "ikd serve ended: {lines}");
            lines.push_str(&line);
        }
        let (stderr, stdout) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(lines)));
        let readers = vec![collect(child.stderr.take().unwrap(), &stderr), collect(out, &stdout)];
        let addr = "127.0.0.1:1".parse().unwrap();
        Self { child, addr, metrics: None, stderr, stdout, readers }
    }
}
