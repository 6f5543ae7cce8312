//! The report of the two runs: its files, tables, charts and numbers; runs sharing a category;
//! and the errors, which name the folder or file and leave an existing report as it was.

use ikd_report::{find_runs, write_report, PaperTable, ReportError, ReportOptions};

use crate::{copy_dir, names, paper_csv, scratch, world, STEPS};

fn with_paper() -> ReportOptions {
    ReportOptions { paper: Some(PaperTable::load(&paper_csv()).unwrap()), gallery: 2 }
}

#[test]
fn the_report_has_every_file_table_and_chart() {
    let w = world();
    let parent = scratch("full");
    let out = parent.join("report");
    let runs = find_runs(&[&w.runs]).unwrap();
    assert_eq!(runs, [w.runs.join("carpet"), w.runs.join("grid")]);
    let r = write_report(&runs, &out, &with_paper()).unwrap();
    assert_eq!(names(&parent), ["report"], "the staging folder was left behind");

    let mut files = vec![
        "report.html".to_string(),
        "report.md".into(),
        "results.csv".into(),
        "results.json".into(),
    ];
    for c in ["carpet", "grid"] {
        for k in ["roc", "pro", "loss", "margins"] {
            files.push(format!("curves/{c}_{k}.png"));
        }
    }
    for f in &files {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // 2 worst images, and up to 2 best detections among the other defective ones.
    let panels: Vec<usize> =
        ["carpet", "grid"].iter().map(|c| names(&out.join("gallery").join(c)).len()).collect();
    assert!(panels.iter().all(|n| (3..=4).contains(n)), "{panels:?} gallery panels");

    // The numbers: the runs' metrics, the paper's values, the training log.
    let carpet = &r.categories[0];
    let metrics: ikd::TestMetrics =
        serde_json::from_str(&std::fs::read_to_string(w.runs.join("carpet/metrics.json")).unwrap())
            .unwrap();
    assert_eq!((carpet.name.as_str(), carpet.kind.as_str()), ("carpet", "texture"));
    assert!((carpet.pixel_auroc - 100.0 * metrics.pixel_auroc).abs() < 1e-9);
    assert_eq!(carpet.paper_pixel_auroc, Some(98.71));
    assert_eq!((carpet.train_steps, carpet.final_margins.len()), (STEPS, 2));
    let all = r.means.iter().find(|m| m.group == "all").unwrap();
    assert!((all.paper_pixel_auroc.unwrap() - (98.71 + 97.04) / 2.0).abs() < 1e-9);

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    let line = csv.lines().find(|l| l.starts_with("carpet,")).unwrap();
    assert!(line.starts_with("carpet,texture,") && line.contains(",98.7100,94.4900,"), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["categories"].as_array().unwrap().len(), 2);
    assert_eq!(json["random_teacher"], true);

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "| carpet | texture |",
        "| 98.71 |",
        // the engine writes the pixel ROC curve into metrics.json: the report draws that one
        "![carpet: pixel-level ROC](curves/carpet_roc.png)",
        "![grid: AHSM margins](curves/grid_margins.png)",
        "- **carpet: pixel-level ROC** — x: false positive rate 0.0–1.0; y: true positive rate \
         0.0–1.0; blue: pixel ROC, grey dashed: chance. pixel AUROC ",
        "- **carpet: training loss** — x: step 0–4; y: loss ",
        "orange: level 1, green: level 2. The hard-sample margin",
        "Teacher: random (seeded initialisation, seed ",
    ] {
        assert!(md.contains(needle), "`{needle}` missing from report.md:\n{md}");
    }

    // The HTML report: self-contained, four SVG charts per run with their axis text.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("src=\"curves/") && !html.contains("src=\"gallery/"));
    let embedded = html.matches("src=\"data:image/png;base64,").count();
    assert_eq!(embedded, panels.iter().sum::<usize>(), "gallery panels");
    assert_eq!(html.matches("<svg ").count(), 8);
    for (chart, x, y) in [
        ("roc", "False positive rate", "True positive rate"),
        ("pro", "False positive rate", "Per-region overlap"),
        ("loss", "Step", "Loss"),
        ("margins", "Step", "Margin"),
    ] {
        for c in ["carpet", "grid"] {
            let id = format!("{c}-{chart}");
            assert!(html.contains(&format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"{id}\""
            )));
            assert!(
                html.contains(&format!("id=\"{id}-x-title\""))
                    && html.contains(&format!(">{x}</text>"))
            );
            assert!(
                html.contains(&format!("id=\"{id}-y-title\""))
                    && html.contains(&format!(">{y}</text>"))
            );
        }
    }
    // The ROC chart's note is the area under its curve: the engine's pixel curve, whose area is
    // the run's pixel AUROC.
    assert!(
        html.contains(&format!(
            "pixel AUROC {:.1} % (the area under this curve)",
            carpet.pixel_auroc
        )),
        "the ROC curve's area is not the pixel AUROC"
    );
    let area: f64 =
        metrics.roc_curve.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
    assert!((area - metrics.pixel_auroc).abs() < 1e-3, "{area} vs {}", metrics.pixel_auroc);
    assert!(html.contains("<table id=\"results\">") && html.contains("<td>carpet</td>"));
    // the OK/NG rule of each run, from its metrics.json
    assert!(html.contains("<table id=\"decisions\">"));
    assert_eq!(carpet.image_threshold, metrics.image_threshold);
    assert!(carpet.image_threshold.is_some());
    let t = format!("{:.4}", carpet.image_threshold.unwrap());
    assert!(md.contains(&t), "the threshold {t} is in report.md");
    assert!(html.contains("<tr class=\"mean\"><td>mean all (2)</td>"));
}

#[test]
fn runs_sharing_a_category_get_names_and_files_of_their_own_without_the_paper() {
    let w = world();
    let dir = scratch("twice");
    copy_dir(&w.runs.join("carpet"), &dir.join("other").join("carpet"));
    let runs = find_runs(&[w.runs.clone(), dir.join("other").join("carpet"), w.runs.join("grid")])
        .unwrap();
    assert_eq!(runs.len(), 3, "grid is listed once: {runs:?}");
    let out = dir.join("report");
    let r = write_report(&runs, &out, &ReportOptions::default()).unwrap();
    let named: Vec<&str> = r.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(named, ["carpet (runs)", "grid", "carpet (other)"]);
    assert!(r.categories.iter().all(|c| c.paper_pixel_auroc.is_none() && c.kind == "other"));
    for f in
        ["curves/carpet__runs__roc.png", "curves/carpet__other__roc.png", "curves/grid_roc.png"]
    {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("<th>paper</th>"), "paper columns without a paper table");
    assert!(html.contains("<td>carpet (other)</td>"));
}

#[test]
fn errors_name_the_folder_or_file_and_leave_the_old_report() {
    let w = world();
    let dir = scratch("errors");
    let empty = dir.join("empty");
    std::fs::create_dir_all(empty.join("unfinished")).unwrap();
    let e = find_runs(&[&empty]).unwrap_err();
    assert!(matches!(e, ReportError::NoFinishedRun { .. }));
    assert!(
        e.to_string().starts_with(&format!("{} holds no finished run", empty.display())),
        "{e}"
    );
    let e = find_runs(&[dir.join("missing")]).unwrap_err();
    assert!(e.to_string().starts_with(&format!("{}: ", dir.join("missing").display())), "{e}");
    assert!(matches!(find_runs::<&str>(&[]), Err(ReportError::NoInput)));

    // A good report, then a failing one into the same folder: the good one stays.
    let out = dir.join("reports").join("r");
    write_report(&find_runs(&[&w.runs]).unwrap(), &out, &ReportOptions::default()).unwrap();
    let before = std::fs::read(out.join("report.html")).unwrap();
    let broken = dir.join("broken");
    copy_dir(&w.runs.join("grid"), &broken);
    std::fs::write(broken.join("metrics.json"), "{\"category\": 3}").unwrap();
    let e = write_report(&[w.runs.join("carpet"), broken.clone()], &out, &ReportOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains(&broken.join("metrics.json").display().to_string()), "{e}");
    assert!(e.to_string().contains("not ikd test metrics"), "{e}");
    assert_eq!(std::fs::read(out.join("report.html")).unwrap(), before);
    assert_eq!(names(&dir.join("reports")), ["r"]);
}

/// A run whose `metrics.json` holds the pixel-level ROC curve (`roc_curve`: `[[fpr, tpr], ...]`,
/// as the engine writes it) gets that curve drawn, in both documents, instead of the image-level
/// one.
#[test]
fn a_pixel_roc_curve_in_the_metrics_is_drawn() {
    let w = world();
    let dir = scratch("pixel-roc");
    let run = dir.join("runs").join("carpet");
    copy_dir(&w.runs.join("carpet"), &run);
    let metrics_path = run.join("metrics.json");
    let mut metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics_path).unwrap()).unwrap();
    let curve = [[0.0, 0.0], [0.1, 0.7], [0.35, 0.9], [1.0, 1.0]];
    metrics["roc_curve"] = serde_json::json!(curve);
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&metrics).unwrap()).unwrap();

    let out = dir.join("report");
    let r = write_report(&[run], &out, &ReportOptions::default()).unwrap();
    assert_eq!(r.categories[0].roc_level, "pixel");
    let pixel_auroc = r.categories[0].pixel_auroc;

    // Markdown: the PNG chart, titled and described as the pixel-level curve.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("![carpet: pixel-level ROC](curves/carpet_roc.png)"), "{md}");
    assert!(
        md.contains(&format!(
            "blue: pixel ROC, grey dashed: chance. pixel AUROC {pixel_auroc:.1} %"
        )),
        "{md}"
    );
    assert!(!md.contains("image-level ROC"), "{md}");
    // The PNG differs from the image-level chart of the same run without the curve.
    let plain = dir.join("plain");
    write_report(&[w.runs.join("carpet")], &plain, &ReportOptions::default()).unwrap();
    let png = std::fs::read(out.join("curves/carpet_roc.png")).unwrap();
    assert_ne!(png, std::fs::read(plain.join("curves/carpet_roc.png")).unwrap());

    // HTML: the inline SVG chart draws exactly the run's curve (FPR 0..1 over x 62..314, TPR
    // 0..1 over y 202..46).
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(">carpet: pixel-level ROC</text>") && html.contains(">pixel ROC</text>"));
    assert!(
        html.contains(
            "class=\"series-0\" stroke=\"#1f5bb4\" stroke-width=\"2\" \
             points=\"62.0,202.0 87.2,92.8 150.2,61.6 314.0,46.0\""
        ),
        "the pixel ROC curve is not drawn as given"
    );
}
