//! Bench of the IKD loss (`ikd-distill`): forward + backward of one level at C = 64 and 128 on
//! 2×64×64 pixels, with 5% of the pixels kept by AHSM (paper config) and with 100% kept (mining
//! off), for the crate's C×C context-similarity formulation and for a naive transcription of the
//! published code (K×K Gram matrices), kept here for comparison.
//!
//! Besides criterion's times it prints, per configuration, the peak heap memory of one
//! forward + backward above what was allocated before it (counting global allocator).
//!
//! Run: `cargo bench -p ikd-benches --bench distill`

use std::hint::black_box;

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use ikd_distill::{l2_normalize, IkdLoss, IkdLossConfig};
use peak_alloc::PeakAlloc;

/// The system allocator, counting live and peak bytes (peak_alloc: the workspace keeps its own
/// unsafe code in ikd-kernels).
#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Peak heap bytes allocated by `f` on top of what was live before it.
fn peak_bytes<R>(f: impl FnOnce() -> R) -> usize {
    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let r = f();
    let peak = ALLOC.peak_usage();
    drop(r);
    peak.saturating_sub(base)
}

const N: usize = 2;
const H: usize = 64;
const W: usize = 64;

/// Teacher and student maps (N, C, 64, 64): the student is the teacher plus 1% noise, except at
/// every 20th pixel where it is the negated teacher (d ≈ 4). AHSM's margin then sits near
/// 0.49·4, so exactly those 5% of the pixels are kept.
fn inputs(c: usize) -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let t = Tensor::randn(0f32, 1.0, (N, c, H, W), &dev).unwrap();
    let noise = Tensor::randn(0f32, 0.01, (N, c, H, W), &dev).unwrap();
    let sign: Vec<f32> =
        (0..N * H * W).map(|p| if p.is_multiple_of(20) { -1.0 } else { 1.0 }).collect();
    let sign = Tensor::from_vec(sign, (N, 1, H, W), &dev).unwrap();
    let s = (t.broadcast_mul(&sign).unwrap() + noise).unwrap();
    (t, s)
}

fn one_level(cfg: IkdLossConfig) -> IkdLossConfig {
    IkdLossConfig { levels: vec![0], weights: vec![1.0], ..cfg }
}

/// The crate's loss (C×C context formulation): forward + backward; returns the kept count.
fn ours(cfg: &IkdLossConfig, t: &Tensor, s: &Var) -> usize {
    let mut loss = IkdLoss::new(cfg.clone()).unwrap();
    let out = loss.forward(std::slice::from_ref(t), std::slice::from_ref(s.as_tensor())).unwrap();
    let grads = out.total.backward().unwrap();
    black_box(grads.get(s.as_tensor()).unwrap());
    out.kept[0]
}

/// The published `calculate_loss` for one level, transcribed naively: gather the kept rows and
/// form the K×K Gram matrices. Forward + backward; returns the kept count.
fn naive(mining: bool, t: &Tensor, s: &Var) -> usize {
    let t_hat = l2_normalize(&t.detach()).unwrap();
    let s_hat = l2_normalize(s.as_tensor()).unwrap();
    let c = t.dims()[1];
    let k_all = N * H * W;
    let d = (&t_hat - &s_hat).unwrap().sqr().unwrap().sum(1).unwrap().flatten_all().unwrap();
    let dv = d.to_vec1::<f32>().unwrap();
    let mean = dv.iter().map(|&x| x as f64).sum::<f64>() / k_all as f64;
    let var = dv.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (k_all - 1) as f64;
    let margin = (0.99 * (mean as f32 as f64 + 2.0 * (var.sqrt() as f32 as f64))) as f32;
    let idx: Vec<u32> =
        (0..k_all as u32).filter(|&i| !mining || dv[i as usize] >= margin).collect();
    let k = idx.len();
    let idx = Tensor::from_vec(idx, k, &Device::Cpu).unwrap();
    let rows = |x: &Tensor| {
        x.permute((0, 2, 3, 1)).unwrap().reshape((k_all, c)).unwrap().index_select(&idx, 0).unwrap()
    };
    let (qt, qs) = (rows(&t_hat), rows(&s_hat));
    let pixel = d.index_select(&idx, 0).unwrap().mean_all().unwrap();
    let gt = qt.matmul(&qt.t().unwrap()).unwrap();
    let gs = qs.matmul(&qs.t().unwrap()).unwrap();
    let ctx = (gt - gs).unwrap().sqr().unwrap().mean_all().unwrap();
    let total = (pixel + ctx).unwrap();
    let grads = total.backward().unwrap();
    black_box(grads.get(s.as_tensor()).unwrap());
    k
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ikd_loss_fwd_bwd");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(3));
    for ch in [64usize, 128] {
        let (t, s) = inputs(ch);
        let s = Var::from_tensor(&s).unwrap();
        assert_eq!(s.dtype(), DType::F32);
        for (kept_name, cfg) in [
            ("5pct", one_level(IkdLossConfig::paper())),
            ("100pct", one_level(IkdLossConfig::no_mining())),
        ] {
            let mining = cfg.mining;
            // Peak memory of one run, measured once and only for benches that criterion runs
            // (a name filter skips the closures).
            let mut reported = false;
            group.bench_function(format!("cxc/C{ch}/{kept_name}"), |b| {
                if !reported {
                    reported = true;
                    let mut kept = 0;
                    let peak = peak_bytes(|| kept = ours(&cfg, &t, &s));
                    println!(
                        "peak heap cxc C={ch} kept={kept}/{} ({kept_name}): {:.1} MiB",
                        N * H * W,
                        mib(peak)
                    );
                }
                b.iter(|| ours(&cfg, &t, &s))
            });
            let mut reported = false;
            group.bench_function(format!("naive_kxk/C{ch}/{kept_name}"), |b| {
                if !reported {
                    reported = true;
                    let mut kept = 0;
                    let peak = peak_bytes(|| kept = naive(mining, &t, &s));
                    assert_eq!(kept, ours(&cfg, &t, &s), "both keep the same pixels");
                    println!(
                        "peak heap naive_kxk C={ch} kept={kept}/{} ({kept_name}): {:.1} MiB",
                        N * H * W,
                        mib(peak)
                    );
                }
                b.iter(|| naive(mining, &t, &s))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
