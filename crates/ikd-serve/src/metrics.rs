//! The service's counters, written in Prometheus' text format (version 0.0.4) by hand: a few
//! counters, gauges and fixed-bucket histograms need no metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A histogram with fixed upper bounds (`le`), as Prometheus keeps them: cumulative counts are
/// made when written.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum: Mutex<f64>,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: Mutex::new(0.0),
        }
    }

    pub(crate) fn observe(&self, v: f64) {
        let i = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        *self.sum.lock().unwrap_or_else(|e| e.into_inner()) += v;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut acc = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in self.bounds.iter().enumerate() {
            acc += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {acc}");
        }
        acc += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {acc}");
        let sum = *self.sum.lock().unwrap_or_else(|e| e.into_inner());
        let braces = |l: &str| if l.is_empty() { String::new() } else { format!("{{{l}}}") };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {acc}", braces(labels));
    }
}

/// Seconds: from a fraction of a millisecond (a rejected request) to the longest timeouts.
const LATENCY_BOUNDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Images per batch.
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Picks one of a run's histograms.
type HistogramOf = fn(&RunMetrics) -> &Histogram;

/// One run's counters.
#[derive(Debug)]
pub(crate) struct RunMetrics {
    pub(crate) batch_size: Histogram,
    pub(crate) queue_seconds: Histogram,
    pub(crate) inference_seconds: Histogram,
    pub(crate) images: AtomicU64,
}

impl RunMetrics {
    pub(crate) fn new() -> Self {
        Self {
            batch_size: Histogram::new(BATCH_BOUNDS),
            queue_seconds: Histogram::new(LATENCY_BOUNDS),
            inference_seconds: Histogram::new(LATENCY_BOUNDS),
            images: AtomicU64::new(0),
        }
    }
}

/// The service's counters.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// HTTP responses by (route, status).
    responses: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Latency of score requests, from the first byte read to the response.
    score_seconds: Histogram,
    pub(crate) in_flight: AtomicU64,
    /// Responses to requests with an access token, by (token name, status).
    clients: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            responses: Mutex::new(BTreeMap::new()),
            score_seconds: Histogram::new(LATENCY_BOUNDS),
            in_flight: AtomicU64::new(0),
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts a response to a request that presented the token named `client`.
    pub(crate) fn client_response(&self, client: &str, status: u16) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        match clients.get_mut(&(client.to_string(), status)) {
            Some(n) => *n += 1,
            None => {
                clients.insert((client.to_string(), status), 1);
            }
        }
    }

    pub(crate) fn response(&self, route: &'static str, status: u16, seconds: f64) {
        *self
            .responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route, status))
            .or_default() += 1;
        if route == "score" {
            self.score_seconds.observe(seconds);
        }
    }

    /// The text of `GET /metrics`; `runs` gives each run's name, queue depth and counters.
    pub(crate) fn render<'a>(
        &self,
        runs: impl Iterator<Item = (&'a str, usize, bool, &'a RunMetrics)> + Clone,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP ikd_http_requests_total HTTP responses by route and status code.\n");
        out.push_str("# TYPE ikd_http_requests_total counter\n");
        for ((route, status), n) in self.responses.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "ikd_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if !clients.is_empty() {
            out.push_str(
                "# HELP ikd_http_requests_by_client_total Responses by access token name and status code.\n",
            );
            out.push_str("# TYPE ikd_http_requests_by_client_total counter\n");
            for ((client, status), n) in clients.iter() {
                let _ = writeln!(
                    out,
                    "ikd_http_requests_by_client_total{{client=\"{}\",status=\"{status}\"}} {n}",
                    escape(client)
                );
            }
        }
        drop(clients);
        out.push_str("# HELP ikd_http_requests_in_flight HTTP requests being served.\n");
        out.push_str("# TYPE ikd_http_requests_in_flight gauge\n");
        let _ =
            writeln!(out, "ikd_http_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        out.push_str(
            "# HELP ikd_score_request_duration_seconds Latency of score requests (any status).\n",
        );
        out.push_str("# TYPE ikd_score_request_duration_seconds histogram\n");
        self.score_seconds.write(&mut out, "ikd_score_request_duration_seconds", "");

        out.push_str("# HELP ikd_run_ready Whether the run is loaded and warmed up.\n");
        out.push_str("# TYPE ikd_run_ready gauge\n");
        for (name, _, ready, _) in runs.clone() {
            let _ = writeln!(out, "ikd_run_ready{{run=\"{}\"}} {}", escape(name), u8::from(ready));
        }
        out.push_str("# HELP ikd_queue_depth Images waiting for the run's next batch.\n");
        out.push_str("# TYPE ikd_queue_depth gauge\n");
        for (name, depth, _, _) in runs.clone() {
            let _ = writeln!(out, "ikd_queue_depth{{run=\"{}\"}} {depth}", escape(name));
        }
        out.push_str("# HELP ikd_images_scored_total Images scored.\n");
        out.push_str("# TYPE ikd_images_scored_total counter\n");
        for (name, _, _, m) in runs.clone() {
            let n = m.images.load(Ordering::Relaxed);
            let _ = writeln!(out, "ikd_images_scored_total{{run=\"{}\"}} {n}", escape(name));
        }
        let hists: [(&str, &str, HistogramOf); 3] = [
            ("ikd_batch_size", "Images per call of the network.", |m| &m.batch_size),
            ("ikd_queue_seconds", "Time an image waited for its batch.", |m| &m.queue_seconds),
            ("ikd_inference_seconds", "Time of one batch's scoring.", |m| &m.inference_seconds),
        ];
        for (metric, help, get) in hists {
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} histogram");
            for (name, _, _, m) in runs.clone() {
                get(m).write(&mut out, metric, &format!("run=\"{}\"", escape(name)));
            }
        }
        out
    }
}

/// A label value as the text format wants it.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.7, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "run=\"a\"");
        assert!(out.contains("x_bucket{run=\"a\",le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{run=\"a\",le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{run=\"a\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count{run=\"a\"} 4\n"), "{out}");
        assert!(out.contains("x_sum{run=\"a\"} 12.7\n"), "{out}");
    }
}
