//! Access tokens (`--token-file`): every route but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>`. The file holds one token a line, `TOKEN` or `NAME TOKEN`
//! (`#` starts a comment); the name, not the token, appears in the logs and the metrics. Only
//! the tokens' SHA-256 digests are kept, and a presented token's digest is compared with each of
//! them in constant time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Error, Shared};

/// The shortest token accepted: shorter ones can be guessed.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// One token of the file: its name and the SHA-256 of the token.
#[derive(Debug)]
struct Entry {
    name: String,
    digest: [u8; 32],
}

/// The tokens of one reading of the file.
#[derive(Debug)]
pub(crate) struct Tokens {
    entries: Vec<Entry>,
}

/// The token file and its tokens, swapped whole by a reload.
#[derive(Debug)]
pub(crate) struct TokenStore {
    path: PathBuf,
    current: RwLock<Arc<Tokens>>,
}

impl TokenStore {
    /// Reads `path` (see [`load`]).
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        let tokens = load(path)?;
        Ok(Self { path: path.to_path_buf(), current: RwLock::new(Arc::new(tokens)) })
    }

    /// Reads the file again; the tokens it holds now are returned, to be installed with
    /// [`TokenStore::install`].
    pub(crate) fn reread(&self) -> Result<Tokens, Error> {
        load(&self.path)
    }

    pub(crate) fn install(&self, tokens: Tokens) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
    }

    pub(crate) fn get(&self) -> Arc<Tokens> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Tokens {
    /// The tokens' names, in the file's order.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// The name of the token `authorization` presents, or why it is refused.
    fn check(&self, authorization: Option<&HeaderValue>) -> Result<&str, &'static str> {
        let value = authorization.ok_or("no Authorization header: send `Bearer <token>`")?;
        let value = value.to_str().map_err(|_| "the Authorization header is not text")?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("the Authorization scheme must be Bearer");
        }
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        // every entry is compared, whichever matches
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&digest)) {
                found = Some(e.name.as_str());
            }
        }
        found.ok_or("unknown token")
    }
}

/// Reads a token file: one line naming the file and the problem when it cannot be read, is open
/// to group or others, holds no token, a malformed or short token, or a token or name twice. No
/// message ever quotes a token.
pub(crate) fn load(path: &Path) -> Result<Tokens, Error> {
    let fail = |m: String| Error::Config(format!("token file {}: {m}", path.display()));
    let text = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read it: {e}")))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "readable or writable by group or others (mode {:o}): `chmod 600 {}`",
                mode & 0o777,
                path.display()
            )));
        }
    }
    let text = String::from_utf8(text).map_err(|_| fail("not UTF-8 text".into()))?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, token) = match fields[..] {
            [token] => (format!("line-{n}"), token),
            [name, token] => (name.to_string(), token),
            _ => return Err(fail(format!("line {n}: expected `TOKEN` or `NAME TOKEN`"))),
        };
        let name_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if !name.chars().all(name_ok) {
            return Err(fail(format!(
                "line {n}: the name `{name}` must be letters, digits, '-', '_' or '.'"
            )));
        }
        if let Some(why) = bad_token(token) {
            return Err(fail(format!("line {n}: the token {why}")));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(j) = entries.iter().position(|e| e.digest == digest) {
            return Err(fail(format!("line {n} repeats the token of line {}", lines[j])));
        }
        if let Some(j) = entries.iter().position(|e| e.name == name) {
            return Err(fail(format!("line {n} repeats the name `{name}` of line {}", lines[j])));
        }
        entries.push(Entry { name, digest });
        lines.push(n);
    }
    if entries.is_empty() {
        return Err(fail("holds no token (one a line: `TOKEN` or `NAME TOKEN`)".into()));
    }
    Ok(Tokens { entries })
}

/// Why `token` cannot be a Bearer token (RFC 6750's token68), if it cannot.
fn bad_token(token: &str) -> Option<String> {
    let body = token.trim_end_matches('=');
    let ok = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
    if body.is_empty() || !body.chars().all(ok) {
        Some("may only hold letters, digits and -._~+/ (then '=' padding)".into())
    } else if token.len() < MIN_TOKEN_LEN {
        Some(format!("is {} characters long, fewer than {MIN_TOKEN_LEN}", token.len()))
    } else {
        None
    }
}

/// The middleware: health routes pass; anything else needs a known token (401 with
/// `WWW-Authenticate` otherwise). The token's name is recorded in the request's span and counted.
pub(crate) async fn require_token(
    State(s): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(store) = &s.tokens else {
        return next.run(req).await;
    };
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let tokens = store.get();
    match tokens.check(req.headers().get(header::AUTHORIZATION)) {
        Ok(name) => {
            tracing::Span::current().record("client", name);
            let response = next.run(req).await;
            s.metrics.client_response(name, response.status().as_u16());
            response
        }
        Err(why) => {
            tracing::debug!(status = 401, "refused: {why}");
            let challenge = if req.headers().contains_key(header::AUTHORIZATION) {
                "Bearer realm=\"ikd\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"ikd\""
            };
            let mut r = (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": why })))
                .into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tokens");
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        (d, p)
    }

    fn bearer(t: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    #[test]
    fn tokens_are_named_and_checked() {
        let text =
            "# stations\nline3 s3cr3t-token-of-line3\n\n  abcdefghijklmnopqrstuvwxyz012345  \n";
        let (_d, p) = file(text, 0o600);
        let t = load(&p).unwrap();
        assert_eq!(t.names(), ["line3", "line-4"]);
        assert_eq!(t.check(Some(&bearer("s3cr3t-token-of-line3"))), Ok("line3"));
        let lower = HeaderValue::from_static("bearer abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(t.check(Some(&lower)), Ok("line-4"));
        assert!(t.check(Some(&bearer("s3cr3t-token-of-line"))).is_err());
        assert!(t.check(Some(&bearer(""))).is_err());
        assert!(t.check(None).is_err());
        let basic = HeaderValue::from_static("Basic czNjcjN0LXRva2VuLW9mLWxpbmUz");
        assert_eq!(t.check(Some(&basic)), Err("the Authorization scheme must be Bearer"));
        let bare = HeaderValue::from_static("s3cr3t-token-of-line3");
        assert!(t.check(Some(&bare)).is_err());
    }

    #[test]
    fn bad_token_files_are_one_line_naming_the_file_never_the_token() {
        let secret = "a-secret-that-is-long-enough";
        let cases = [
            ("", "holds no token"),
            ("# only a comment\n", "holds no token"),
            ("a b c\n", "line 1: expected `TOKEN` or `NAME TOKEN`"),
            ("short\n", "fewer than 16"),
            ("x a-secret-that-is-long-enough!\n", "may only hold"),
            (
                "a a-secret-that-is-long-enough\nb a-secret-that-is-long-enough\n",
                "line 2 repeats the token of line 1",
            ),
            (
                "a a-secret-that-is-long-enough\na another-secret-long-enough\n",
                "repeats the name `a`",
            ),
            ("na/me a-secret-that-is-long-enough\n", "the name `na/me`"),
        ];
        for (text, says) in cases {
            let (_d, p) = file(text, 0o600);
            let e = load(&p).unwrap_err().to_string();
            assert!(e.starts_with(&format!("token file {}: ", p.display())), "{e}");
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(!e.contains(secret) && !e.contains('\n'), "{e}");
        }
        #[cfg(unix)]
        {
            let (_d, p) = file(&format!("{secret}\n"), 0o644);
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains("group or others (mode 644)") && e.contains("chmod 600"), "{e}");
            let (_d, p) = file(&format!("{secret}\n"), 0o400);
            assert!(load(&p).is_ok());
        }
        let e = load(Path::new("/nonexistent/tokens")).unwrap_err().to_string();
        assert!(e.starts_with("token file /nonexistent/tokens: cannot read it"), "{e}");
    }
}
