//! ikd-data throughput.
//!
//! - `decode_resize`: decode a 1024×1024 RGB PNG (synthetic textures, compressed as MVTec's are)
//!   and bring it to the model's 256×256 input (PIL-compatible Lanczos resize + crop), one thread
//!   and all threads (rayon, as `Dataset::train` does).
//! - `synthetic`: generate one category of 64 training and 40 test images at 256×256, PNGs and
//!   masks written (rayon).
//!
//! Run: `cargo bench -p ikd-benches --bench data`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ikd_data::synthetic::{generate, render, SyntheticConfig, Texture};
use ikd_data::{load_image, Transform};
use rayon::prelude::*;

const N: usize = 16;

fn make_pngs(dir: &std::path::Path) -> Vec<PathBuf> {
    (0..N)
        .into_par_iter()
        .map(|i| {
            let texture = Texture::ALL[i % Texture::ALL.len()];
            let (img, _) = render(texture, 1024, 7, 0, None, i);
            let p = dir.join(format!("{i:03}.png"));
            img.save(&p).expect("write bench PNG");
            p
        })
        .collect()
}

fn decode_resize(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = make_pngs(dir.path());
    let t = Transform::paper();
    let one = |p: &PathBuf| {
        let img = load_image(p).expect("decode");
        t.prepare_image(&img).expect("resize")
    };
    let mut g = c.benchmark_group("decode_resize_1024_to_256");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("one_thread", |b| {
        b.iter(|| {
            for p in &paths {
                black_box(one(p));
            }
        })
    });
    g.bench_function(format!("rayon_{}_threads", rayon::current_num_threads()), |b| {
        b.iter(|| {
            paths.par_iter().for_each(|p| {
                black_box(one(p));
            })
        })
    });
    g.finish();
}

fn synthetic(c: &mut Criterion) {
    let cfg = SyntheticConfig {
        categories: vec![Texture::Carpet],
        image_size: 256,
        n_train: 64,
        n_test_good: 20,
        n_test_defect: 20,
        seed: 0,
    };
    let mut g = c.benchmark_group("synthetic_category_256");
    g.throughput(Throughput::Elements(104));
    g.sample_size(10);
    for texture in Texture::ALL {
        let cfg = SyntheticConfig { categories: vec![texture], ..cfg.clone() };
        g.bench_function(texture.name(), |b| {
            b.iter(|| {
                let dir = tempfile::tempdir().expect("tempdir");
                black_box(generate(&cfg, dir.path()).expect("generate"));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode_resize, synthetic);
criterion_main!(benches);
