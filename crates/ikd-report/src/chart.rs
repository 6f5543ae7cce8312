//! One model of a line chart (title, two axes with ticks, named series), drawn as SVG for the
//! HTML report ([`crate::svg`]) and as PNG for the Markdown report ([`crate::png`]).

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rrggbb`.
    pub(crate) fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// The curve colours: blue for a run's main curve, then orange and green.
pub(crate) const BLUE: Rgb = Rgb(31, 91, 180);
pub(crate) const ORANGE: Rgb = Rgb(214, 96, 39);
pub(crate) const GREEN: Rgb = Rgb(26, 127, 55);
/// The chance diagonal of a ROC chart.
pub(crate) const GREY: Rgb = Rgb(150, 150, 150);

/// Series longer than this are thinned (keeping each stretch's lowest and highest point) before
/// they are drawn: a 50-epoch training log has tens of thousands of steps.
pub(crate) const MAX_POINTS: usize = 1200;

/// One axis: its title, its range and the values that get a tick, a grid line and a label.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    pub title: String,
    pub min: f64,
    pub max: f64,
    pub ticks: Vec<f64>,
    /// Decimals of the tick labels.
    pub decimals: usize,
}

impl Axis {
    /// An axis over `[min, max]` with ticks every `step`.
    pub(crate) fn fixed(title: &str, min: f64, max: f64, step: f64) -> Self {
        Axis {
            title: title.into(),
            min,
            max,
            ticks: ticks(min, max, step),
            decimals: decimals(step),
        }
    }

    /// An axis over the finite `values`, widened to round tick values (about five ticks); `[0, 1]`
    /// when there is none.
    pub(crate) fn fitted(title: &str, values: impl IntoIterator<Item = f64>) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            return Self::fixed(title, 0.0, 1.0, 0.2);
        }
        if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()).max(1e-300) {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            lo -= pad;
            hi += pad;
        }
        let step = nice_step((hi - lo) / 5.0);
        let (min, max) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        Self::fixed(title, min, max, step)
    }

    /// The tick label of `v`.
    pub(crate) fn label(&self, v: f64) -> String {
        let s = format!("{v:.*}", self.decimals);
        // No "-0" or "-0.0".
        if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
            s.trim_start_matches('-').to_string()
        } else {
            s
        }
    }

    /// Where `v` lies along the axis, 0 at `min` and 1 at `max`.
    pub(crate) fn fraction(&self, v: f64) -> f64 {
        if self.max > self.min {
            (v - self.min) / (self.max - self.min)
        } else {
            0.5
        }
    }
}

/// The smallest of 1, 2 and 5 times a power of ten that is at least `rough`.
pub(crate) fn nice_step(rough: f64) -> f64 {
    if !(rough.is_finite() && rough > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&s| s >= rough * (1.0 - 1e-9)).unwrap_or(p)
}

/// Multiples of `step` in `[min, max]`, rounded to the step's precision.
fn ticks(min: f64, max: f64, step: f64) -> Vec<f64> {
    if !(step > 0.0 && max >= min) {
        return vec![min];
    }
    let first = (min / step - 1e-9).ceil() as i64;
    let last = (max / step + 1e-9).floor() as i64;
    let scale = 10f64.powi(decimals(step) as i32 + 2);
    (first..=last.min(first + 100)).map(|k| (k as f64 * step * scale).round() / scale).collect()
}

/// Decimals that show every multiple of `step` exactly (for steps of 1, 2 or 5 times a power of
/// ten).
fn decimals(step: f64) -> usize {
    (-(step.log10() + 1e-9).floor()).max(0.0) as usize
}

/// A named line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// The legend's text.
    pub name: String,
    /// Points (x, y), in drawing order.
    pub points: Vec<(f64, f64)>,
    pub color: Rgb,
    /// Drawn dashed (a reference line, such as chance level).
    pub dashed: bool,
}

impl Series {
    /// The colour's name and the line's style, for text that describes a chart.
    pub(crate) fn color_name(&self) -> String {
        let name = match self.color {
            BLUE => "blue",
            ORANGE => "orange",
            GREEN => "green",
            GREY => "grey",
            _ => "coloured",
        };
        if self.dashed {
            format!("{name} dashed:")
        } else {
            format!("{name}:")
        }
    }

    pub(crate) fn new(name: &str, points: Vec<(f64, f64)>, color: Rgb) -> Self {
        Series { name: name.into(), points, color, dashed: false }
    }
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    /// Identifies the chart in the HTML page (prefix of its elements' ids).
    pub id: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

impl Chart {
    /// Each series' finite points inside the axes' x range (clipped at its ends by linear
    /// interpolation), with y clamped to the y range and long series thinned to about
    /// [`MAX_POINTS`].
    pub(crate) fn drawn_points(&self, s: &Series) -> Vec<(f64, f64)> {
        let clipped = clip(&s.points, self.x.min, self.x.max);
        thin(&clipped, MAX_POINTS)
            .into_iter()
            .map(|(x, y)| (x, y.clamp(self.y.min, self.y.max)))
            .collect()
    }
}

/// The finite points of a curve whose x never decreases, restricted to `[lo, hi]`: the segments
/// crossing either end are cut there, linearly interpolated.
pub(crate) fn clip(points: &[(f64, f64)], lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> =
        points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let at = |a: (f64, f64), b: (f64, f64), x: f64| {
        if b.0 == a.0 {
            (x, b.1)
        } else {
            (x, a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0))
        }
    };
    let mut out = Vec::with_capacity(finite.len());
    for (i, &p) in finite.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| finite[j]);
        if p.0 < lo {
            continue;
        }
        if let Some(q) = prev.filter(|q| q.0 < lo) {
            out.push(at(q, p, lo));
        }
        if p.0 > hi {
            if let Some(q) = prev.filter(|q| q.0 < hi) {
                out.push(at(q, p, hi));
            }
            break;
        }
        out.push(p);
    }
    out
}

/// At most about `max` points: longer lines are cut into `max / 2` stretches, each kept as its
/// lowest and highest point (in their order), so spikes stay visible.
pub(crate) fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let mut out = Vec::with_capacity(max + 2);
    for b in 0..buckets {
        let (start, end) = (b * points.len() / buckets, (b + 1) * points.len() / buckets);
        let part = &points[start..end];
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in part.iter().enumerate() {
            if p.1 < part[lo].1 {
                lo = i;
            }
            if p.1 > part[hi].1 {
                hi = i;
            }
        }
        out.push(part[lo.min(hi)]);
        if lo != hi {
            out.push(part[lo.max(hi)]);
        }
    }
    if out.last() != points.last() {
        out.extend(points.last());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.2), 0.2);
        assert_eq!(nice_step(0.21), 0.5);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert!((nice_step(0.00013) - 0.0002).abs() < 1e-15);
    }

    #[test]
    fn fixed_axes_label_every_tick() {
        let a = Axis::fixed("FPR", 0.0, 0.3, 0.05);
        assert_eq!(a.ticks.len(), 7);
        let labels: Vec<String> = a.ticks.iter().map(|&t| a.label(t)).collect();
        assert_eq!(labels, ["0.00", "0.05", "0.10", "0.15", "0.20", "0.25", "0.30"]);
        let b = Axis::fixed("TPR", 0.0, 1.0, 0.2);
        assert_eq!(
            b.ticks.iter().map(|&t| b.label(t)).collect::<Vec<_>>(),
            ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
        );
    }

    #[test]
    fn fitted_axes_cover_the_data_with_round_ends() {
        let a = Axis::fitted("loss", [0.43, 0.91, 0.57]);
        assert_eq!((a.min, a.max), (0.4, 1.0));
        assert_eq!(a.label(a.ticks[1]), "0.5");
        let steps = Axis::fitted("step", [0.0, 320.0]);
        assert_eq!((steps.min, steps.max, steps.decimals), (0.0, 400.0, 0));
        let flat = Axis::fitted("margin", [2.0, 2.0]);
        assert!(flat.min < 2.0 && flat.max > 2.0, "{flat:?}");
        let none = Axis::fitted("x", [f64::NAN]);
        assert_eq!((none.min, none.max), (0.0, 1.0));
        assert_eq!(Axis::fixed("x", -1.0, 1.0, 0.5).label(-0.0), "0.0");
    }

    #[test]
    fn curves_are_clipped_at_the_limits() {
        let c = clip(&[(0.0, 0.0), (0.2, 0.4), (0.4, 0.8), (1.0, 1.0)], 0.0, 0.3);
        assert_eq!(c.len(), 3);
        assert!((c[2].0 - 0.3).abs() < 1e-12 && (c[2].1 - 0.6).abs() < 1e-12, "{c:?}");
        assert_eq!(clip(&[(0.0, 0.0), (0.3, 0.5), (0.5, 1.0)], 0.0, 0.3), [(0.0, 0.0), (0.3, 0.5)]);
        let c = clip(&[(0.0, 1.0), (2.0, 3.0), (f64::NAN, 1.0), (4.0, 5.0)], 1.0, 10.0);
        assert_eq!(c, [(1.0, 2.0), (2.0, 3.0), (4.0, 5.0)]);
    }

    #[test]
    fn long_lines_are_thinned_keeping_their_extremes() {
        let pts: Vec<(f64, f64)> =
            (0..10_000).map(|i| (i as f64, if i == 5_000 { 9.0 } else { 1.0 })).collect();
        let t = thin(&pts, 100);
        assert!(t.len() <= 102, "{}", t.len());
        assert!(t.contains(&(5_000.0, 9.0)), "the spike was lost");
        assert_eq!((t[0], *t.last().unwrap()), (pts[0], pts[9_999]));
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(thin(&pts[..10], 100), &pts[..10]);
    }
}
