//! The training recipe: flags over a TOML file over the paper's defaults.

use clap::Parser;
use ikd::TrainConfig;
use ikd_cli::TrainSettings;

use crate::{ikd_err, train_args};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: TrainSettings,
}

fn settings(args: &[&str]) -> TrainSettings {
    Cli::parse_from(std::iter::once("train").chain(args.iter().copied())).settings
}

#[test]
fn flags_override_the_file_which_overrides_the_paper() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(
        &file,
        "backbone = \"hrnet_w18_small\"\nepochs = 7\nimage_size = 128\n\n[loss]\nbeta = 3.0\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let c = settings(&["--config", f, "--epochs", "9"]).resolve().unwrap();
    assert_eq!(c.epochs, 9, "the flag wins");
    assert_eq!((c.backbone.as_str(), c.loss.beta), ("hrnet_w18_small", 3.0), "the file's");
    assert_eq!(c.load_size, 128, "load size follows the image size unless given");
    let paper = TrainConfig::default();
    assert_eq!((c.lr, c.batch_size, c.loss.alpha), (paper.lr, paper.batch_size, paper.loss.alpha));
    // without a file: the paper's recipe, and --image-size alone sets the load size too
    let c = settings(&["--image-size", "64", "--gamma", "0", "--no-mining"]).resolve().unwrap();
    assert_eq!((c.image_size, c.load_size, c.epochs), (64, 64, paper.epochs));
    assert!(!c.loss.context && !c.loss.mining);
    assert_eq!(settings(&[]).resolve().unwrap(), paper);
}

#[test]
fn a_saved_run_config_is_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let saved = TrainConfig {
        category: "tile".into(),
        data_root: "data".into(),
        teacher_weights: ikd::TeacherWeights::File("w.safetensors".into()),
        max_steps: Some(3),
        ..TrainConfig::default()
    };
    let path = dir.path().join(ikd::files::CONFIG);
    saved.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("teacher_weights = \"w.safetensors\""), "{text}");
    let c = settings(&["--config", path.to_str().unwrap()]).resolve().unwrap();
    assert_eq!(c, saved);
}

#[test]
fn the_help_shows_the_papers_numbers() {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let help = cmd.render_help().to_string();
    for want in ["[default: 50]", "[default: 0.00005]", "[default: 0.01]", "[default: 1,2]"] {
        assert!(help.contains(want), "help lacks {want}:\n{help}");
    }
}

#[test]
fn a_config_file_with_an_unknown_setting_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(&file, "epoch = 100\n").unwrap();
    let out = dir.path().join("run");
    let mut args = train_args("data", out.to_str().unwrap());
    args.extend(["--config", file.to_str().unwrap()]);
    let err = ikd_err(&args);
    assert!(err.contains("run.toml") && err.contains("unknown field `epoch`"), "{err}");
    assert!(!out.exists(), "nothing written");
}
