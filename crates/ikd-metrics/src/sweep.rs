//! `finish`: bucket summaries in parallel, then one cumulative sweep from the highest score down
//! that produces ROC, PRO curve, AP, F1 and IKD's PRO together.

use rayon::prelude::*;

use crate::accumulator::{Accumulator, ImageRecord, Part, BUCKETS};
use crate::config::{CurveDetail, IkdProConfig, MetricsConfig};
use crate::key::{key, value};
use crate::result::{AuPro, Curve, F1Max, IkdPro, Metrics};
use crate::MetricsError;

/// Buckets with at least this many defect-free pixels are counted with a 65536-entry histogram,
/// smaller ones are sorted.
const DENSE: usize = 8192;
/// Buckets are summarised in parallel in chunks of about this many pixels, then swept: the
/// summaries of one chunk only are alive at a time.
const CHUNK_PIXELS: usize = 1 << 23;

/// One distinct key of a bucket where something other than defect-free pixels happens (defect
/// pixels, hole pixels or an IKD threshold).
#[derive(Debug, Clone, Copy, Default)]
struct Event {
    /// Defect-free pixels strictly between the previous event of the bucket (or the bucket's top)
    /// and this key.
    between: u64,
    /// Defect-free pixels at this key.
    eq: u64,
    /// Defect pixels at this key.
    dp: u64,
    /// Σ 1/region size over the defect pixels at this key.
    pro: f64,
    /// Σ 1/region size over the hole pixels at this key (IKD's PRO only).
    hole: f64,
    low: u16,
    threshold: bool,
}

struct Summary {
    bucket: u32,
    events: Vec<Event>,
    /// Defect-free pixels below the last event (all of them when there is none).
    tail: u64,
}

struct BucketInput<'a> {
    bucket: u32,
    normal: Vec<Vec<u16>>,
    defect: Vec<Vec<u64>>,
    holes: &'a [u64],
    thresholds: &'a [u32],
}

#[derive(Default)]
struct Scratch {
    hist: Option<Box<[u32; BUCKETS]>>,
    sorted: Vec<u16>,
}

/// Twice the ROC area added by a tie block of `dn` negatives and `dp` positives scored below `tp`
/// positives (Mann–Whitney with ties counted half, in integers).
#[inline]
fn roc_area2(dn: u64, tp: u64, dp: u64) -> u128 {
    u128::from(dn) * u128::from(2 * tp + dp)
}

/// Groups sorted `(low16 << 32 | region size)` entries, highest key first, into events.
fn group_desc(entries: &[u64], mut make: impl FnMut(u16, u64, f64)) {
    let mut j = entries.len();
    while j > 0 {
        let low = (entries[j - 1] >> 32) as u16;
        let (mut count, mut weight) = (0_u64, 0.0_f64);
        while j > 0 && (entries[j - 1] >> 32) as u16 == low {
            let e = entries[j - 1];
            let mut c = 0_u64;
            while j > 0 && entries[j - 1] == e {
                c += 1;
                j -= 1;
            }
            count += c;
            weight += c as f64 / f64::from(e as u32);
        }
        make(low, count, weight);
    }
}

fn summarize(mut input: BucketInput<'_>, scratch: &mut Scratch) -> Summary {
    let mut defects = if input.defect.len() == 1 {
        input.defect.pop().unwrap_or_default()
    } else {
        input.defect.concat()
    };
    drop(input.defect);
    defects.sort_unstable();
    let mut events = Vec::new();
    group_desc(&defects, |low, dp, pro| events.push(Event { low, dp, pro, ..Event::default() }));
    drop(defects);
    if !input.holes.is_empty() || !input.thresholds.is_empty() {
        // Hole entries hold the whole key; keep its low half.
        let holes: Vec<u64> = input.holes.iter().map(|&e| e & 0x0000_ffff_ffff_ffff).collect();
        group_desc(&holes, |low, _, hole| events.push(Event { low, hole, ..Event::default() }));
        for &t in input.thresholds {
            events.push(Event { low: t as u16, threshold: true, ..Event::default() });
        }
        events.sort_unstable_by_key(|e| std::cmp::Reverse(e.low));
        events.dedup_by(|next, kept| {
            if next.low != kept.low {
                return false;
            }
            kept.dp += next.dp;
            kept.pro += next.pro;
            kept.hole += next.hole;
            kept.threshold |= next.threshold;
            true
        });
    }
    let total: usize = input.normal.iter().map(Vec::len).sum();
    let tail = if events.is_empty() {
        total
    } else if total >= DENSE && u32::try_from(total).is_ok() {
        let hist = scratch.hist.get_or_insert_with(|| Box::new([0; BUCKETS]));
        hist.fill(0);
        for v in &input.normal {
            for &x in v {
                hist[x as usize] += 1;
            }
        }
        let mut hi = BUCKETS;
        for ev in &mut events {
            let q = ev.low as usize;
            ev.between = hist[q + 1..hi].iter().map(|&c| u64::from(c)).sum();
            ev.eq = u64::from(hist[q]);
            hi = q;
        }
        hist[..hi].iter().map(|&c| c as usize).sum()
    } else {
        let s = &mut scratch.sorted;
        s.clear();
        for v in &input.normal {
            s.extend_from_slice(v);
        }
        s.sort_unstable();
        let len = s.len();
        let mut ge_prev = 0;
        for ev in &mut events {
            let q = ev.low;
            let gt = len - s.partition_point(|&x| x <= q);
            let ge = len - s.partition_point(|&x| x < q);
            ev.between = (gt - ge_prev) as u64;
            ev.eq = (ge - gt) as u64;
            ge_prev = ge;
        }
        len - ge_prev
    };
    Summary { bucket: input.bucket, events, tail: tail as u64 }
}

/// Sampling of the PRO curve's vertices.
struct CurveBuilder {
    full: bool,
    /// Minimum step (in defect-free pixel counts for the FPR, in PRO units for the PRO).
    step_fp: f64,
    step_pro: f64,
    fp: Vec<u64>,
    pro: Vec<f64>,
    last: Option<(u64, f64)>,
}

impl CurveBuilder {
    fn vertex(&mut self, fp: u64, pro: f64) {
        let keep = match (self.fp.last(), self.pro.last()) {
            _ if self.full => true,
            (Some(&f), Some(&p)) => {
                (fp - f) as f64 >= self.step_fp || (pro - p).abs() >= self.step_pro
            }
            _ => true,
        };
        if keep {
            self.fp.push(fp);
            self.pro.push(pro);
            self.last = None;
        } else {
            self.last = Some((fp, pro));
        }
    }
}

/// The state of the sweep from the highest key down.
struct Sweep {
    /// Defect-free pixels in all.
    normals: u64,
    /// Defect pixels in all.
    defects: u64,
    regions: f64,
    fp: u64,
    tp: u64,
    pro: f64,
    hole: f64,
    pending: u64,
    auroc2: u128,
    /// AU-PRO limits in defect-free pixel counts, their areas (FPR in pixel counts × PRO), and
    /// whether the sweep has passed them.
    limits: Vec<f64>,
    areas: Vec<f64>,
    passed: Vec<bool>,
    open: usize,
    ap: f64,
    /// Best F1 so far as (2·tp, tp + fp + P, key, tp, fp).
    f1: Option<(u64, u64, u32, u64, u64)>,
    curve: Option<CurveBuilder>,
    /// At each IKD threshold key: (key, defect-free pixels above, Σ 1/size of covered region and
    /// hole pixels above).
    ikd: Vec<(u32, u64, f64)>,
}

impl Sweep {
    #[inline]
    fn pro_frac(&self, pro: f64) -> f64 {
        (pro / self.regions).min(1.0)
    }

    /// Adds the trapezoid from (fp, y0) to (fp + dn, y1) to every limit not yet passed.
    #[inline]
    fn segment(&mut self, dn: u64, y0: f64, y1: f64) {
        if self.open == 0 || dn == 0 {
            return;
        }
        let a = self.fp as f64;
        let b = (self.fp + dn) as f64;
        for i in 0..self.limits.len() {
            if self.passed[i] {
                continue;
            }
            let l = self.limits[i];
            if b <= l {
                self.areas[i] += 0.5 * (y0 + y1) * dn as f64;
            } else {
                let t = l - a;
                if t > 0.0 {
                    let y_at = y0 + (y1 - y0) * t / dn as f64;
                    self.areas[i] += 0.5 * (y0 + y_at) * t;
                }
                self.passed[i] = true;
                self.open -= 1;
            }
        }
    }

    /// Defect-free pixels only: a horizontal stretch of the PRO curve.
    fn flush(&mut self) {
        let dn = std::mem::take(&mut self.pending);
        if dn == 0 {
            return;
        }
        self.auroc2 += roc_area2(dn, self.tp, 0);
        let y = self.pro_frac(self.pro);
        self.segment(dn, y, y);
        self.fp += dn;
        if let Some(c) = &mut self.curve {
            c.vertex(self.fp, y);
        }
    }

    fn event(&mut self, k: u32, ev: &Event) {
        self.pending += ev.between;
        self.flush();
        if ev.threshold {
            self.ikd.push((k, self.fp, self.pro + self.hole));
        }
        let (dn, dp) = (ev.eq, ev.dp);
        if dn == 0 && dp == 0 {
            self.hole += ev.hole;
            return;
        }
        self.auroc2 += roc_area2(dn, self.tp, dp);
        let y0 = self.pro_frac(self.pro);
        let y1 = self.pro_frac(self.pro + ev.pro);
        self.segment(dn, y0, y1);
        self.fp += dn;
        self.tp += dp;
        self.pro += ev.pro;
        self.hole += ev.hole;
        if dp > 0 {
            self.ap += dp as f64 * (self.tp as f64 / (self.tp + self.fp) as f64);
            let (num, den) = (2 * self.tp, self.tp + self.fp + self.defects);
            let better = match self.f1 {
                None => true,
                // `>=`: among equal F1 keep the lowest threshold.
                Some((bn, bd, ..)) => {
                    u128::from(num) * u128::from(bd) >= u128::from(bn) * u128::from(den)
                }
            };
            if better {
                self.f1 = Some((num, den, k, self.tp, self.fp));
            }
        }
        if let Some(c) = &mut self.curve {
            c.vertex(self.fp, y1);
        }
    }

    fn apply(&mut self, s: &Summary) {
        for ev in &s.events {
            self.event((s.bucket << 16) | u32::from(ev.low), ev);
        }
        self.pending += s.tail;
    }
}

/// IKD's thresholds `max - k·(max - min)/n`, as keys, in the order of `k`.
fn ikd_threshold_keys(min_key: u32, max_key: u32, cfg: &IkdProConfig) -> Vec<u32> {
    let (min, max) = (f64::from(value(min_key)), f64::from(value(max_key)));
    let delta = (max - min) / cfg.thresholds as f64;
    (0..cfg.thresholds).map(|k| key((max - k as f64 * delta) as f32)).collect()
}

/// IKD's PRO from the sweep's records at its thresholds.
fn ikd_area(
    thresholds: &[u32],
    records: &[(u32, u64, f64)],
    normals: u64,
    regions: f64,
    cfg: &IkdProConfig,
) -> Result<IkdPro, MetricsError> {
    // Records are in decreasing key order, one per distinct threshold key.
    let mut fpr = Vec::with_capacity(thresholds.len());
    let mut pro = Vec::with_capacity(thresholds.len());
    for &t in thresholds {
        let i = records.partition_point(|r| r.0 > t);
        let (fp, cover) = records.get(i).filter(|r| r.0 == t).map_or((0, 0.0), |r| (r.1, r.2));
        fpr.push(fp as f64 / normals as f64);
        pro.push(cover / regions);
    }
    let kept = fpr.iter().take_while(|&&f| f <= cfg.max_fpr).count();
    let (lo, hi) =
        (fpr.first().copied().unwrap_or(0.0), fpr[..kept].last().copied().unwrap_or(0.0));
    if kept == 0 || hi <= lo {
        return Err(MetricsError::IkdProUndefined { kept, max_fpr: cfg.max_fpr, fpr: lo });
    }
    let x: Vec<f64> = fpr[..kept].iter().map(|&f| (f - lo) / (hi - lo)).collect();
    let area = x
        .windows(2)
        .zip(pro[..kept].windows(2))
        .map(|(x, y)| 0.5 * (y[0] + y[1]) * (x[1] - x[0]))
        .sum();
    Ok(IkdPro { value: area, thresholds: thresholds.iter().map(|&t| value(t)).collect(), fpr, pro })
}

/// Exact AUROC of scores against labels, ties as the trapezoid through the tied block.
pub(crate) fn image_auroc_of(records: &[ImageRecord]) -> Result<f64, MetricsError> {
    let pos = records.iter().filter(|r| r.defective).count() as u64;
    let neg = records.len() as u64 - pos;
    if pos == 0 || neg == 0 {
        return Err(MetricsError::ImageAurocUndefined {
            images: records.len(),
            defective: pos as usize,
        });
    }
    let mut order: Vec<(f64, bool)> = records.iter().map(|r| (r.score, r.defective)).collect();
    order.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    let (mut tp, mut area2) = (0_u64, 0_u128);
    let mut i = 0;
    while i < order.len() {
        let (mut dp, mut dn) = (0_u64, 0_u64);
        let s = order[i].0;
        while i < order.len() && order[i].0 == s {
            if order[i].1 {
                dp += 1;
            } else {
                dn += 1;
            }
            i += 1;
        }
        area2 += roc_area2(dn, tp, dp);
        tp += dp;
    }
    Ok(area2 as f64 / (2.0 * pos as f64 * neg as f64))
}

/// [`Accumulator::finish`]: the image metrics, then one sweep over the pixels that every pixel
/// metric is read from, each by its own finisher below.
pub(crate) fn finish(mut acc: Accumulator) -> Result<Metrics, MetricsError> {
    let images = acc.images.len();
    if images == 0 {
        return Err(MetricsError::NoImages);
    }
    let config = acc.config.clone();
    let image_auroc = match config.image_auroc {
        Some(_) => Some(image_auroc_of(&acc.images)?),
        None => None,
    };
    let mut metrics = Metrics {
        images,
        defective_images: acc.images.iter().filter(|r| r.defective).count(),
        pixels: acc.normal_pixels + acc.defect_pixels,
        defect_pixels: acc.defect_pixels,
        regions: acc.regions,
        pixel_auroc: None,
        image_auroc,
        au_pro: Vec::new(),
        pro_curve: None,
        average_precision: None,
        f1_max: None,
        ikd_pro: None,
    };
    if !config.needs_pixels() {
        return Ok(metrics);
    }
    if acc.defect_pixels == 0 {
        return Err(MetricsError::NoDefectPixel { images });
    }
    if acc.normal_pixels == 0 {
        return Err(MetricsError::NoDefectFreePixel { images });
    }
    let thresholds = match &config.ikd_pro {
        Some(cfg) => ikd_threshold_keys(acc.min_key, acc.max_key, cfg),
        None => Vec::new(),
    };
    let mut sweep = Sweep::new(&config, acc.normal_pixels, acc.defect_pixels, acc.regions);
    sweep_pixels(&mut acc, &thresholds, &mut sweep);
    drop(acc);

    if config.pixel_auroc {
        metrics.pixel_auroc = Some(sweep.pixel_auroc());
    }
    metrics.au_pro = sweep.au_pro(&config.au_pro_limits);
    if config.average_precision {
        metrics.average_precision = Some(sweep.average_precision());
    }
    if config.f1_max {
        metrics.f1_max = sweep.f1_max();
    }
    metrics.pro_curve = sweep.pro_curve();
    if let Some(cfg) = &config.ikd_pro {
        metrics.ikd_pro =
            Some(ikd_area(&thresholds, &sweep.ikd, sweep.normals, sweep.regions, cfg)?);
    }
    Ok(metrics)
}

/// Sweeps every pixel of `acc` from the highest key down: buckets are taken out of the parts and
/// summarised in parallel a chunk at a time, then applied to `sweep` in order. `thresholds` are
/// IKD's threshold keys, each of which gets a record in `sweep.ikd`.
fn sweep_pixels(acc: &mut Accumulator, thresholds: &[u32], sweep: &mut Sweep) {
    let mut queries = thresholds.to_vec();
    queries.sort_unstable_by(|a, b| b.cmp(a));
    queries.dedup();
    let mut holes: Vec<u64> =
        acc.parts.iter_mut().flat_map(|p| std::mem::take(&mut p.holes)).collect();
    holes.sort_unstable();

    let parts: &mut Vec<Part> = &mut acc.parts;
    let mut chunk: Vec<BucketInput<'_>> = Vec::new();
    let mut chunk_pixels = 0;
    let mut hole_hi = holes.len();
    let mut query_lo = 0;
    let run_chunk = |chunk: &mut Vec<BucketInput<'_>>, sweep: &mut Sweep| {
        let summaries: Vec<Summary> = std::mem::take(chunk)
            .into_par_iter()
            .map_init(Scratch::default, |scratch, input| summarize(input, scratch))
            .collect();
        for s in &summaries {
            sweep.apply(s);
        }
    };
    for b in (0..BUCKETS as u32).rev() {
        let hole_lo = holes[..hole_hi].partition_point(|&e| (e >> 48) < u64::from(b));
        let query_hi = query_lo + queries[query_lo..].iter().take_while(|&&q| q >> 16 == b).count();
        let bucket = b as usize;
        if hole_lo == hole_hi
            && query_lo == query_hi
            && parts.iter().all(|p| p.normal[bucket].is_empty() && p.defect[bucket].is_empty())
        {
            continue;
        }
        let normal: Vec<Vec<u16>> = parts
            .iter_mut()
            .map(|p| std::mem::take(&mut p.normal[bucket]))
            .filter(|v| !v.is_empty())
            .collect();
        let defect: Vec<Vec<u64>> = parts
            .iter_mut()
            .map(|p| std::mem::take(&mut p.defect[bucket]))
            .filter(|v| !v.is_empty())
            .collect();
        chunk_pixels += normal.iter().map(Vec::len).sum::<usize>()
            + defect.iter().map(Vec::len).sum::<usize>()
            + (hole_hi - hole_lo);
        chunk.push(BucketInput {
            bucket: b,
            normal,
            defect,
            holes: &holes[hole_lo..hole_hi],
            thresholds: &queries[query_lo..query_hi],
        });
        hole_hi = hole_lo;
        query_lo = query_hi;
        if chunk_pixels >= CHUNK_PIXELS {
            run_chunk(&mut chunk, sweep);
            chunk_pixels = 0;
        }
    }
    run_chunk(&mut chunk, sweep);
    sweep.flush();
}

/// The finishers: each pixel metric read from the finished sweep.
impl Sweep {
    /// An empty sweep computing what `config` selects over `normals` defect-free and `defects`
    /// defect pixels in `regions` regions.
    fn new(config: &MetricsConfig, normals: u64, defects: u64, regions: u64) -> Sweep {
        let n = normals as f64;
        let limits = &config.au_pro_limits;
        let curve = match (config.pro_curve, limits.is_empty()) {
            (CurveDetail::None, _) | (_, true) => None,
            (detail, false) => {
                let (full, steps) = match detail {
                    CurveDetail::Sampled(s) => (false, s as f64),
                    _ => (true, 1.0),
                };
                Some(CurveBuilder {
                    full,
                    step_fp: n / steps,
                    step_pro: 1.0 / steps,
                    fp: vec![0],
                    pro: vec![0.0],
                    last: None,
                })
            }
        };
        Sweep {
            normals,
            defects,
            regions: regions as f64,
            fp: 0,
            tp: 0,
            pro: 0.0,
            hole: 0.0,
            pending: 0,
            auroc2: 0,
            limits: limits.iter().map(|&l| l * n).collect(),
            areas: vec![0.0; limits.len()],
            passed: vec![false; limits.len()],
            open: limits.len(),
            ap: 0.0,
            f1: None,
            curve,
            ikd: Vec::new(),
        }
    }

    /// Pixel AUROC: the Mann–Whitney sum over `P·N`.
    fn pixel_auroc(&self) -> f64 {
        (self.auroc2 as f64 / (2.0 * self.defects as f64 * self.normals as f64)).clamp(0.0, 1.0)
    }

    /// AU-PRO at each limit: the area in (defect-free pixels × PRO) over `N·limit`.
    fn au_pro(&self, limits: &[f64]) -> Vec<AuPro> {
        let n = self.normals as f64;
        limits
            .iter()
            .zip(&self.areas)
            .map(|(&limit, &area)| AuPro { limit, value: (area / n / limit).clamp(0.0, 1.0) })
            .collect()
    }

    /// Average precision: `Σ ΔR·P` over the thresholds.
    fn average_precision(&self) -> f64 {
        (self.ap / self.defects as f64).clamp(0.0, 1.0)
    }

    /// The best F1 and where it was reached.
    fn f1_max(&self) -> Option<F1Max> {
        self.f1.map(|(num, den, k, tp, fp)| F1Max {
            f1: num as f64 / den as f64,
            threshold: value(k),
            precision: tp as f64 / (tp + fp) as f64,
            recall: tp as f64 / self.defects as f64,
        })
    }

    /// The PRO curve's kept vertices, its last one and (1, 1), FPR as a fraction.
    fn pro_curve(&mut self) -> Option<Curve> {
        let mut c = self.curve.take()?;
        if let Some((fp, pro)) = c.last.take() {
            c.fp.push(fp);
            c.pro.push(pro);
        }
        let n = self.normals as f64;
        let mut fpr: Vec<f64> = c.fp.iter().map(|&f| f as f64 / n).collect();
        fpr.push(1.0);
        c.pro.push(1.0);
        Some(Curve { fpr, pro: c.pro })
    }
}
