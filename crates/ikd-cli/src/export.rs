//! `ikd export`: a finished run as one ONNX graph (see the `ikd-export` crate).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Arguments of `ikd export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The finished run's folder.
    #[arg(long)]
    run: PathBuf,
    /// The ONNX file to write (atomically: a failed export leaves none).
    #[arg(long)]
    out: PathBuf,
    /// ONNX opset, 13 to 21.
    #[arg(long, default_value_t = ikd_export::DEFAULT_OPSET,
          value_parser = clap::value_parser!(i64)
              .range(*ikd_export::OPSETS.start()..=*ikd_export::OPSETS.end()))]
    opset: i64,
    /// Images per batch: a number, or `dynamic`.
    #[arg(long, default_value = "dynamic")]
    batch: ikd_export::Batch,
    /// Input size HxW (multiples of 32), or `dynamic`.
    #[arg(long, default_value = "dynamic")]
    size: ikd_export::Size,
}

/// Runs `ikd export`.
pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let opts = ikd_export::ExportOptions { opset: args.opset, batch: args.batch, size: args.size };
    let s = ikd_export::export(&args.run, &args.out, &opts)?;
    println!(
        "{}: {:.1} MB, {} nodes, outputs {}{}",
        s.out.display(),
        s.bytes as f64 / 1e6,
        s.nodes,
        s.outputs.join(", "),
        if s.tested {
            ""
        } else {
            " (the run was never tested: no thresholds, so no decision outputs)"
        }
    );
    Ok(ExitCode::SUCCESS)
}
