//! The figures of each run: its charts (ROC, PRO, training loss, AHSM margins), written as PNG
//! files for the Markdown report and kept for the HTML one's inline SVG, and its gallery (the
//! worst and best test images with their heat maps, copied into the report).

use std::path::{Path, PathBuf};

use ikd::ImageResult;

use crate::chart::{Axis, Chart, Series, BLUE, GREEN, GREY, ORANGE};
use crate::doc::{ChartFigure, ImageFigure};
use crate::run::Run;
use crate::stage::{copy, write};
use crate::Result;

/// The report's figures of one run.
pub(crate) struct RunFigures {
    pub name: String,
    pub charts: Vec<ChartFigure>,
    pub worst: Vec<ImageFigure>,
    pub best: Vec<ImageFigure>,
}

/// Writes the charts (`curves/`) and gallery panels (`gallery/<run>/`) of `run` into the report
/// folder `dir`, `gallery` images in each half of the gallery; returns them for the documents.
pub(crate) fn write_run_figures(dir: &Path, run: &Run, gallery: usize) -> Result<RunFigures> {
    let charts = vec![roc_chart(run), pro_chart(run), loss_chart(run), margins_chart(run)];
    for c in &charts {
        write(&dir.join(&c.png), &crate::png::render(&c.chart)?)?;
    }
    let (worst, best) = pick_gallery(run, gallery);
    let copy_shots = |shots: &[Shot]| -> Result<Vec<ImageFigure>> {
        shots
            .iter()
            .map(|s| {
                let rel = format!("gallery/{}/{}_{}.png", run.slug, s.result.defect, s.result.stem);
                copy(&s.src, &dir.join(&rel))?;
                Ok(ImageFigure { rel, caption: s.caption() })
            })
            .collect()
    };
    let (worst, best) = (copy_shots(&worst)?, copy_shots(&best)?);
    if worst.is_empty() && gallery > 0 {
        tracing::warn!(
            "{}: no heat-map panels in {}/heatmaps: the gallery is empty",
            run.name,
            run.dir.display()
        );
    }
    Ok(RunFigures { name: run.name.clone(), charts, worst, best })
}

/// A gallery image: where it comes from, and what it shows.
struct Shot {
    result: ImageResult,
    /// Fraction of the other class this image's score is on the right side of.
    margin: f64,
    src: PathBuf,
}

impl Shot {
    fn caption(&self) -> String {
        format!(
            "{}/{} — {} — score {:.4}",
            self.result.defect,
            self.result.stem,
            if self.result.anomalous { "defective" } else { "defect-free" },
            self.result.score
        )
    }
}

/// The `n` worst test images (lowest margin: missed defects, false alarms) and the `n` best
/// defective ones (highest margin), each once.
fn pick_gallery(run: &Run, n: usize) -> (Vec<Shot>, Vec<Shot>) {
    let res = &run.metrics.image_results;
    let good: Vec<f64> = res.iter().filter(|r| !r.anomalous).map(|r| r.score).collect();
    let bad: Vec<f64> = res.iter().filter(|r| r.anomalous).map(|r| r.score).collect();
    let frac = |v: &[f64], f: &dyn Fn(f64) -> bool| {
        if v.is_empty() {
            1.0
        } else {
            v.iter().filter(|&&s| f(s)).count() as f64 / v.len() as f64
        }
    };
    let mut shots: Vec<Shot> = res
        .iter()
        .map(|r| {
            let margin = if r.anomalous {
                frac(&good, &|s| s < r.score)
            } else {
                frac(&bad, &|s| s > r.score)
            };
            let src = run.dir.join("heatmaps").join(&r.defect).join(format!("{}.png", r.stem));
            Shot { result: r.clone(), margin, src }
        })
        .filter(|s| s.src.is_file())
        .collect();
    // Worst first; among equals, the anomalous image with the lower score / good with the higher.
    let key = |s: &Shot| if s.result.anomalous { s.result.score } else { -s.result.score };
    shots.sort_by(|a, b| a.margin.total_cmp(&b.margin).then(key(a).total_cmp(&key(b))));
    let worst: Vec<Shot> = shots.drain(..n.min(shots.len())).collect();
    let mut best: Vec<Shot> = shots.into_iter().filter(|s| s.result.anomalous).collect();
    best.reverse();
    best.truncate(n);
    (worst, best)
}

/// The ROC chart: the pixel-level curve of `metrics.json` when it has one, else the image-level
/// curve of the test images' scores (from `ikd_metrics::roc_curve`).
fn roc_chart(run: &Run) -> ChartFigure {
    let (points, level, note) = match &run.pixel_roc {
        Some(c) => (
            c.clone(),
            "pixel",
            format!(
                "pixel AUROC {:.1} % (the area under this curve)",
                run.metrics.pixel_auroc * 100.0
            ),
        ),
        None => {
            let scores: Vec<f64> = run.metrics.image_results.iter().map(|r| r.score).collect();
            let labels: Vec<bool> = run.metrics.image_results.iter().map(|r| r.anomalous).collect();
            match ikd_metrics::roc_curve(&scores, &labels) {
                Ok(c) => (
                    c.points().collect(),
                    "image",
                    format!(
                        "Each test image scored by its map's maximum; image AUROC {:.1} % (the \
                         area under this curve)",
                        c.area() * 100.0
                    ),
                ),
                Err(e) => (Vec::new(), "image", format!("no ROC curve: {e}")),
            }
        }
    };
    let mut chance = Series::new("chance", vec![(0.0, 0.0), (1.0, 1.0)], GREY);
    chance.dashed = true;
    ChartFigure {
        chart: Chart {
            id: format!("{}-roc", run.slug),
            title: format!("{}: {level}-level ROC", run.name),
            x: Axis::fixed("False positive rate", 0.0, 1.0, 0.2),
            y: Axis::fixed("True positive rate", 0.0, 1.0, 0.2),
            series: vec![Series::new(&format!("{level} ROC"), points, BLUE), chance],
        },
        png: format!("curves/{}_roc.png", run.slug),
        note,
    }
}

fn pro_chart(run: &Run) -> ChartFigure {
    ChartFigure {
        chart: Chart {
            id: format!("{}-pro", run.slug),
            title: format!("{}: PRO curve", run.name),
            x: Axis::fixed("False positive rate", 0.0, 0.3, 0.05),
            y: Axis::fixed("Per-region overlap", 0.0, 1.0, 0.2),
            series: vec![Series::new("PRO", run.metrics.pro_curve.clone(), BLUE)],
        },
        png: format!("curves/{}_pro.png", run.slug),
        note: if run.metrics.pixel_level {
            format!(
                "AU-PRO {:.1} % (the area up to FPR 0.3, divided by 0.3)",
                run.metrics.au_pro * 100.0
            )
        } else {
            "No defective test image has a mask: image-level metrics only, no PRO curve.".into()
        },
    }
}

fn step_axis(run: &Run) -> Axis {
    let last = run.log.steps.iter().copied().max().unwrap_or(1) as f64;
    Axis::fitted("Step", [0.0, last])
}

fn loss_chart(run: &Run) -> ChartFigure {
    let log = &run.log;
    let points: Vec<(f64, f64)> =
        log.steps.iter().zip(&log.loss).map(|(&s, &l)| (s as f64, l)).collect();
    let note = match log.loss.last() {
        Some(l) => format!("{} optimiser steps; last loss {l:.4}", log.steps.len()),
        None => "the training log is empty".into(),
    };
    ChartFigure {
        chart: Chart {
            id: format!("{}-loss", run.slug),
            title: format!("{}: training loss", run.name),
            x: step_axis(run),
            y: Axis::fitted("Loss", log.loss.iter().copied()),
            series: vec![Series::new("total loss", points, BLUE)],
        },
        png: format!("curves/{}_loss.png", run.slug),
        note,
    }
}

fn margins_chart(run: &Run) -> ChartFigure {
    let log = &run.log;
    let levels = log.margins.iter().map(Vec::len).max().unwrap_or(0);
    let colors = [ORANGE, GREEN, BLUE, GREY];
    let series: Vec<Series> = (0..levels)
        .map(|i| {
            let name = match run.config.loss.levels.get(i) {
                Some(l) if run.config.loss.levels.len() == levels => format!("level {l}"),
                _ => format!("margin {}", i + 1),
            };
            let points = log
                .steps
                .iter()
                .zip(&log.margins)
                .filter_map(|(&s, m)| m.get(i).map(|&v| (s as f64, v)))
                .collect();
            Series::new(&name, points, colors[i % colors.len()])
        })
        .collect();
    ChartFigure {
        chart: Chart {
            id: format!("{}-margins", run.slug),
            title: format!("{}: AHSM margins", run.name),
            x: step_axis(run),
            y: Axis::fitted("Margin", log.margins.iter().flatten().copied()),
            series,
        },
        png: format!("curves/{}_margins.png", run.slug),
        note: "The hard-sample margin of each feature level after every step".into(),
    }
}
