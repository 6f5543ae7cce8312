//! Bench of the HRNet backbone (`ikd-hrnet`) and the IKD training step on the CPU, random init,
//! f32 — the four cases of issue 8, measured against PyTorch 2.15 + timm on the same machine:
//!
//! - `hrnet/<cfg>/<size>/b2/eval_forward`: eval-mode `ikd_features` (the teacher's work per batch);
//! - `hrnet/<cfg>/<size>/b2/ikd_train_step`: one `ikd::Distiller::train_step` — teacher eval
//!   forward without a graph, student train forward, IKD loss (AHSM, pixel + context, levels 1
//!   and 2), backward, AdamW — exactly what `ikd train` runs per batch;
//! - the same two for hrnet_w18_small under `KernelPolicy::candle()` (`.../candle_ops/...`:
//!   candle's own ops, what the crate ran before the kernels);
//! - `kernels/<op>/<shape>/{ikd,candle}/{forward,forward_backward}`: the kernels of
//!   `ikd-kernels` one by one against candle's ops, on shapes HRNet-W32 runs at 256² (branch 0 is
//!   64×64), and each branch's 3×3 stride-1 convolution with and without Winograd.
//!
//! Configurations: hrnet_w18_small at 128² and hrnet_w32 at 256², batch 2. Set
//! `IKD_BENCH_QUICK=1` to skip hrnet_w32. The kernels' policy comes from the environment
//! (`KernelPolicy::from_env`: `IKD_CPU_KERNELS=0`, `IKD_WINOGRAD=0`, ... turn paths off), as in
//! the `ikd` binary.
//!
//! Run: `cargo bench -p ikd-benches --bench hrnet`; the same four cases in PyTorch + timm, to run
//! back to back with it: `python benches/pytorch/hrnet_bench.py` (setup in `benches/README.md`).

use std::hint::black_box;
use std::time::Duration;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ikd::{Backbone, Distiller, TeacherWeights};
use ikd_hrnet::{BatchNorm2d, HrNet};
use ikd_kernels::KernelPolicy;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn distiller(name: &str, policy: KernelPolicy) -> Distiller {
    let backbone = Backbone::by_name(name).expect("backbone");
    let adam = ikd::optim::AdamWParams { lr: 5e-5, ..Default::default() };
    let mut d = Distiller::new(
        &backbone,
        &TeacherWeights::Random,
        None,
        ikd_distill::IkdLossConfig::paper(),
        adam,
        0,
        &Device::Cpu,
    )
    .expect("distiller");
    d.set_kernel_policy(policy);
    d
}

fn teacher(name: &str, policy: KernelPolicy) -> HrNet {
    let cfg = ikd_hrnet::HrNetConfig::by_name(name).expect("config");
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    HrNet::new(&cfg, vb).expect("model").with_kernel_policy(policy)
}

/// The environment's policy (`on`) or candle's ops.
fn kernels_or_candle(on: bool) -> KernelPolicy {
    if on {
        KernelPolicy::from_env()
    } else {
        KernelPolicy::candle()
    }
}

fn bench_config(c: &mut Criterion, name: &str, size: usize, with_candle: bool) {
    let x = Tensor::randn(0f32, 1., (2, 3, size, size), &Device::Cpu).expect("input");
    let mut group = c.benchmark_group(format!("hrnet/{name}/{size}/b2"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500));
    let modes: &[bool] = if with_candle { &[true, false] } else { &[true] };
    for &on in modes {
        let policy = kernels_or_candle(on);
        let suffix = if on { "" } else { "candle_ops/" };
        let net = teacher(name, policy);
        group.bench_function(format!("{suffix}eval_forward"), |b| {
            b.iter(|| black_box(net.ikd_features(&x, false).expect("forward")))
        });
        let mut d = distiller(name, policy);
        group.bench_function(format!("{suffix}ikd_train_step"), |b| {
            b.iter(|| black_box(d.train_step(&x).expect("step")))
        });
    }
    group.finish();
}

fn input(dims: &[usize]) -> Var {
    Var::from_tensor(&Tensor::randn(0f32, 1., dims, &Device::Cpu).expect("randn")).expect("var")
}

fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernels");
    group.sample_size(20).warm_up_time(Duration::from_millis(300));
    // (name, N, C, H, O, k, stride, padding): HRNet-W32 shapes at 256² input
    let convs = [
        ("conv3x3_s1", 2, 32, 64, 32, 3, 1, 1),
        ("conv3x3_s2", 2, 32, 64, 64, 3, 2, 1),
        ("conv1x1", 2, 128, 32, 32, 1, 1, 0),
        ("conv1x1", 2, 64, 64, 256, 1, 1, 0),
    ];
    for (name, n, ch, h, o, k, s, p) in convs {
        let x = input(&[n, ch, h, h]);
        let w = input(&[o, ch, k, k]);
        let shape = format!("{n}x{ch}x{h}x{h}->{o}");
        for on in [true, false] {
            // candle's own conv2d (for 1×1 too, where the candle policy's fallback would take a
            // matrix product instead)
            let policy = KernelPolicy::from_env();
            let conv = |x: &Tensor, w: &Tensor| {
                if on {
                    ikd_kernels::conv2d(x, w, s, p, &policy)
                } else {
                    x.conv2d(w, p, s, 1, 1)
                }
            };
            let who = if on { "ikd" } else { "candle" };
            group.bench_function(format!("{name}/{shape}/{who}/forward"), |b| {
                b.iter(|| black_box(conv(&x, &w).expect("conv")))
            });
            group.bench_function(format!("{name}/{shape}/{who}/forward_backward"), |b| {
                b.iter(|| {
                    let y = conv(&x, &w).expect("conv");
                    black_box(y.sum_all().and_then(|l| l.backward()).expect("backward"))
                })
            });
        }
    }
    {
        let (n, ch, h) = (2, 32, 64);
        let x = input(&[n, ch, h, h]);
        let varmap = VarMap::new();
        let bn = BatchNorm2d::new(ch, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))
            .expect("bn");
        let shape = format!("{n}x{ch}x{h}x{h}");
        for on in [true, false] {
            let policy = kernels_or_candle(on);
            let who = if on { "ikd" } else { "candle" };
            group.bench_function(
                format!("batch_norm_relu_train/{shape}/{who}/forward_backward"),
                |b| {
                    b.iter(|| {
                        let y = bn.forward_relu_t(&x, true, true, &policy).expect("bn");
                        black_box(y.sum_all().and_then(|l| l.backward()).expect("backward"))
                    })
                },
            );
        }
    }
    // the 3×3 stride-1 convolution of each HRNet-W32 branch (256² input): Winograd against im2col
    for (ch, h) in [(32, 64), (64, 32), (128, 16), (256, 8)] {
        let x = input(&[2, ch, h, h]);
        let w = input(&[ch, ch, 3, 3]);
        for on in [true, false] {
            let env = KernelPolicy::from_env();
            let policy = KernelPolicy { winograd: on && env.winograd, ..env };
            let how = if on { "winograd" } else { "im2col" };
            group.bench_function(format!("conv3x3_s1_branch/2x{ch}x{h}x{h}/{how}/forward"), |b| {
                b.iter(|| black_box(ikd_kernels::conv2d(&x, &w, 1, 1, &policy).expect("conv")))
            });
            group.bench_function(
                format!("conv3x3_s1_branch/2x{ch}x{h}x{h}/{how}/forward_backward"),
                |b| {
                    b.iter(|| {
                        let y = ikd_kernels::conv2d(&x, &w, 1, 1, &policy).expect("conv");
                        black_box(y.sum_all().and_then(|l| l.backward()).expect("backward"))
                    })
                },
            );
        }
    }
    group.finish();
}

fn hrnet(c: &mut Criterion) {
    ikd_kernels::tune_process(); // as the `ikd` binary does
                                 // which code the figures below measure
    let (path, cpu) = (KernelPolicy::from_env().path(), ikd_kernels::cpu_model());
    println!("kernel path: {path} (candle_ops/: candle), CPU: {cpu}");
    bench_config(c, "hrnet_w18_small", 128, true);
    if std::env::var("IKD_BENCH_QUICK").is_err() {
        bench_config(c, "hrnet_w32", 256, false);
    }
    bench_kernels(c);
}

criterion_group!(benches, hrnet);
criterion_main!(benches);
