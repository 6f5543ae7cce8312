//! The routes: scoring, the runs, health, readiness and metrics; errors as JSON
//! `{"error": "..."}` with the status that says what went wrong.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use tracing::Instrument;

use crate::batch::{LoadState, Rejected, Reply, Runner};
use crate::{RunInfo, Shared};

/// The answer to `POST /v1/runs/{name}/score`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreResponse {
    /// The run that scored the images.
    pub run: String,
    /// One entry per image, in the order sent.
    pub images: Vec<ImageScore>,
}

/// What the run says about one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageScore {
    /// The part's file name (or field name) in a multipart request; `None` for a plain body.
    pub name: Option<String>,
    /// The image's width in pixels.
    pub width: u32,
    /// The image's height in pixels.
    pub height: u32,
    /// The image score: the anomaly map's maximum (the same `f32` as `ikd predict`'s).
    pub score: f64,
    /// The score in `[0, 1]`, the run's threshold at 0.5 (`None`: the run was never tested).
    pub normalized: Option<f64>,
    /// `OK` or `NG` (`None`: the run was never tested).
    pub decision: Option<String>,
    /// The image threshold of the decision: scores from this one up are NG.
    pub threshold: Option<f64>,
    /// The pixel threshold of the defect mask.
    pub pixel_threshold: Option<f64>,
    /// The share of the image's pixels in the defect mask.
    pub defect_fraction: Option<f64>,
    /// Milliseconds the image waited for its batch.
    pub queue_ms: f64,
    /// Milliseconds its batch took in the network.
    pub inference_ms: f64,
    /// Images in its batch.
    pub batch_size: usize,
    /// The heat map overlay (base64 PNG), with `?heatmap=png`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap_png: Option<String>,
    /// The binary defect mask (base64 PNG, 255 = defect), with `?mask=png`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_png: Option<String>,
}

/// An error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn unavailable(message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r =
            (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The service's routes; `/metrics` among them unless it has its own listener. With tokens,
/// every route but the health routes needs one.
pub(crate) fn router(shared: Arc<Shared>, with_metrics: bool) -> Router {
    let mut app = Router::new()
        .route("/v1/runs/{name}/score", post(score))
        .route("/v1/runs", get(runs))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if with_metrics {
        app = app.route("/metrics", get(metrics));
    }
    app.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(shared.body_limit))
        .layer(middleware::from_fn_with_state(shared.clone(), crate::auth::require_token))
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .with_state(shared)
}

/// The routes of the metrics listener (`--metrics-addr`): `/metrics` and `/healthz`, no token.
pub(crate) fn metrics_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(shared)
}

/// Each request in its own span (id, method, path), its status and time logged and counted.
async fn observe(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let route = match path.as_str() {
        p if p.starts_with("/v1/runs/") && p.ends_with("/score") => "score",
        "/v1/runs" => "runs",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ => "other",
    };
    // `client`: the name of the request's access token, once checked
    let span = tracing::info_span!(
        "request",
        id,
        method = %req.method(),
        path = %path,
        client = tracing::field::Empty
    );
    // counted down when the request ends, answered or dropped (its client went away)
    struct InFlight<'a>(&'a AtomicU64);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    s.metrics.in_flight.fetch_add(1, Ordering::SeqCst);
    let in_flight = InFlight(&s.metrics.in_flight);
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    drop(in_flight);
    let status = response.status().as_u16();
    s.metrics.response(route, status, seconds);
    span.in_scope(|| tracing::debug!(status, ms = seconds * 1e3, "answered"));
    response
}

async fn runs(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let runs: Vec<serde_json::Value> = s
        .runs
        .values()
        .map(|r| match &*r.state.borrow() {
            LoadState::Ready(info) => {
                let mut v = serde_json::to_value(&**info).unwrap_or_default();
                v["state"] = "ready".into();
                v
            }
            LoadState::Loading => {
                serde_json::json!({ "name": r.name, "dir": r.dir, "state": "loading" })
            }
            LoadState::Failed(e) => {
                serde_json::json!({ "name": r.name, "dir": r.dir, "state": "failed", "error": e })
            }
        })
        .collect();
    Json(serde_json::json!({ "runs": runs }))
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let waiting: Vec<&str> =
        s.runs.values().filter(|r| r.ready().is_none()).map(|r| r.name.as_str()).collect();
    if waiting.is_empty() {
        "ready\n".into_response()
    } else {
        ApiError::unavailable(format!("not ready: {}", waiting.join(", ")), 1).into_response()
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let runs =
        s.runs.values().map(|r| (r.name.as_str(), r.depth(), r.ready().is_some(), &r.metrics));
    let text = s.metrics.render(runs);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// What `?heatmap=png&mask=png` asks for.
#[derive(Debug, Default, Clone, Copy)]
struct Extras {
    heatmap: bool,
    mask: bool,
}

fn parse_query(q: Option<&str>) -> Result<Extras, ApiError> {
    let mut extras = Extras::default();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let flag = match k {
            "heatmap" => &mut extras.heatmap,
            "mask" => &mut extras.mask,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{k}`: use heatmap=png and mask=png"
                )))
            }
        };
        if v != "png" {
            return Err(ApiError::bad_request(format!("{k}={v}: the only format is png")));
        }
        *flag = true;
    }
    Ok(extras)
}

async fn score(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let timeout = s.request_timeout;
    match tokio::time::timeout(timeout, score_images(&s, &name, query.as_deref(), req)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => {
            // a full queue is back-pressure working, not a fault
            if e.status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::debug!(status = 503, "{}", e.message);
            } else if e.status.is_server_error() {
                tracing::warn!(status = e.status.as_u16(), "{}", e.message);
            }
            e.into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("not answered within the request timeout ({} ms)", timeout.as_millis()),
        )
        .into_response(),
    }
}

async fn score_images(
    s: &Shared,
    name: &str,
    query: Option<&str>,
    req: Request,
) -> Result<ScoreResponse, ApiError> {
    let runner = s.runs.get(name).ok_or_else(|| {
        let known: Vec<&str> = s.runs.keys().map(String::as_str).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no run named `{name}` (serving: {})", known.join(", ")),
        )
    })?;
    let extras = parse_query(query)?;
    let info = match &*runner.state.borrow() {
        LoadState::Ready(info) => info.clone(),
        LoadState::Loading => {
            return Err(ApiError::unavailable(format!("run `{name}` is loading"), 1))
        }
        LoadState::Failed(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("run `{name}` failed to load: {e}"),
            ))
        }
    };
    if extras.mask && info.pixel_threshold.is_none() {
        return Err(ApiError::bad_request(format!(
            "mask=png: run `{name}` was never tested, so it has no pixel threshold for masks"
        )));
    }
    let parts = read_parts(req).await?;
    let (names, bytes): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let decoded = tokio::task::spawn_blocking(move || {
        bytes.iter().map(|b| crate::decode(b)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding: {e}")))?;
    let mut images = Vec::with_capacity(decoded.len());
    for (i, (d, n)) in decoded.into_iter().zip(&names).enumerate() {
        match d {
            Ok(img) => images.push(img),
            Err(e) => {
                let which = match (n, names.len()) {
                    (Some(n), _) => format!("image {} ({n})", i + 1),
                    (None, 1) => "the body".to_string(),
                    (None, _) => format!("image {}", i + 1),
                };
                return Err(ApiError::bad_request(format!("{which}: {e}")));
            }
        }
    }
    let receivers = runner.submit(images).map_err(|e| rejected(runner, e))?;
    let mut out = Vec::with_capacity(receivers.len());
    for (rx, name) in receivers.into_iter().zip(names) {
        let reply: Reply = rx.await.unwrap_or_else(|_| Err("the run's thread ended".into()));
        let scored = reply.map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("scoring failed: {e}"))
        })?;
        out.push((name, scored));
    }
    let info2 = info.clone();
    tokio::task::spawn_blocking(move || {
        out.into_iter()
            .map(|(name, sc)| image_score(&info2, name, sc, extras))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}")))?
    .map(|images| ScoreResponse { run: info.name.clone(), images })
}

fn rejected(runner: &Runner, e: Rejected) -> ApiError {
    match e {
        Rejected::Full { capacity } => ApiError::unavailable(
            format!("run `{}`: the queue is full ({capacity} images); retry later", runner.name),
            1,
        ),
        Rejected::TooMany { capacity } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more images in one request than the queue holds ({capacity}): split it"),
        ),
        Rejected::Closed => ApiError::unavailable("the service is shutting down", 5),
    }
}

/// The images of a request: a plain body, or each part of a `multipart/form-data` body with its
/// file name (or field name).
async fn read_parts(req: Request) -> Result<Vec<(Option<String>, Bytes)>, ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/"));
    if !multipart {
        let body = Bytes::from_request(req, &())
            .await
            .map_err(|e| ApiError::new(e.status(), body_error(e.status(), e.body_text())))?;
        if body.is_empty() {
            return Err(ApiError::bad_request(
                "empty body: post an image (PNG, JPEG, BMP or TIFF) or multipart/form-data with images",
            ));
        }
        return Ok(vec![(None, body)]);
    }
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::new(e.status(), format!("multipart body: {}", e.body_text())))?;
    let mut parts = Vec::new();
    let err = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(
            e.status(),
            body_error(e.status(), format!("multipart body: {}", e.body_text())),
        )
    };
    while let Some(field) = mp.next_field().await.map_err(err)? {
        let name = field.file_name().or(field.name()).map(str::to_string);
        let bytes = field.bytes().await.map_err(err)?;
        parts.push((name, bytes));
    }
    if parts.is_empty() {
        return Err(ApiError::bad_request("multipart body holds no image"));
    }
    Ok(parts)
}

fn body_error(status: StatusCode, text: String) -> String {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("{text}: the body limit is set by --body-limit")
    } else {
        text
    }
}

fn image_score(
    info: &RunInfo,
    name: Option<String>,
    sc: crate::batch::Scored,
    extras: Extras,
) -> Result<ImageScore, ApiError> {
    let p = &sc.prediction;
    let b64 = |png: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(png);
    let heatmap_png = extras
        .heatmap
        .then(|| png(&ikd::viz::heatmap(&sc.image, &p.map, info.heatmap_range)))
        .transpose()?
        .map(b64);
    let mask_png = match (&p.mask, extras.mask) {
        (Some(m), true) => Some(b64(png(m)?)),
        _ => None,
    };
    Ok(ImageScore {
        name,
        width: sc.image.width(),
        height: sc.image.height(),
        score: p.score,
        normalized: p.normalized,
        decision: p.anomalous.map(|a| if a { "NG" } else { "OK" }.to_string()),
        threshold: info.decision.map(|d| d.threshold),
        pixel_threshold: info.pixel_threshold,
        defect_fraction: p.defect_fraction,
        queue_ms: sc.queue.as_secs_f64() * 1e3,
        inference_ms: sc.inference.as_secs_f64() * 1e3,
        batch_size: sc.batch_size,
        heatmap_png,
        mask_png,
    })
}

fn png<P, C>(img: &image::ImageBuffer<P, C>) -> Result<Vec<u8>, ApiError>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("PNG: {e}")))?;
    Ok(out)
}
