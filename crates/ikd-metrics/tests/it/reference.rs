//! Straightforward (slow) reimplementations of the reference definitions, for cross-checks.

/// One image: scores, mask, width, height.
pub type Img = (Vec<f32>, Vec<u8>, usize, usize);

/// Flood-fill labelling (BFS), labels in raster order of first pixel.
pub fn flood_label(mask: &[u8], w: usize, h: usize, eight: bool) -> (Vec<u32>, usize) {
    let mut labels = vec![0_u32; w * h];
    let mut n = 0;
    for start in 0..w * h {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        n += 1;
        labels[start] = n as u32;
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(p) = queue.pop_front() {
            let (x, y) = ((p % w) as i64, (p / w) as i64);
            for dy in -1..=1_i64 {
                for dx in -1..=1_i64 {
                    if (dx == 0 && dy == 0) || (!eight && dx != 0 && dy != 0) {
                        continue;
                    }
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] != 0 && labels[q] == 0 {
                        labels[q] = n as u32;
                        queue.push_back(q);
                    }
                }
            }
        }
    }
    (labels, n)
}

/// (score, is_defect) of every pixel.
fn pixels(imgs: &[Img]) -> Vec<(f32, bool)> {
    imgs.iter().flat_map(|(s, m, _, _)| s.iter().zip(m).map(|(&s, &m)| (s, m != 0))).collect()
}

/// Cumulative (fp, tp) at the end of every tie group, scores decreasing; with the score.
fn roc_points(mut px: Vec<(f32, bool)>) -> Vec<(f32, f64, f64)> {
    px.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    let (mut fp, mut tp) = (0.0, 0.0);
    let mut out = Vec::new();
    for i in 0..px.len() {
        if px[i].1 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if i + 1 == px.len() || px[i + 1].0 != px[i].0 {
            out.push((px[i].0, fp, tp));
        }
    }
    out
}

/// scikit-learn's roc_auc_score: trapezoid over the ROC points.
pub fn auroc(imgs: &[Img]) -> f64 {
    let pts = roc_points(pixels(imgs));
    let (n, p) = (pts.last().unwrap().1, pts.last().unwrap().2);
    let (mut area, mut prev) = (0.0, (0.0, 0.0));
    for &(_, fp, tp) in &pts {
        let (x, y) = (fp / n, tp / p);
        area += (x - prev.0) * (y + prev.1) / 2.0;
        prev = (x, y);
    }
    area
}

/// scikit-learn's average_precision_score.
pub fn average_precision(imgs: &[Img]) -> f64 {
    let pts = roc_points(pixels(imgs));
    let p = pts.last().unwrap().2;
    let (mut ap, mut prev_r) = (0.0, 0.0);
    for &(_, fp, tp) in &pts {
        let r = tp / p;
        ap += (r - prev_r) * (tp / (tp + fp));
        prev_r = r;
    }
    ap
}

/// Best F1 over all thresholds (`score >= t`), and F1 at a given threshold.
pub fn f1(imgs: &[Img], at: Option<f32>) -> f64 {
    let pts = roc_points(pixels(imgs));
    let p = pts.last().unwrap().2;
    pts.iter()
        .filter(|(s, _, _)| at.is_none_or(|t| *s == t))
        .map(|&(_, fp, tp)| if tp == 0.0 { 0.0 } else { 2.0 * tp / (tp + fp + p) })
        .fold(0.0, f64::max)
}

/// MVTec AD's compute_pro (FPRs in f64).
pub fn pro_curve(imgs: &[Img]) -> (Vec<f64>, Vec<f64>) {
    let mut px: Vec<(f32, f64, f64)> = Vec::new(); // score, fp change, pro change
    let mut regions = 0;
    let mut ok = 0.0;
    for (s, m, w, h) in imgs {
        let (labels, n) = flood_label(m, *w, *h, true);
        let mut sizes = vec![0.0; n + 1];
        for &l in &labels {
            sizes[l as usize] += 1.0;
        }
        regions += n;
        for (i, &l) in labels.iter().enumerate() {
            if l == 0 {
                ok += 1.0;
                px.push((s[i], 1.0, 0.0));
            } else {
                px.push((s[i], 0.0, 1.0 / sizes[l as usize]));
            }
        }
    }
    px.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    let (mut fps, mut pros) = (vec![0.0], vec![0.0]);
    let (mut fp, mut pro) = (0.0, 0.0);
    for i in 0..px.len() {
        fp += px[i].1;
        pro += px[i].2;
        if i + 1 == px.len() || px[i + 1].0 != px[i].0 {
            fps.push(f64::min(fp / ok, 1.0));
            pros.push(f64::min(pro / regions as f64, 1.0));
        }
    }
    fps.push(1.0);
    pros.push(1.0);
    (fps, pros)
}

/// MVTec AD's trapezoid(x, y, x_max).
pub fn trapezoid(x: &[f64], y: &[f64], x_max: f64) -> f64 {
    let mut correction = 0.0;
    let mut n = x.len();
    if !x.contains(&x_max) {
        let ins = x.partition_point(|&v| v <= x_max);
        let y_interp =
            y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]);
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1]);
        n = ins;
    } else {
        n = n.min(x.partition_point(|&v| v <= x_max));
    }
    (1..n).map(|i| 0.5 * (y[i] + y[i - 1]) * (x[i] - x[i - 1])).sum::<f64>() + correction
}

pub fn au_pro(imgs: &[Img], limit: f64) -> f64 {
    let (x, y) = pro_curve(imgs);
    trapezoid(&x, &y, limit) / limit
}

/// Image AUROC from the per-image maximum.
pub fn image_auroc(imgs: &[Img]) -> f64 {
    let per: Vec<Img> = imgs
        .iter()
        .map(|(s, m, _, _)| {
            (
                vec![s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))],
                vec![u8::from(m.iter().any(|&v| v != 0))],
                1,
                1,
            )
        })
        .collect();
    auroc(&per)
}

/// Holes of region `label` as skimage's `filled_image` fills them (8-connected background, within
/// the bounding box), found by flooding from a padded border.
fn holes(labels: &[u32], w: usize, h: usize, label: u32) -> Vec<usize> {
    let pts: Vec<usize> = (0..w * h).filter(|&i| labels[i] == label).collect();
    let (x0, x1) =
        (pts.iter().map(|p| p % w).min().unwrap(), pts.iter().map(|p| p % w).max().unwrap());
    let (y0, y1) =
        (pts.iter().map(|p| p / w).min().unwrap(), pts.iter().map(|p| p / w).max().unwrap());
    let (bw, bh) = (x1 - x0 + 3, y1 - y0 + 3); // padded by one on each side
    let inside = |x: usize, y: usize| -> bool {
        x >= 1
            && y >= 1
            && x <= x1 - x0 + 1
            && y <= y1 - y0 + 1
            && labels[(y - 1 + y0) * w + x - 1 + x0] == label
    };
    let mut seen = vec![false; bw * bh];
    let mut stack = vec![(0_usize, 0_usize)];
    seen[0] = true;
    while let Some((x, y)) = stack.pop() {
        for ny in y.saturating_sub(1)..=(y + 1).min(bh - 1) {
            for nx in x.saturating_sub(1)..=(x + 1).min(bw - 1) {
                if !seen[ny * bw + nx] && !inside(nx, ny) {
                    seen[ny * bw + nx] = true;
                    stack.push((nx, ny));
                }
            }
        }
    }
    let mut out = Vec::new();
    for y in 1..bh - 1 {
        for x in 1..bw - 1 {
            if !seen[y * bw + x] && !inside(x, y) {
                out.push((y - 1 + y0) * w + x - 1 + x0);
            }
        }
    }
    out
}

/// IKD's cal_pro_metric, threshold by threshold.
pub fn ikd_pro(imgs: &[Img], steps: usize, max_fpr: f64) -> Option<f64> {
    let all: Vec<f32> = imgs.iter().flat_map(|i| i.0.iter().copied()).collect();
    let max = all.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let min = all.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let delta = (f64::from(max) - f64::from(min)) / steps as f64;
    // Per region: (image, filled pixel list, size).
    let mut regions = Vec::new();
    for (k, (_, m, w, h)) in imgs.iter().enumerate() {
        let (labels, n) = flood_label(m, *w, *h, true);
        for l in 1..=n as u32 {
            let mut filled: Vec<usize> = (0..w * h).filter(|&i| labels[i] == l).collect();
            let size = filled.len();
            filled.extend(holes(&labels, *w, *h, l));
            regions.push((k, filled, size));
        }
    }
    let negatives = imgs.iter().flat_map(|i| i.1.iter()).filter(|&&v| v == 0).count() as f64;
    let (mut fprs, mut pros) = (Vec::new(), Vec::new());
    for step in 0..steps {
        let th = (f64::from(max) - step as f64 * delta) as f32;
        let fp = imgs
            .iter()
            .flat_map(|(s, m, _, _)| s.iter().zip(m))
            .filter(|(&s, &m)| m == 0 && s > th)
            .count() as f64;
        let pro: f64 = regions
            .iter()
            .map(|(k, filled, size)| {
                filled.iter().filter(|&&p| imgs[*k].0[p] > th).count() as f64 / *size as f64
            })
            .sum::<f64>()
            / regions.len() as f64;
        fprs.push(fp / negatives);
        pros.push(pro);
    }
    let kept: Vec<usize> = (0..steps).filter(|&i| fprs[i] <= max_fpr).collect();
    let xs: Vec<f64> = kept.iter().map(|&i| fprs[i]).collect();
    let (lo, hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if hi <= lo {
        return None;
    }
    let x: Vec<f64> = xs.iter().map(|&v| (v - lo) / (hi - lo)).collect();
    let y: Vec<f64> = kept.iter().map(|&i| pros[i]).collect();
    Some((1..x.len()).map(|i| 0.5 * (y[i] + y[i - 1]) * (x[i] - x[i - 1])).sum())
}
