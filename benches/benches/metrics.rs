//! ikd-metrics on a category-sized workload: 100 anomaly maps of 1024×1024 (104.9 M pixels), an
//! elliptical defect in every other one, every score a random `f32` (so nearly every pixel is its
//! own threshold). Measures pixel AUROC + AU-PRO (FPR 0.3) together, and all metrics; prints the
//! process's peak resident memory (VmHWM, input maps included) at the end.
//!
//! Run: `cargo bench -p ikd-benches --bench metrics`

use criterion::Criterion;
use ikd_metrics::{evaluate, CurveDetail, IkdProConfig, MetricsConfig, Sample};

const MAPS: usize = 100;
const SIDE: usize = 1024;

/// xorshift64*: a small seeded generator, enough for synthetic maps.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1_u64 << 24) as f32
    }
}

/// Maps and masks: background scores in [0, 0.6), defect scores in [0.3, 1.0), so the classes
/// overlap; one random ellipse (semi-axes 10..110 px, any orientation) in every other image.
fn workload() -> (Vec<Vec<f32>>, Vec<Vec<u8>>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut maps = Vec::with_capacity(MAPS);
    let mut masks = Vec::with_capacity(MAPS);
    for i in 0..MAPS {
        let mut map: Vec<f32> = (0..SIDE * SIDE).map(|_| 0.6 * rng.unit()).collect();
        let mut mask = vec![0_u8; SIDE * SIDE];
        if i % 2 == 1 {
            let (cx, cy) = (100.0 + 824.0 * rng.unit(), 100.0 + 824.0 * rng.unit());
            let (a, b) = (10.0 + 100.0 * rng.unit(), 10.0 + 100.0 * rng.unit());
            let t = std::f32::consts::PI * rng.unit();
            let (sin, cos) = t.sin_cos();
            for y in 0..SIDE {
                for x in 0..SIDE {
                    let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                    let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
                    if (u / a).powi(2) + (v / b).powi(2) <= 1.0 {
                        mask[y * SIDE + x] = 255;
                        map[y * SIDE + x] = 0.3 + 0.7 * rng.unit();
                    }
                }
            }
        }
        maps.push(map);
        masks.push(mask);
    }
    (maps, masks)
}

/// User + system CPU seconds of the whole process so far.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let (maps, masks) = workload();
    let samples: Vec<Sample<'_>> =
        maps.iter().zip(&masks).map(|(s, m)| Sample::new(s, m, SIDE, SIDE)).collect();
    let input_mb = (MAPS * SIDE * SIDE * 5) as f64 / (1 << 20) as f64;
    let before = peak_rss_mb().unwrap_or(f64::NAN);

    let auroc_pro = MetricsConfig {
        pixel_auroc: true,
        au_pro_limits: vec![0.3],
        pro_curve: CurveDetail::Sampled(1000),
        ..MetricsConfig::none()
    };
    let all = MetricsConfig { ikd_pro: Some(IkdProConfig::default()), ..MetricsConfig::all() };

    let cpu0 = cpu_seconds().unwrap_or(f64::NAN);
    let wall = std::time::Instant::now();
    let m = evaluate(&samples, &auroc_pro).expect("valid workload");
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds().unwrap_or(f64::NAN) - cpu0);
    let after_one = peak_rss_mb().unwrap_or(f64::NAN);
    println!(
        "one pixel AUROC + AU-PRO run: {wall:.3} s wall, {cpu:.2} s CPU over {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "workload: {MAPS} maps of {SIDE}x{SIDE}, {} defect pixels in {} regions; pixel AUROC {:.6}, \
         AU-PRO(0.3) {:.6}",
        m.defect_pixels,
        m.regions,
        m.pixel_auroc.unwrap_or(f64::NAN),
        m.au_pro_at(0.3).unwrap_or(f64::NAN)
    );
    println!(
        "peak RSS (VmHWM): {before:.0} MB with the inputs ({input_mb:.0} MB of maps + masks) \
         generated, {after_one:.0} MB after one pixel AUROC + AU-PRO run"
    );

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("metrics_100x1024x1024");
    g.bench_function("pixel_auroc+au_pro", |b| b.iter(|| evaluate(&samples, &auroc_pro)));
    g.bench_function("all_metrics+ikd_pro", |b| b.iter(|| evaluate(&samples, &all)));
    g.finish();
    c.final_summary();
    println!("peak RSS (VmHWM) at the end: {:.0} MB", peak_rss_mb().unwrap_or(f64::NAN));
}
