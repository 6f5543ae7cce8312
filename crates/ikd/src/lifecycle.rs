//! [`run`]: the whole life of a run in one call — the run folder says what it needs next
//! ([`RunDir::next_step`]) and that is done: start, clear a start that never checkpointed and
//! start again, resume, test, or nothing. `ikd run`, `cargo xtask reproduce` and the SLURM job
//! script all go through it, so a run interrupted in any way is continued by running it again.

use std::path::Path;

use crate::{
    test_run, train, NextStep, Result, RunDir, TestMetrics, TestOptions, TrainConfig, TrainOptions,
    TrainSummary,
};

/// Options of [`run`]: those of its training and of its test.
///
/// ```
/// let o = ikd::RunOptions::default();
/// assert!(!o.train.resume && o.test.heatmaps);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Training's options (`resume` is not read: the run folder decides).
    pub train: TrainOptions,
    /// The test's options (`device`: the run's, as given to [`run`], unless set).
    pub test: TestOptions,
}

/// What [`run`] found and did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// What the run folder needed when [`run`] was called.
    pub found: NextStep,
    /// This call's training, when it trained.
    pub training: Option<TrainSummary>,
    /// This call's test, when it tested.
    pub metrics: Option<TestMetrics>,
}

impl RunReport {
    /// Whether the run is finished (trained and tested) now.
    pub fn finished(&self) -> bool {
        self.found == NextStep::Nothing || self.metrics.is_some()
    }

    /// Whether training was stopped by [`TrainOptions::stop`] (a checkpoint was written).
    pub fn interrupted(&self) -> bool {
        self.training.as_ref().is_some_and(|t| t.interrupted)
    }
}

/// Takes the run in `run_dir` one call further towards a tested run with the settings
/// `config`: what the run folder needs next ([`RunDir::next_step`]) is done, and training
/// goes on into the test. Run again after any interruption (a signal, `max_steps`, a killed
/// process, a failed start) it continues, to the same student as an uninterrupted run; run
/// after the test it does nothing ([`RunReport::found`] is [`NextStep::Nothing`]). A run
/// folder holding a run with other settings is an error naming them
/// ([`RunDir::settings_for`]; the device and `max_steps` may differ).
///
/// ```no_run
/// let config = ikd::TrainConfig { data_root: "mvtec".into(), category: "bottle".into(), ..Default::default() };
/// let report = ikd::run(&config, "runs/bottle".as_ref(), &ikd::RunOptions::default())?;
/// match (&report.found, &report.metrics) {
///     (ikd::NextStep::Nothing, _) => println!("finished before: nothing to do"),
///     (_, Some(m)) => println!("pixel AUROC {:.4}", m.pixel_auroc),
///     (_, None) => println!("stopped before the end: run it again to continue"),
/// }
/// # Ok::<(), ikd::Error>(())
/// ```
pub fn run(config: &TrainConfig, run_dir: &Path, opts: &RunOptions) -> Result<RunReport> {
    let dir = RunDir::new(run_dir);
    let found = dir.next_step();
    if found != NextStep::Start {
        dir.settings_for(config)?;
    }
    let mut report = RunReport { found, training: None, metrics: None };
    match found {
        NextStep::Nothing => return Ok(report),
        NextStep::Restart => dir.clear_start()?,
        _ => {}
    }
    if matches!(found, NextStep::Start | NextStep::Restart) {
        // the test after training would refuse a partial set of masks: say so before training
        let masks = if opts.test.allow_missing_masks {
            ikd_data::MaskPolicy::AllowMissing
        } else {
            ikd_data::MaskPolicy::AllOrNone
        };
        config.open_category(None, masks)?;
    }
    if found != NextStep::Test {
        let resume = found == NextStep::Resume;
        let summary = train(config, run_dir, TrainOptions { resume, ..opts.train.clone() })?;
        let finished = summary.finished;
        report.training = Some(summary);
        if !finished {
            return Ok(report);
        }
    }
    let device = opts.test.device.clone().or_else(|| Some(config.device.clone()));
    report.metrics = Some(test_run(run_dir, &TestOptions { device, ..opts.test.clone() })?);
    Ok(report)
}
