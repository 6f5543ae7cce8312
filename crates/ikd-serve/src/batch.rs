//! Dynamic batching: one thread per run owns its [`Predictor`], gathers queued images up to the
//! batch size or the longest wait, scores them in one [`Predictor::score_batch`] call and hands
//! each caller its result through a oneshot channel. The runtime's threads never run a network.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ikd::{Prediction, Predictor};
use image::DynamicImage;
use tokio::sync::{oneshot, watch};

use crate::metrics::RunMetrics;
use crate::RunInfo;

/// Where a run's loading stands.
#[derive(Debug, Clone)]
pub(crate) enum LoadState {
    Loading,
    Ready(Arc<RunInfo>),
    Failed(String),
}

/// An image scored: its prediction and the times it spent.
#[derive(Debug)]
pub(crate) struct Scored {
    pub(crate) image: DynamicImage,
    pub(crate) prediction: Prediction,
    pub(crate) queue: Duration,
    pub(crate) inference: Duration,
    pub(crate) batch_size: usize,
}

/// What a caller gets back: the scored image or why it could not be scored.
pub(crate) type Reply = Result<Scored, String>;

struct Job {
    image: DynamicImage,
    queued: Instant,
    reply: oneshot::Sender<Reply>,
}

enum Msg {
    Job(Job),
    /// Stop waiting for a full batch: the service is shutting down.
    Flush,
}

/// Why images were not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The queue holds `capacity` images and has no room for this request's.
    Full { capacity: usize },
    /// More images in one request than the queue can ever hold.
    TooMany { capacity: usize },
    /// The service is shutting down.
    Closed,
}

/// Batching settings of every run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSettings {
    pub(crate) max_batch: usize,
    pub(crate) max_wait: Duration,
    pub(crate) queue: usize,
}

/// One run's queue and the handle of its thread.
pub(crate) struct Runner {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    /// Images queued and not yet handed to the network (counted when queued, so that a full
    /// queue is refused before anything is sent).
    depth: AtomicUsize,
    capacity: usize,
    closing: AtomicBool,
    paused: (Mutex<bool>, Condvar),
    pub(crate) state: watch::Receiver<LoadState>,
    pub(crate) metrics: RunMetrics,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("name", &self.name).field("dir", &self.dir).finish()
    }
}

impl Runner {
    /// Starts the run's thread: it loads the predictor with `open`, warms it up on a full batch
    /// and then scores what is queued until [`Runner::close`] and the queue is empty.
    pub(crate) fn start(
        name: String,
        dir: PathBuf,
        settings: BatchSettings,
        open: impl FnOnce() -> Result<Predictor, String> + Send + 'static,
    ) -> std::io::Result<(Arc<Self>, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel();
        let (state_tx, state) = watch::channel(LoadState::Loading);
        let runner = Arc::new(Self {
            name: name.clone(),
            dir,
            tx: Mutex::new(Some(tx)),
            depth: AtomicUsize::new(0),
            capacity: settings.queue,
            closing: AtomicBool::new(false),
            paused: (Mutex::new(false), Condvar::new()),
            state,
            metrics: RunMetrics::new(),
        });
        let r = runner.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ikd-serve:{name}"))
            .spawn(move || r.run(rx, state_tx, settings, open))?;
        Ok((runner, thread))
    }

    /// Images queued and not yet scored.
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    /// The run's [`RunInfo`] once it is loaded and warmed up.
    pub(crate) fn ready(&self) -> Option<Arc<RunInfo>> {
        match &*self.state.borrow() {
            LoadState::Ready(info) => Some(info.clone()),
            _ => None,
        }
    }

    /// Queues `images` (all or none); the receivers give their results in order.
    pub(crate) fn submit(
        &self,
        images: Vec<DynamicImage>,
    ) -> Result<Vec<oneshot::Receiver<Reply>>, Rejected> {
        let n = images.len();
        if n > self.capacity {
            return Err(Rejected::TooMany { capacity: self.capacity });
        }
        if self.closing.load(Ordering::SeqCst) {
            return Err(Rejected::Closed);
        }
        let reserved = self.depth.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
            (d + n <= self.capacity).then_some(d + n)
        });
        if reserved.is_err() {
            return Err(Rejected::Full { capacity: self.capacity });
        }
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else {
            self.depth.fetch_sub(n, Ordering::SeqCst);
            return Err(Rejected::Closed);
        };
        let queued = Instant::now();
        let mut receivers = Vec::with_capacity(n);
        for image in images {
            let (reply, rx) = oneshot::channel();
            // the thread holds the receiver until the sender is dropped in `close`
            let _ = tx.send(Msg::Job(Job { image, queued, reply }));
            receivers.push(rx);
        }
        Ok(receivers)
    }

    /// Refuses new images and has the thread score what is queued without waiting for full
    /// batches, then end.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(Msg::Flush);
        }
        self.set_paused(false);
    }

    /// Holds queued images back from the network while `paused` (they stay in the queue and
    /// count against it): a maintenance switch, and what makes tests of a full queue and of
    /// timeouts deterministic.
    pub(crate) fn set_paused(&self, paused: bool) {
        *self.paused.0.lock().unwrap_or_else(|e| e.into_inner()) = paused;
        self.paused.1.notify_all();
    }

    fn wait_unpaused(&self) {
        let mut p = self.paused.0.lock().unwrap_or_else(|e| e.into_inner());
        while *p {
            p = self.paused.1.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn run(
        &self,
        rx: mpsc::Receiver<Msg>,
        state: watch::Sender<LoadState>,
        settings: BatchSettings,
        open: impl FnOnce() -> Result<Predictor, String>,
    ) {
        let _span = tracing::info_span!("run", run = %self.name).entered();
        let loaded = open().and_then(|p| {
            let info = RunInfo::of(&self.name, &self.dir, &p);
            warm_up(&p, settings.max_batch).map(|()| (p, info))
        });
        let predictor = match loaded {
            Ok((p, info)) => {
                tracing::info!("loaded and warmed up");
                state.send_replace(LoadState::Ready(Arc::new(info)));
                p
            }
            Err(e) => {
                tracing::error!("{e}");
                state.send_replace(LoadState::Failed(e.clone()));
                self.closing.store(true, Ordering::SeqCst);
                self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
                for msg in rx.iter() {
                    if let Msg::Job(j) = msg {
                        self.depth.fetch_sub(1, Ordering::SeqCst);
                        let _ = j.reply.send(Err(e.clone()));
                    }
                }
                return;
            }
        };
        loop {
            let first = match rx.recv() {
                Ok(Msg::Job(j)) => j,
                Ok(Msg::Flush) => continue,
                Err(_) => break, // closed and drained
            };
            self.wait_unpaused();
            let mut batch = vec![first];
            let deadline = Instant::now() + settings.max_wait;
            while batch.len() < settings.max_batch {
                let next = if self.closing.load(Ordering::SeqCst) {
                    rx.try_recv().map_err(|e| match e {
                        mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                        mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                    })
                } else {
                    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                };
                match next {
                    Ok(Msg::Job(j)) => batch.push(j),
                    Ok(Msg::Flush) => {}
                    Err(_) => break,
                }
            }
            self.depth.fetch_sub(batch.len(), Ordering::SeqCst);
            // callers that gave up (timed out, disconnected) are not scored
            batch.retain(|j| !j.reply.is_closed());
            if !batch.is_empty() {
                self.score(&predictor, batch);
            }
        }
        tracing::info!("queue drained");
    }

    fn score(&self, predictor: &Predictor, batch: Vec<Job>) {
        let started = Instant::now();
        let (images, rest): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.image, (j.queued, j.reply))).unzip();
        let n = images.len();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            predictor.score_batch(&images)
        }));
        let inference = started.elapsed();
        self.metrics.batch_size.observe(n as f64);
        self.metrics.inference_seconds.observe(inference.as_secs_f64());
        let result = match result {
            Ok(Ok(p)) if p.len() == n => Ok(p),
            Ok(Ok(p)) => Err(format!("{} predictions for {n} images", p.len())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the network panicked on this batch".to_string()),
        };
        match result {
            Ok(predictions) => {
                self.metrics.images.fetch_add(n as u64, Ordering::Relaxed);
                for ((image, prediction), (queued, reply)) in
                    images.into_iter().zip(predictions).zip(rest)
                {
                    let queue = started.saturating_duration_since(queued);
                    self.metrics.queue_seconds.observe(queue.as_secs_f64());
                    let scored = Scored { image, prediction, queue, inference, batch_size: n };
                    let _ = reply.send(Ok(scored));
                }
            }
            Err(e) => {
                tracing::error!(images = n, "scoring failed: {e}");
                for (_, reply) in rest {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Runs a full batch of grey images at the run's load size through the network once, so that the
/// first request does not pay for the first allocations.
fn warm_up(p: &Predictor, max_batch: usize) -> Result<(), String> {
    let side = p.config().load_size.max(1);
    let img =
        DynamicImage::ImageRgb8(image::RgbImage::from_pixel(side, side, image::Rgb([128; 3])));
    p.score_batch(&vec![img; max_batch.max(1)]).map(|_| ()).map_err(|e| format!("warming up: {e}"))
}
