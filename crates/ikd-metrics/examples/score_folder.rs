//! Scoring a folder's worth of maps with two threads: each image of a folder is a raw
//! little-endian `f32` map `<name>.scores` with its mask `<name>.mask` (one byte per pixel), all
//! `W`×`H`; two threads each fill an [`Accumulator`] over half of the files, and the halves are
//! merged. Reading PNG or TIFF files is outside ikd-metrics: load maps however you like.
//!
//! Run: `cargo run -p ikd-metrics --example score_folder`

use std::error::Error;
use std::path::{Path, PathBuf};

use ikd_metrics::{Accumulator, IkdProConfig, Metrics, MetricsConfig};

const W: usize = 64;
const H: usize = 48;

fn load(scores: &Path) -> Result<(Vec<f32>, Vec<u8>), Box<dyn Error + Send + Sync>> {
    let bytes = std::fs::read(scores)?;
    let map = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let mask = std::fs::read(scores.with_extension("mask"))?;
    Ok((map, mask))
}

fn score_folder(dir: &Path) -> Result<Metrics, Box<dyn Error + Send + Sync>> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "scores"));
    files.sort(); // error messages name images by their index in this order

    let config = MetricsConfig {
        au_pro_limits: vec![0.05, 0.3, 1.0],
        ikd_pro: Some(IkdProConfig::default()),
        ..MetricsConfig::default()
    };
    let half = files.len().div_ceil(2);
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(half.max(1))
            .enumerate()
            .map(|(i, chunk)| {
                let config = config.clone();
                s.spawn(move || -> Result<Accumulator, Box<dyn Error + Send + Sync>> {
                    let mut acc = Accumulator::new(config)?.with_first_index(i * half);
                    for path in chunk {
                        let (map, mask) = load(path)?;
                        acc.update(&map, &mask, W, H)?;
                    }
                    Ok(acc)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker panicked")).collect::<Vec<_>>()
    });
    let mut total = Accumulator::new(config)?;
    for part in parts {
        total.merge(part?)?;
    }
    Ok(total.finish()?)
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    // A demo folder: 6 images, a rectangular defect in every other one.
    let dir = std::env::temp_dir().join(format!("ikd-metrics-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for i in 0..6_usize {
        let mut map = vec![0.0_f32; W * H];
        let mut mask = vec![0_u8; W * H];
        for (p, v) in map.iter_mut().enumerate() {
            *v = ((p * 7919 + i * 104_729) % 1000) as f32 / 2000.0; // background in [0, 0.5)
        }
        if i % 2 == 1 {
            for y in 10..20 {
                for x in 10 + i..30 + i {
                    mask[y * W + x] = 255;
                    map[y * W + x] += 0.3;
                }
            }
        }
        let bytes: Vec<u8> = map.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(format!("{i:03}.scores")), bytes)?;
        std::fs::write(dir.join(format!("{i:03}.mask")), mask)?;
    }

    let m = score_folder(&dir)?;
    println!("{}", serde_json::to_string_pretty(&m)?);
    assert_eq!((m.images, m.defective_images, m.regions), (6, 3, 3));
    assert!(m.pixel_auroc.unwrap() > 0.8);
    assert!(m.au_pro_at(0.3).unwrap() <= 1.0);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `cargo test` runs the example too (`test = true` in Cargo.toml).
#[test]
fn the_example_runs() {
    main().unwrap();
}
