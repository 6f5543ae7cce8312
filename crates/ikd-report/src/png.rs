//! Charts as PNG images for the Markdown report (plotters' bitmap backend). No text is drawn, so
//! no system font is needed: the grid lines sit at the chart's ticks, and the Markdown report says
//! what the axes are (the HTML report's SVG charts carry their own axis text).

use plotters::prelude::*;

use crate::chart::{Chart, Rgb};
use crate::{ReportError, Result};

/// Side of the square chart images, in pixels.
pub(crate) const SIZE: u32 = 320;

fn color(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// Renders `chart` as a PNG image of `SIZE`² pixels.
pub(crate) fn render(chart: &Chart) -> Result<Vec<u8>> {
    let (w, h) = (SIZE, SIZE);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let err = |e: DrawingAreaErrorKind<_>| ReportError::Draw {
        what: format!("the chart {}", chart.id),
        msg: format!("{e:?}"),
    };
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let area = root.margin(12, 12, 12, 12);
        let (x, y) = (&chart.x, &chart.y);
        let mut plot =
            ChartBuilder::on(&area).build_cartesian_2d(x.min..x.max, y.min..y.max).map_err(err)?;
        let grid = RGBColor(225, 225, 225);
        for &t in x.ticks.iter().filter(|&&t| t > x.min && t < x.max) {
            plot.draw_series(LineSeries::new([(t, y.min), (t, y.max)], grid.stroke_width(1)))
                .map_err(err)?;
        }
        for &t in y.ticks.iter().filter(|&&t| t > y.min && t < y.max) {
            plot.draw_series(LineSeries::new([(x.min, t), (x.max, t)], grid.stroke_width(1)))
                .map_err(err)?;
        }
        let frame =
            [(x.min, y.min), (x.max, y.min), (x.max, y.max), (x.min, y.max), (x.min, y.min)];
        plot.draw_series(LineSeries::new(frame, BLACK.stroke_width(2))).map_err(err)?;
        for s in &chart.series {
            let pts = chart.drawn_points(s);
            let width = if s.dashed { 1 } else { 3 };
            plot.draw_series(LineSeries::new(pts, color(s.color).stroke_width(width)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| ReportError::Draw {
        what: format!("the chart {}", chart.id),
        msg: "the pixel buffer has the wrong size".into(),
    })?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| {
        ReportError::Draw { what: format!("the chart {}", chart.id), msg: e.to_string() }
    })?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{Axis, Series, BLUE, ORANGE};

    #[test]
    fn a_chart_renders_to_a_png_with_the_series_colours() {
        let chart = Chart {
            id: "t".into(),
            title: "t".into(),
            x: Axis::fixed("x", 0.0, 1.0, 0.2),
            y: Axis::fixed("y", 0.0, 1.0, 0.2),
            series: vec![
                Series::new("a", vec![(0.0, 0.0), (0.1, 0.8), (1.0, 1.0)], BLUE),
                Series::new("b", vec![(0.0, 0.5), (1.0, 0.5)], ORANGE),
            ],
        };
        let png = render(&chart).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (SIZE, SIZE));
        for c in [BLUE, ORANGE] {
            let n = img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
            assert!(n > 100, "{n} pixels of {c:?}");
        }
    }
}
