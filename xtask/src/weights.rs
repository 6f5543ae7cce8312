//! `cargo xtask weights`: timm's ImageNet weights of the teacher, fetched into the Hugging Face
//! cache (`HF_HOME`; `HF_HUB_OFFLINE=1` only looks in the cache; `HF_ENDPOINT` for a mirror).

use anyhow::{Context, Result};

/// Arguments of `cargo xtask weights`.
#[derive(Debug, Clone, clap::Args)]
pub struct WeightsArgs {
    /// timm HRNet names.
    #[arg(long = "backbone", default_value = "hrnet_w32", num_args = 1..)]
    pub backbones: Vec<String>,
}

/// `cargo xtask weights`: prints each file's path.
pub fn run(args: &WeightsArgs) -> Result<()> {
    for name in &args.backbones {
        let path = ikd_hrnet::fetch_timm_weights(name)
            .with_context(|| format!("fetching the weights of {name}"))?;
        println!("{name}: {}", path.display());
    }
    Ok(())
}
