//! `cargo xtask report RUNS_DIR`: the report of the finished runs in a folder.
//!
//! Writes `reports/<name>/`: `report.md`, a self-contained `report.html` (images embedded as
//! data URIs), `results.csv`, `results.json`, `curves/<category>_{roc,pro}.png` and
//! `gallery/<category>/*.png` (the worst and best test images with their heat maps). The folder
//! is built next to its destination and renamed into place, so a report is never half-written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use ikd::{files, ImageResult, LogEntry, TeacherIdentity, TestMetrics, TrainConfig};

use crate::paper::PaperTable;
use crate::plot::{render_png, roc_curve, CurvePlot};
use crate::util::{copy_atomic, utc_now, write_atomic, Machine};

/// Arguments of `cargo xtask report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Folder of run folders (one per category); those without `student.safetensors` and
    /// `metrics.json` are left out.
    pub runs_dir: PathBuf,
    /// Write the report here (default: `reports/<name of RUNS_DIR>` in the workspace).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The paper's table.
    #[arg(long, default_value_os_t = crate::paper::default_path())]
    pub paper: PathBuf,
    /// Images per category in each half of the gallery (worst, best).
    #[arg(long, default_value_t = 3)]
    pub gallery: usize,
}

/// `cargo xtask report`: returns the report folder.
pub fn run(args: &ReportArgs) -> Result<PathBuf> {
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let name =
                args.runs_dir.file_name().map(|n| n.to_string_lossy().into_owned()).with_context(
                    || {
                        format!(
                            "{} has no folder name to name the report after",
                            args.runs_dir.display()
                        )
                    },
                )?;
            crate::util::workspace_root().join("reports").join(name)
        }
    };
    write_report(&args.runs_dir, &out, &args.paper, args.gallery)?;
    println!("report: {}", out.join("report.html").display());
    Ok(out)
}

/// One category's line of the report (percentages for the metrics).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Category name.
    pub category: String,
    /// `texture` or `object` (MVTec AD), `synthetic`, or `other`.
    pub kind: String,
    /// Pixel AUROC (%).
    pub pixel_auroc: f64,
    /// AU-PRO up to FPR 0.3 (%).
    pub au_pro: f64,
    /// The paper's pixel AUROC (%), for MVTec AD categories.
    pub paper_pixel_auroc: Option<f64>,
    /// The paper's AU-PRO (%).
    pub paper_au_pro: Option<f64>,
    /// Ours minus the paper's (percentage points).
    pub diff_pixel_auroc: Option<f64>,
    /// Ours minus the paper's (percentage points).
    pub diff_au_pro: Option<f64>,
    /// PRO by IKD's published 200-threshold procedure (%).
    pub pro_ikd200: f64,
    /// Image AUROC (%).
    pub image_auroc: f64,
    /// Pixel average precision (%).
    pub pixel_ap: f64,
    /// Best pixel F1 (%).
    pub f1_max: f64,
    /// Optimiser steps (from the training log).
    pub train_steps: u64,
    /// Training seconds (from the training log).
    pub train_seconds: f64,
    /// Training images per second.
    pub train_images_per_s: f64,
    /// Test images.
    pub test_images: usize,
    /// Test images per second (inference).
    pub test_images_per_s: f64,
    /// `pixel` when the ROC curve is the pixel-level one from `metrics.json`, `image` when it is
    /// the image-level curve from the images' scores.
    pub roc_level: String,
}

/// A mean over a group of categories.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mean {
    /// `textures`, `objects` or `all`.
    pub group: String,
    /// Categories averaged.
    pub categories: usize,
    /// Mean pixel AUROC (%).
    pub pixel_auroc: f64,
    /// Mean AU-PRO (%).
    pub au_pro: f64,
    /// The paper's mean over the same categories, when it has them all.
    pub paper_pixel_auroc: Option<f64>,
    /// The paper's mean AU-PRO over the same categories.
    pub paper_au_pro: Option<f64>,
}

/// Everything in `results.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Results {
    /// When the report was written.
    pub generated: String,
    /// The runs folder.
    pub runs_dir: String,
    /// Per category.
    pub categories: Vec<Row>,
    /// Means over textures, objects and all.
    pub means: Vec<Mean>,
    /// Training settings: each setting with its value(s) and the categories that used them.
    pub settings: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// The teachers (source and SHA-256 of their weights, from each run's `teacher.json`) and
    /// the categories trained with each.
    pub teachers: BTreeMap<String, Vec<String>>,
    /// Whether some run was trained with a random teacher (its scores show the pipeline, not the
    /// method).
    pub random_teacher: bool,
    /// The machine that wrote the report.
    pub machine: Machine,
}

struct Run {
    config: TrainConfig,
    /// `None` for runs trained before runs recorded their teacher.
    teacher: Option<TeacherIdentity>,
    metrics: TestMetrics,
    pixel_roc: Option<Vec<(f64, f64)>>,
    dir: PathBuf,
}

fn load_run(dir: &Path) -> Result<Run> {
    let config = TrainConfig::load(&dir.join(files::CONFIG))?;
    let tpath = dir.join(files::TEACHER);
    let teacher = tpath.is_file().then(|| TeacherIdentity::load(&tpath)).transpose()?;
    let mpath = dir.join(files::METRICS);
    let text =
        std::fs::read_to_string(&mpath).with_context(|| format!("reading {}", mpath.display()))?;
    let metrics: TestMetrics = serde_json::from_str(&text)
        .with_context(|| format!("{} is not ikd test metrics", mpath.display()))?;
    // A pixel-level ROC curve, when the engine provides one (`roc_curve`: [[fpr, tpr], ...]).
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let pixel_roc = value
        .get("roc_curve")
        .and_then(|v| serde_json::from_value::<Vec<(f64, f64)>>(v.clone()).ok())
        .filter(|c| !c.is_empty());
    Ok(Run { config, teacher, metrics, pixel_roc, dir: dir.to_path_buf() })
}

/// Training steps and seconds from `train_log.jsonl`: every step's images over its throughput.
fn training_time(dir: &Path, batch: usize) -> Result<(u64, f64)> {
    let path = dir.join(files::TRAIN_LOG);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (mut steps, mut seconds) = (0u64, 0f64);
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let e: LogEntry = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a log entry", path.display(), i + 1))?;
        steps += 1;
        if e.images_per_s > 0.0 {
            seconds += batch as f64 / e.images_per_s;
        }
    }
    Ok((steps, seconds))
}

fn is_synthetic(config: &TrainConfig) -> bool {
    config.data_root.join(&config.category).join(ikd_data::synthetic::MARKER).is_file()
}

fn make_row(run: &Run, paper: &PaperTable) -> Result<Row> {
    let m = &run.metrics;
    let c = &run.config;
    let synthetic = is_synthetic(c);
    let published = if synthetic { None } else { paper.rows.get(&c.category) };
    let kind = match (synthetic, published) {
        (true, _) => "synthetic",
        (false, Some(p)) if p.texture => "texture",
        (false, Some(_)) => "object",
        (false, None) => "other",
    };
    let (steps, seconds) = training_time(&run.dir, c.batch_size)?;
    let pct = |x: f64| x * 100.0;
    Ok(Row {
        category: c.category.clone(),
        kind: kind.into(),
        pixel_auroc: pct(m.pixel_auroc),
        au_pro: pct(m.au_pro),
        paper_pixel_auroc: published.map(|p| p.pixel_auroc),
        paper_au_pro: published.map(|p| p.au_pro),
        diff_pixel_auroc: published.map(|p| pct(m.pixel_auroc) - p.pixel_auroc),
        diff_au_pro: published.map(|p| pct(m.au_pro) - p.au_pro),
        pro_ikd200: pct(m.pro_ikd200),
        image_auroc: pct(m.image_auroc),
        pixel_ap: pct(m.pixel_ap),
        f1_max: pct(m.f1_max),
        train_steps: steps,
        train_seconds: seconds,
        train_images_per_s: if seconds > 0.0 {
            steps as f64 * c.batch_size as f64 / seconds
        } else {
            0.0
        },
        test_images: m.images,
        test_images_per_s: m.images_per_s,
        roc_level: if run.pixel_roc.is_some() { "pixel" } else { "image" }.into(),
    })
}

fn means(rows: &[Row]) -> Vec<Mean> {
    let mut out = Vec::new();
    for group in ["textures", "objects", "all"] {
        let sel: Vec<&Row> = rows
            .iter()
            .filter(|r| match group {
                "textures" => r.kind == "texture",
                "objects" => r.kind == "object",
                _ => true,
            })
            .collect();
        if sel.is_empty() {
            continue;
        }
        let n = sel.len() as f64;
        let mean = |f: &dyn Fn(&Row) -> f64| sel.iter().map(|r| f(r)).sum::<f64>() / n;
        let paper_mean = |f: &dyn Fn(&Row) -> Option<f64>| -> Option<f64> {
            let v: Option<Vec<f64>> = sel.iter().map(|r| f(r)).collect();
            v.map(|v| v.iter().sum::<f64>() / n)
        };
        out.push(Mean {
            group: group.into(),
            categories: sel.len(),
            pixel_auroc: mean(&|r| r.pixel_auroc),
            au_pro: mean(&|r| r.au_pro),
            paper_pixel_auroc: paper_mean(&|r| r.paper_pixel_auroc),
            paper_au_pro: paper_mean(&|r| r.paper_au_pro),
        });
    }
    out
}

fn settings(runs: &[Run]) -> Result<BTreeMap<String, BTreeMap<String, Vec<String>>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in runs {
        let v = serde_json::to_value(&r.config)?;
        let Some(obj) = v.as_object() else { bail!("a run configuration is not a JSON object") };
        for (k, val) in obj {
            if k == "category" || k == "data_root" {
                continue;
            }
            let text = match val {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.entry(k.clone())
                .or_default()
                .entry(text)
                .or_default()
                .push(r.config.category.clone());
        }
    }
    Ok(out)
}

/// A gallery image: where it comes from, and what it shows.
struct Shot {
    result: ImageResult,
    /// Fraction of the other class this image's score is on the right side of.
    margin: f64,
    src: PathBuf,
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

fn f2(x: f64) -> String {
    format!("{x:.2}")
}

fn opt2(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{v:.2}"))
}

fn signed(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{v:+.2}"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn results_csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "category,kind,pixel_auroc,au_pro,paper_pixel_auroc,paper_au_pro,diff_pixel_auroc,diff_au_pro,pro_ikd200,image_auroc,pixel_ap,f1_max,train_steps,train_seconds,train_images_per_s,test_images,test_images_per_s\n",
    );
    let o = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.4}"));
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{:.4},{:.4},{},{},{},{},{:.4},{:.4},{:.4},{:.4},{},{:.2},{:.3},{},{:.3}",
            csv_field(&r.category),
            r.kind,
            r.pixel_auroc,
            r.au_pro,
            o(r.paper_pixel_auroc),
            o(r.paper_au_pro),
            o(r.diff_pixel_auroc),
            o(r.diff_au_pro),
            r.pro_ikd200,
            r.image_auroc,
            r.pixel_ap,
            r.f1_max,
            r.train_steps,
            r.train_seconds,
            r.train_images_per_s,
            r.test_images,
            r.test_images_per_s
        );
    }
    s
}

/// A figure of the report: a file in the report folder and its caption.
struct Figure {
    rel: String,
    caption: String,
}

struct CategoryFigures {
    category: String,
    roc: Figure,
    pro: Figure,
    worst: Vec<Figure>,
    best: Vec<Figure>,
}

fn shot_caption(s: &Shot) -> String {
    format!(
        "{}/{} — {} — score {:.4}",
        s.result.defect,
        s.result.stem,
        if s.result.anomalous { "defective" } else { "defect-free" },
        s.result.score
    )
}

/// Writes the report of the finished runs under `runs_dir` into `out`; returns the results.
pub fn write_report(
    runs_dir: &Path,
    out: &Path,
    paper_path: &Path,
    gallery: usize,
) -> Result<Results> {
    let paper = PaperTable::load(paper_path)?;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .with_context(|| format!("reading the runs folder {}", runs_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && crate::pipeline::is_finished(p))
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "{} holds no finished run (a folder with {} and {})",
            runs_dir.display(),
            files::STUDENT,
            files::METRICS
        );
    }
    let runs: Vec<Run> = dirs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    let rows: Vec<Row> = runs.iter().map(|r| make_row(r, &paper)).collect::<Result<_>>()?;
    let results = Results {
        generated: utc_now(),
        runs_dir: runs_dir.display().to_string(),
        means: means(&rows),
        categories: rows,
        settings: settings(&runs)?,
        teachers: teachers(&runs),
        random_teacher: runs.iter().any(|r| r.teacher.as_ref().is_some_and(|t| t.is_random())),
        machine: Machine::detect(),
    };

    // Build next to the destination, then swap it in.
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let stage = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let built = build(&stage, &runs, &results, gallery);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&stage);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("replacing the old report {}", out.display()))?;
    }
    std::fs::rename(&stage, out)
        .with_context(|| format!("moving the report into {}", out.display()))?;
    Ok(results)
}

fn build(dir: &Path, runs: &[Run], results: &Results, gallery: usize) -> Result<()> {
    let mut figs = Vec::new();
    for run in runs {
        let cat = &run.config.category;
        let (roc, level) = match &run.pixel_roc {
            Some(c) => (c.clone(), "pixel"),
            None => {
                let scores: Vec<f64> = run.metrics.image_results.iter().map(|r| r.score).collect();
                let labels: Vec<bool> =
                    run.metrics.image_results.iter().map(|r| r.anomalous).collect();
                (roc_curve(&scores, &labels).unwrap_or_default(), "image")
            }
        };
        let roc_rel = format!("curves/{cat}_roc.png");
        write_atomic(
            &dir.join(&roc_rel),
            &render_png(&CurvePlot { points: &roc, x_max: 1.0, diagonal: true })?,
        )?;
        let pro_rel = format!("curves/{cat}_pro.png");
        let pro_png =
            render_png(&CurvePlot { points: &run.metrics.pro_curve, x_max: 0.3, diagonal: false })?;
        write_atomic(&dir.join(&pro_rel), &pro_png)?;
        let (worst, best) = pick_gallery(run, gallery);
        let copy = |shots: &[Shot]| -> Result<Vec<Figure>> {
            shots
                .iter()
                .map(|s| {
                    let rel = format!("gallery/{cat}/{}_{}.png", s.result.defect, s.result.stem);
                    copy_atomic(&s.src, &dir.join(&rel))?;
                    Ok(Figure { rel, caption: shot_caption(s) })
                })
                .collect()
        };
        let (worst, best) = (copy(&worst)?, copy(&best)?);
        if worst.is_empty() {
            tracing::warn!(
                "{cat}: no heat-map panels in {}/heatmaps: the gallery is empty",
                run.dir.display()
            );
        }
        figs.push(CategoryFigures {
            category: cat.clone(),
            roc: Figure {
                rel: roc_rel,
                caption: format!("{cat}: {level}-level ROC (x: false-positive rate 0–1, y: true-positive rate 0–1)"),
            },
            pro: Figure {
                rel: pro_rel,
                caption: format!("{cat}: PRO curve (x: false-positive rate 0–0.3, y: per-region overlap 0–1)"),
            },
            worst,
            best,
        });
    }
    write_atomic(&dir.join("results.csv"), results_csv(&results.categories).as_bytes())?;
    write_atomic(&dir.join("results.json"), serde_json::to_string_pretty(results)?.as_bytes())?;
    write_atomic(&dir.join("report.md"), markdown(results, &figs).as_bytes())?;
    write_atomic(&dir.join("report.html"), html(dir, results, &figs)?.as_bytes())?;
    Ok(())
}

fn settings_lines(results: &Results) -> Vec<(String, String)> {
    results
        .settings
        .iter()
        .map(|(k, vals)| {
            let v = if vals.len() == 1 {
                vals.keys().next().cloned().unwrap_or_default()
            } else {
                vals.iter()
                    .map(|(v, cats)| format!("{v} ({})", cats.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            (k.clone(), v)
        })
        .collect()
}

/// Each teacher's description with the categories trained with it.
fn teachers(runs: &[Run]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in runs {
        let name = r.teacher.as_ref().map_or_else(
            || {
                format!(
                    "{} (not recorded by this run: {} missing)",
                    r.config.teacher_weights,
                    files::TEACHER
                )
            },
            TeacherIdentity::describe,
        );
        out.entry(name).or_default().push(r.config.category.clone());
    }
    out
}

/// The report's teacher paragraph (plain text): which teacher, and what a random one means.
fn teacher_text(r: &Results) -> Vec<String> {
    let mut lines: Vec<String> = if r.teachers.len() == 1 {
        r.teachers.keys().map(|t| format!("Teacher: {t}.")).collect()
    } else {
        r.teachers.iter().map(|(t, cats)| format!("Teacher of {}: {t}.", cats.join(", "))).collect()
    };
    if r.random_teacher {
        lines.push(RANDOM_TEACHER_NOTE.to_string());
    }
    lines
}

/// What the scores of a run with a random teacher mean, and how to get the real one.
pub const RANDOM_TEACHER_NOTE: &str = "A random teacher is not the paper's ImageNet-pretrained \
    HRNet: these scores show that the pipeline runs end to end, not what the method achieves. \
    With network access once, `cargo xtask weights --backbone hrnet_w18_small` (or \
    `cargo xtask demo --teacher hub`) fetches timm's ImageNet weights into the Hugging Face cache.";

/// Markdown's `code` spans of an escaped line as HTML `<code>` elements.
fn code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { format!("<code>{part}</code>") } else { part.to_string() })
        .collect()
}

fn machine_line(m: &Machine) -> String {
    let mem = m.memory_gib.map_or(String::new(), |g| format!(", {g:.0} GiB memory"));
    format!("{} — {} logical cores{mem}, {}", m.cpu, m.cores, m.os)
}

fn markdown(r: &Results, figs: &[CategoryFigures]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# IKD report\n\nGenerated {} from `{}`.\n", r.generated, r.runs_dir);
    for line in teacher_text(r) {
        let _ = writeln!(s, "{line}\n");
    }
    let _ = writeln!(
        s,
        "Pixel AUROC and AU-PRO (FPR ≤ 0.3) in %, next to the values published in Cao et al. 2022 (Tables 1 and 2); Δ = ours − paper. Synthetic categories have no published value (—).\n"
    );
    s.push_str(
        "| category | kind | pixel AUROC | paper | Δ | AU-PRO | paper | Δ | image AUROC |\n",
    );
    s.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for x in &r.categories {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.category,
            x.kind,
            f2(x.pixel_auroc),
            opt2(x.paper_pixel_auroc),
            signed(x.diff_pixel_auroc),
            f2(x.au_pro),
            opt2(x.paper_au_pro),
            signed(x.diff_au_pro),
            f2(x.image_auroc)
        );
    }
    for m in &r.means {
        let d = |a: f64, b: Option<f64>| signed(b.map(|b| a - b));
        let _ = writeln!(
            s,
            "| **mean {}** ({}) | | {} | {} | {} | {} | {} | {} | |",
            m.group,
            m.categories,
            f2(m.pixel_auroc),
            opt2(m.paper_pixel_auroc),
            d(m.pixel_auroc, m.paper_pixel_auroc),
            f2(m.au_pro),
            opt2(m.paper_au_pro),
            d(m.au_pro, m.paper_au_pro)
        );
    }
    s.push_str("\n## Time\n\n| category | steps | training s | training images/s | test images | test images/s |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for x in &r.categories {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.2} | {} | {:.2} |",
            x.category,
            x.train_steps,
            x.train_seconds,
            x.train_images_per_s,
            x.test_images,
            x.test_images_per_s
        );
    }
    s.push_str("\n## Settings\n\n| setting | value |\n| --- | --- |\n");
    for (k, v) in settings_lines(r) {
        let _ = writeln!(s, "| {k} | `{}` |", v.replace('|', "\\|"));
    }
    let _ = writeln!(s, "\n## Machine\n\n{}\n", machine_line(&r.machine));
    s.push_str("## Curves\n\nROC: x false-positive rate 0–1, y true-positive rate 0–1 (grey: chance). PRO: x false-positive rate 0–0.3, y per-region overlap 0–1. Grid lines every fifth.\n\n");
    for f in figs {
        let _ = writeln!(
            s,
            "### {}\n\n![{}]({}) ![{}]({})\n",
            f.category, f.roc.caption, f.roc.rel, f.pro.caption, f.pro.rel
        );
    }
    s.push_str("## Gallery\n\nEach panel: the test image, its anomaly heat map, the ground truth outlined. Worst: missed defects and false alarms (images whose score is on the wrong side of most of the other class); best: the clearest detections.\n\n");
    for f in figs {
        let _ = writeln!(s, "### {}\n\nWorst:\n", f.category);
        for g in &f.worst {
            let _ = writeln!(s, "![{0}]({1})  \n{0}\n", g.caption, g.rel);
        }
        s.push_str("Best:\n\n");
        for g in &f.best {
            let _ = writeln!(s, "![{0}]({1})  \n{0}\n", g.caption, g.rel);
        }
    }
    s
}

fn data_uri(dir: &Path, rel: &str) -> Result<String> {
    let path = dir.join(rel);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

const CSS: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px}\
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.mean td{font-weight:bold;background:#fafafa}.pos{color:#1a7f37}.neg{color:#c62828}\
figure{display:inline-block;margin:6px;vertical-align:top}figcaption{font-size:12px}\
figure.curve figcaption{width:280px}figure.shot figcaption{max-width:480px}\
img.curve{border:1px solid #ddd;width:280px}img.shot{height:150px;max-width:520px;border:1px solid #ddd}";

fn diff_cell(d: Option<f64>) -> String {
    match d {
        None => "<td class=\"n\">—</td>".into(),
        Some(v) => format!("<td class=\"n {}\">{v:+.2}</td>", if v >= 0.0 { "pos" } else { "neg" }),
    }
}

fn figure(dir: &Path, f: &Figure, class: &str) -> Result<String> {
    Ok(format!(
        "<figure class=\"{class}\"><img class=\"{class}\" alt=\"{0}\" src=\"{1}\"><figcaption>{0}</figcaption></figure>",
        esc(&f.caption),
        data_uri(dir, &f.rel)?
    ))
}

fn html(dir: &Path, r: &Results, figs: &[CategoryFigures]) -> Result<String> {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>IKD report</title><style>{CSS}</style></head><body>\n<h1>IKD report</h1>\n<p>Generated {} from <code>{}</code>.</p>\n",
        esc(&r.generated),
        esc(&r.runs_dir)
    );
    for (i, line) in teacher_text(r).iter().enumerate() {
        let id = if i == 0 { " id=\"teacher\"" } else { "" };
        let _ = writeln!(s, "<p{id}>{}</p>", code_spans(&esc(line)));
    }
    s.push_str("<h2>Results</h2><p>Pixel AUROC and AU-PRO (FPR ≤ 0.3) in %, next to the values published in Cao et al. 2022 (Tables 1 and 2); Δ = ours − paper. Synthetic categories have no published value (—).</p>\n");
    s.push_str("<table id=\"results\"><thead><tr><th>category</th><th>kind</th><th>pixel AUROC</th><th>paper</th><th>Δ</th><th>AU-PRO</th><th>paper</th><th>Δ</th><th>image AUROC</th></tr></thead><tbody>\n");
    for x in &r.categories {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>{}<td class=\"n\">{}</td><td class=\"n\">{}</td>{}<td class=\"n\">{}</td></tr>",
            esc(&x.category),
            esc(&x.kind),
            f2(x.pixel_auroc),
            opt2(x.paper_pixel_auroc),
            diff_cell(x.diff_pixel_auroc),
            f2(x.au_pro),
            opt2(x.paper_au_pro),
            diff_cell(x.diff_au_pro),
            f2(x.image_auroc)
        );
    }
    for m in &r.means {
        let _ = writeln!(
            s,
            "<tr class=\"mean\"><td>mean {} ({})</td><td></td><td class=\"n\">{}</td><td class=\"n\">{}</td>{}<td class=\"n\">{}</td><td class=\"n\">{}</td>{}<td></td></tr>",
            m.group,
            m.categories,
            f2(m.pixel_auroc),
            opt2(m.paper_pixel_auroc),
            diff_cell(m.paper_pixel_auroc.map(|p| m.pixel_auroc - p)),
            f2(m.au_pro),
            opt2(m.paper_au_pro),
            diff_cell(m.paper_au_pro.map(|p| m.au_pro - p))
        );
    }
    s.push_str("</tbody></table>\n<h2>Time</h2><table id=\"time\"><thead><tr><th>category</th><th>steps</th><th>training s</th><th>training images/s</th><th>test images</th><th>test images/s</th></tr></thead><tbody>\n");
    for x in &r.categories {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.2}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td></tr>",
            esc(&x.category),
            x.train_steps,
            x.train_seconds,
            x.train_images_per_s,
            x.test_images,
            x.test_images_per_s
        );
    }
    s.push_str("</tbody></table>\n<h2>Settings</h2><table id=\"settings\"><tbody>\n");
    for (k, v) in settings_lines(r) {
        let _ = writeln!(s, "<tr><td>{}</td><td><code>{}</code></td></tr>", esc(&k), esc(&v));
    }
    let _ =
        writeln!(s, "</tbody></table>\n<h2>Machine</h2><p>{}</p>", esc(&machine_line(&r.machine)));
    s.push_str("<h2>Curves</h2><p>ROC: x false-positive rate 0–1, y true-positive rate 0–1 (grey: chance). PRO: x false-positive rate 0–0.3, y per-region overlap 0–1. Grid lines every fifth.</p>\n");
    for f in figs {
        let _ = writeln!(
            s,
            "<h3>{}</h3><div class=\"curves\">{}{}</div>",
            esc(&f.category),
            figure(dir, &f.roc, "curve")?,
            figure(dir, &f.pro, "curve")?
        );
    }
    s.push_str("<h2>Gallery</h2><p>Each panel: the test image, its anomaly heat map, the ground truth outlined. Worst: missed defects and false alarms; best: the clearest detections.</p>\n");
    for f in figs {
        let _ = writeln!(s, "<h3>{}</h3><h4>Worst</h4><div class=\"gallery\">", esc(&f.category));
        for g in &f.worst {
            s.push_str(&figure(dir, g, "shot")?);
        }
        s.push_str("</div><h4>Best</h4><div class=\"gallery\">");
        for g in &f.best {
            s.push_str(&figure(dir, g, "shot")?);
        }
        s.push_str("</div>\n");
    }
    s.push_str("</body></html>\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(category: &str, kind: &str, auroc: f64, paper: Option<f64>) -> Row {
        Row {
            category: category.into(),
            kind: kind.into(),
            pixel_auroc: auroc,
            au_pro: auroc - 5.0,
            paper_pixel_auroc: paper,
            paper_au_pro: paper.map(|p| p - 5.0),
            diff_pixel_auroc: paper.map(|p| auroc - p),
            diff_au_pro: paper.map(|p| auroc - p),
            pro_ikd200: 0.0,
            image_auroc: 0.0,
            pixel_ap: 0.0,
            f1_max: 0.0,
            train_steps: 1,
            train_seconds: 1.0,
            train_images_per_s: 2.0,
            test_images: 4,
            test_images_per_s: 1.0,
            roc_level: "image".into(),
        }
    }

    #[test]
    fn code_spans_become_code_elements() {
        assert_eq!(code_spans("run `a b` or `c`."), "run <code>a b</code> or <code>c</code>.");
        assert_eq!(code_spans("no code"), "no code");
    }

    #[test]
    fn means_cover_textures_objects_and_all() {
        let rows =
            [row("carpet", "texture", 90.0, Some(98.0)), row("bottle", "object", 80.0, Some(99.0))];
        let m = means(&rows);
        assert_eq!(
            m.iter().map(|m| m.group.as_str()).collect::<Vec<_>>(),
            ["textures", "objects", "all"]
        );
        assert_eq!(m[2].pixel_auroc, 85.0);
        assert_eq!(m[2].paper_pixel_auroc, Some(98.5));
        let synthetic =
            [row("carpet", "synthetic", 70.0, None), row("wood", "synthetic", 60.0, None)];
        let m = means(&synthetic);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].pixel_auroc, m[0].paper_pixel_auroc), (65.0, None));
    }

    #[test]
    fn csv_quotes_and_leaves_missing_values_empty() {
        let csv = results_csv(&[row("a,b", "synthetic", 70.0, None)]);
        let line = csv.lines().nth(1).unwrap();
        assert!(line.starts_with("\"a,b\",synthetic,70.0000,65.0000,,,,,"), "{line}");
        assert_eq!(csv.lines().next().unwrap().split(',').count(), line.split(',').count() - 1);
    }
}
