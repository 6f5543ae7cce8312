//! Writes a synthetic dataset in MVTec AD layout and prints what it wrote.
//!
//! `cargo run --release -p ikd-data --example synthetic -- <out_dir> [image_size] [seed]`

use std::time::Instant;

use ikd_data::synthetic::{generate, SyntheticConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "data/synthetic".into());
    let image_size = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let cfg = SyntheticConfig { image_size, seed, ..SyntheticConfig::default() };
    let start = Instant::now();
    let made = generate(&cfg, &out)?;
    for c in &made {
        println!(
            "{}: {} train, {} good test, {} defective test -> {}",
            c.name,
            c.counts.train,
            c.counts.test_good,
            c.counts.test_defect,
            c.dir.display()
        );
    }
    println!("{:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}
