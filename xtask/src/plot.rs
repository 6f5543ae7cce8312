//! ROC and PRO curves as PNG images (plotters' bitmap backend). No text is drawn, so no system
//! font is needed: the axes run from 0 to the limits given, with grid lines at every fifth; titles
//! and axis names are in the report around the image.

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// Side of the square curve images, in pixels.
pub const SIZE: u32 = 320;

/// One curve to draw.
#[derive(Debug, Clone)]
pub struct CurvePlot<'a> {
    /// Points (x, y), sorted by x.
    pub points: &'a [(f64, f64)],
    /// The x axis runs from 0 to this value.
    pub x_max: f64,
    /// Draw the diagonal y = x / x_max (a chance-level ROC).
    pub diagonal: bool,
}

/// Renders `plot` as a PNG image of `SIZE`² pixels.
pub fn render_png(plot: &CurvePlot<'_>) -> Result<Vec<u8>> {
    let (w, h) = (SIZE, SIZE);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing a curve: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let area = root.margin(12, 12, 12, 12);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(0f64..plot.x_max, 0f64..1f64)
            .map_err(err)?;
        let grid = RGBColor(225, 225, 225);
        for i in 1..5 {
            let x = plot.x_max * i as f64 / 5.0;
            let y = i as f64 / 5.0;
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, 1.0)], grid.stroke_width(1)))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new([(0.0, y), (plot.x_max, y)], grid.stroke_width(1)))
                .map_err(err)?;
        }
        if plot.diagonal {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, 0.0), (plot.x_max, 1.0)],
                    RGBColor(170, 170, 170).stroke_width(1),
                ))
                .map_err(err)?;
        }
        let frame = [(0.0, 0.0), (plot.x_max, 0.0), (plot.x_max, 1.0), (0.0, 1.0), (0.0, 0.0)];
        chart.draw_series(LineSeries::new(frame, BLACK.stroke_width(2))).map_err(err)?;
        let pts: Vec<(f64, f64)> = clip(plot.points, plot.x_max)
            .into_iter()
            .map(|(x, y)| (x, y.clamp(0.0, 1.0)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, RGBColor(31, 91, 180).stroke_width(3)))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| anyhow!("curve buffer has the wrong size"))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}

/// The points of a curve (sorted by x) with x in `[0, x_max]`; the segment crossing `x_max` ends
/// at `x_max`, linearly interpolated. Non-finite points are dropped.
pub fn clip(points: &[(f64, f64)], x_max: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &(x, y) in points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
        if x <= x_max {
            out.push((x.max(0.0), y));
            continue;
        }
        if let Some(&(x0, y0)) = out.last() {
            if x0 < x_max {
                out.push((x_max, y0 + (y - y0) * (x_max - x0) / (x - x0)));
            }
        }
        break;
    }
    out
}

/// The ROC curve (FPR, TPR) of scores with binary labels, with every distinct threshold as a
/// point (ties are one point), from (0, 0) to (1, 1). `None` when a class is missing.
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Option<Vec<(f64, f64)>> {
    let p = positive.iter().filter(|&&b| b).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 || scores.len() != positive.len() {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    for (k, &i) in idx.iter().enumerate() {
        if positive[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = idx.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            out.push((fp as f64 / n as f64, tp as f64 / p as f64));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_of_a_perfect_and_a_tied_score() {
        let r = roc_curve(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]).unwrap();
        assert_eq!(r, vec![(0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (0.5, 1.0), (1.0, 1.0)]);
        let t = roc_curve(&[1.0, 1.0], &[true, false]).unwrap();
        assert_eq!(t, vec![(0.0, 0.0), (1.0, 1.0)]);
        assert!(roc_curve(&[1.0], &[true]).is_none());
    }

    #[test]
    fn curves_are_clipped_at_the_limit() {
        let c = clip(&[(0.0, 0.0), (0.2, 0.4), (0.4, 0.8), (1.0, 1.0)], 0.3);
        assert_eq!(c.len(), 3);
        assert!((c[2].0 - 0.3).abs() < 1e-12 && (c[2].1 - 0.6).abs() < 1e-12, "{c:?}");
        assert_eq!(clip(&[(0.0, 0.0), (0.3, 0.5), (0.5, 1.0)], 0.3), vec![(0.0, 0.0), (0.3, 0.5)]);
    }

    #[test]
    fn a_curve_renders_to_a_png_with_the_curve_colour() {
        let pts = [(0.0, 0.0), (0.1, 0.8), (1.0, 1.0)];
        let png = render_png(&CurvePlot { points: &pts, x_max: 1.0, diagonal: true }).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (SIZE, SIZE));
        let blue = img.pixels().filter(|p| p.0 == [31, 91, 180]).count();
        assert!(blue > 100, "{blue} curve pixels");
    }
}
