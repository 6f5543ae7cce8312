//! The settings of the `ikd` command, as [`clap`] argument groups that other tools (the
//! workspace's `cargo xtask`) flatten into their own commands.
//!
//! [`TrainSettings`] is the training recipe on the command line: every flag is optional, and
//! what is not given comes from a `--config` file (TOML; a run's `config.toml` is one) or else
//! from [`ikd::TrainConfig::default`], the paper's recipe. The paper's numbers are written once,
//! there; the help text shows them from it.
//!
//! ```
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     settings: ikd_cli::TrainSettings,
//! }
//! let cli = Cli::parse_from(["train", "--epochs", "10", "--beta", "3"]);
//! let config = cli.settings.resolve()?;
//! assert_eq!((config.epochs, config.loss.beta), (10, 3.0));
//! assert_eq!(config.lr, ikd::TrainConfig::default().lr); // not given: the paper's
//! # Ok::<(), anyhow::Error>(())
//! ```

mod data;
mod flags;
mod settings;
pub mod slurm;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

pub use data::DataSelection;
pub use settings::{flag_of, setting_as_flags, TrainSettings};

/// An error and its causes on one line, each said once: `outer: cause: root cause`, leaving out
/// a cause whose message the line already holds (many errors repeat their source's message in
/// their own, and printing the chain said it twice). An engine error naming a setting is said
/// with its flag ([`setting_as_flags`]); where another library names the setting at fault
/// (`invalid setting batch_size = 0`), the line ends with the flag that sets it:
/// `(flag: --batch-size)`. Both take the flag from one table, [`flag_of`].
///
/// ```
/// let io = std::io::Error::other("unexpected end of file");
/// let e = anyhow::Error::new(io).context("run/student.safetensors: unexpected end of file");
/// let e = e.context("loading the student");
/// assert_eq!(
///     ikd_cli::error_line(&e),
///     "loading the student: run/student.safetensors: unexpected end of file"
/// );
/// let e = ikd_data::DataError::Setting { name: "batch_size", value: "0".into(),
///     reason: "must be at least 1".into() };
/// assert_eq!(
///     ikd_cli::error_line(&anyhow::Error::new(e)),
///     "invalid setting batch_size = 0: must be at least 1 (flag: --batch-size)"
/// );
/// ```
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let msg = match cause.downcast_ref::<ikd::Error>().and_then(setting_as_flags) {
            Some(flagged) => flagged,
            None => cause.to_string(),
        };
        if msg.is_empty() || line.contains(&msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&msg);
    }
    if let Some(hint) = flags::hint(e) {
        line.push(' ');
        line.push_str(&hint);
    }
    line
}

/// Process exit status after SIGINT (128 + 2), as shells report an interrupted command.
pub const EXIT_INTERRUPTED: u8 = 130;

/// A flag that SIGINT and SIGTERM set, for [`ikd::TrainOptions::stop`]: training finishes its
/// step, writes a checkpoint and returns. A second signal while the flag is set exits at once
/// with [`EXIT_INTERRUPTED`]. Installed once per process; later calls return the same flag.
///
/// A process-wide setting, for binaries (`ikd`, `cargo xtask`) only.
pub fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(flag) = FLAG.get() {
        return Ok(flag.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // registered first, so it sees the flag as the earlier signal left it
        signal_hook::flag::register_conditional_shutdown(
            sig,
            EXIT_INTERRUPTED.into(),
            flag.clone(),
        )?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(FLAG.get_or_init(|| flag).clone())
}
