//! Exports a trained (and ideally tested) run to ONNX and prints what the file declares: its
//! inputs, outputs and the metadata a deployment reads to know which run it holds.
//!
//! `cargo run --release -p ikd-export --example export_run -- RUN OUT.onnx`
//! (`ikd export --run RUN --out OUT.onnx` does the same from the command line).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(run), Some(out)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: export_run RUN OUT.onnx (RUN: a folder made by `ikd run` or `ikd train`)"
        );
        std::process::exit(2);
    };
    let summary = ikd_export::export(&run, &out, &ikd_export::ExportOptions::default())?;
    println!(
        "{}: {} nodes, {} bytes, tested: {}",
        summary.out.display(),
        summary.nodes,
        summary.bytes,
        summary.tested
    );
    let info = ikd_export::read_model_info(&out)?;
    for (name, dims) in info.inputs.iter().chain(&info.outputs) {
        println!("  {name}: [{}]", dims.join(", "));
    }
    for key in ["backbone", "image_size", "teacher_sha256"] {
        println!("  {key} = {}", info.meta(key).unwrap_or("-"));
    }
    Ok(())
}
