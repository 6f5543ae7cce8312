//! `ikd report`: a folder without a finished run is a clear error; real runs give a report folder.

use super::{dataset, ikd_err, ikd_ok, train_args};

#[test]
fn a_folder_without_a_finished_run_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // An unfinished run: a configuration but no student or metrics.
    std::fs::create_dir_all(runs.join("tile")).unwrap();
    std::fs::write(runs.join("tile").join("config.json"), "{}").unwrap();
    let out = tmp.path().join("report");
    let err = ikd_err(&["report", runs.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(err.contains(&format!("{} holds no finished run", runs.display())), "{err}");
    assert!(!out.exists(), "a report was written");
    let err = ikd_err(&["report", "no/such/runs", "--out", out.to_str().unwrap()]);
    assert!(err.starts_with("error: no/such/runs: "), "{err}");
}

#[test]
fn finished_runs_give_a_report_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let run = tmp.path().join("runs").join("tile");
    ikd_ok(&train_args(root.to_str().unwrap(), run.to_str().unwrap()));
    let out = tmp.path().join("reports").join("tile");
    // The run itself, and a paper's table that does not have the category.
    let paper = tmp.path().join("paper.csv");
    std::fs::write(&paper, "category,kind,ikd_pixel_auroc,ikd_au_pro\nbottle,object,99.3,95.1\n")
        .unwrap();
    let args = [
        "report",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--paper",
        paper.to_str().unwrap(),
        "--gallery",
        "1",
    ];
    let stdout = ikd_ok(&args);
    assert!(stdout.contains(&out.join("report.html").display().to_string()), "{stdout}");
    for f in ["report.html", "report.md", "results.csv", "results.json", "curves/tile_loss.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("tile,synthetic,"), "{csv}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("id=\"tile-margins-y-title\""), "no margins chart");
    // From the folder of runs, again: the report is replaced.
    ikd_ok(&["report", tmp.path().join("runs").to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(out.join("report.html").is_file());
    assert_eq!(std::fs::read_dir(tmp.path().join("reports")).unwrap().count(), 1);
    // A broken paper table is named.
    std::fs::write(&paper, "no table here\n").unwrap();
    let err = ikd_err(&args);
    assert!(err.contains("paper.csv: not the paper's table"), "{err}");
}
