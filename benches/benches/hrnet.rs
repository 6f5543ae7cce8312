//! Bench of the HRNet backbone (`ikd-hrnet`) on the CPU, random init:
//!
//! - `forward/<cfg>/<size>/b<batch>`: eval-mode `ikd_features` (the teacher's work per batch);
//! - `student_step/...`: train-mode `ikd_features` + a scalar loss + backward (hrnet_w18_small
//!   only, to keep the run short);
//! - `train_step/...`: one IKD-like step as the PyTorch reference measures it: teacher
//!   eval forward, student train forward, loss on levels 1 and 2, backward, AdamW update.
//!
//! Configurations: hrnet_w18_small at 128² batch 2 and hrnet_w32 at 256² batch 1 and 2.
//! Sample counts are minimal (w32 steps take seconds). Set `IKD_BENCH_QUICK=1` to run only
//! hrnet_w18_small.
//!
//! Run: `cargo bench -p ikd-benches --bench hrnet`

use std::hint::black_box;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ikd_hrnet::{trainable_vars, HrNet, HrNetConfig};

fn build(cfg: &HrNetConfig) -> (HrNet, VarMap) {
    let varmap = VarMap::new();
    let model = HrNet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))
        .expect("build model");
    (model, varmap)
}

/// Mean squared difference of levels 1 and 2 (a stand-in for the IKD loss).
fn loss(t: &[Tensor], s: &[Tensor]) -> Tensor {
    let l1 = (&t[1] - &s[1]).and_then(|d| d.sqr()?.mean_all()).expect("loss");
    let l2 = (&t[2] - &s[2]).and_then(|d| d.sqr()?.mean_all()).expect("loss");
    (l1 + (l2 * 2.).expect("loss")).expect("loss")
}

fn bench_config(c: &mut Criterion, name: &str, size: usize, batches: &[usize], student_step: bool) {
    let cfg = HrNetConfig::by_name(name).expect("config");
    let (teacher, _) = build(&cfg);
    let (student, student_vars) = build(&cfg);
    let mut group = c.benchmark_group(format!("hrnet/{name}/{size}"));
    group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(1));
    for &b in batches {
        let x = Tensor::randn(0f32, 1., (b, 3, size, size), &Device::Cpu).expect("input");
        group.bench_function(format!("forward/b{b}"), |bench| {
            bench.iter(|| black_box(teacher.ikd_features(&x, false).expect("forward")))
        });
    }
    let b = *batches.last().expect("batch");
    let x = Tensor::randn(0f32, 1., (b, 3, size, size), &Device::Cpu).expect("input");
    if student_step {
        group.bench_function(format!("student_step/b{b}"), |bench| {
            bench.iter(|| {
                let s = student.ikd_features(&x, true).expect("forward");
                let l = s
                    .iter()
                    .map(|f| f.sqr().and_then(|q| q.mean_all()))
                    .collect::<Result<Vec<_>, _>>();
                let l =
                    Tensor::stack(&l.expect("loss"), 0).and_then(|t| t.sum_all()).expect("loss");
                black_box(l.backward().expect("backward"))
            })
        });
    }
    {
        let params = ParamsAdamW { lr: 5e-5, ..Default::default() };
        let mut opt = AdamW::new(trainable_vars(&student_vars), params).expect("optimiser");
        group.bench_function(format!("train_step/b{b}"), |bench| {
            bench.iter(|| {
                let t = teacher.ikd_features(&x, false).expect("teacher");
                let t: Vec<Tensor> = t.iter().map(Tensor::detach).collect();
                let s = student.ikd_features(&x, true).expect("student");
                opt.backward_step(&loss(&t, &s)).expect("step");
            })
        });
    }
    group.finish();
}

fn hrnet(c: &mut Criterion) {
    bench_config(c, "hrnet_w18_small", 128, &[2], true);
    if std::env::var("IKD_BENCH_QUICK").is_err() {
        bench_config(c, "hrnet_w32", 256, &[1, 2], false);
    }
}

criterion_group!(benches, hrnet);
criterion_main!(benches);
