//! Writes a run folder the way every ikd crate does: files written atomically into a staged
//! folder under a progress bar, then the folder committed in one rename.
//!
//! `cargo run -p ikd-io --example staged_run -- [out_dir]`

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let out = std::env::args().nth(1).map_or_else(|| tmp.path().join("run"), Into::into);
    let staged = ikd_io::StagedDir::new(&out)?;
    let files = ["config.json", "metrics.json", "summary.json"];
    let pb = ikd_io::progress::bar(files.len() as u64, "writing", false);
    for name in files {
        ikd_io::atomic_write_with(&staged.path().join(name), |f| f.write_all(b"{}\n"))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let run = staged.commit()?;
    for name in files {
        assert!(run.join(name).is_file());
    }
    println!("wrote {} files into {}", files.len(), run.display());
    Ok(())
}
