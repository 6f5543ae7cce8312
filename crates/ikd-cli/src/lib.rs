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

mod settings;

pub use settings::{settings_over, TrainSettings};
