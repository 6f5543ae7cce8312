//! Charts as SVG text for the HTML report: polylines for the series, lines for the grid and the
//! frame, and `<text>` for the title, the legend, the tick labels and the axis titles, which the
//! browser sets in its own fonts (no font file needed here). The axis titles carry the classes
//! `axis-title x` / `axis-title y` and the ids `<chart id>-x-title` / `<chart id>-y-title`; tick
//! labels the classes `tick-label x` / `tick-label y`.

use std::fmt::Write as _;

use crate::chart::{Chart, GREY};
use crate::html::esc;

/// Width and height of a chart, in CSS pixels.
pub(crate) const WIDTH: f64 = 330.0;
pub(crate) const HEIGHT: f64 = 250.0;
/// The plot's left edge, unless long y tick labels need more room.
const LEFT: f64 = 62.0;
const RIGHT: f64 = WIDTH - 16.0;
const TOP: f64 = 46.0;
const BOTTOM: f64 = HEIGHT - 48.0;
const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";

/// The chart as an `<svg>` element.
pub(crate) fn render(chart: &Chart) -> String {
    let id = esc(&chart.id);
    // Room for the y tick labels (about 6.6 px a character at 11 px) and the y axis title.
    let widest = chart.y.ticks.iter().map(|&t| chart.y.label(t).len()).max().unwrap_or(0);
    let left = (LEFT.max(24.0 + 6.6 * widest as f64) * 10.0).round() / 10.0;
    let px = |x: f64| left + chart.x.fraction(x) * (RIGHT - left);
    let py = |y: f64| BOTTOM - chart.y.fraction(y) * (BOTTOM - TOP);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"{id}\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"{id}-title\" {FONT}>"
    );
    let _ = write!(s, "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>");
    // A title too long for the chart (about 7.5 px a bold character at 13 px) is squeezed to fit.
    let room = WIDTH - 12.0;
    let squeeze = if 7.5 * chart.title.chars().count() as f64 > room {
        format!(" textLength=\"{room}\" lengthAdjust=\"spacingAndGlyphs\"")
    } else {
        String::new()
    };
    let _ = write!(
        s,
        "<text class=\"chart-title\" id=\"{id}-title\" x=\"{:.1}\" y=\"17\" font-size=\"13\" \
         font-weight=\"bold\" text-anchor=\"middle\" fill=\"#222222\"{squeeze}>{}</text>",
        WIDTH / 2.0,
        esc(&chart.title)
    );

    // Grid lines and tick marks.
    s.push_str("<g class=\"grid\" stroke=\"#e4e4e4\" stroke-width=\"1\">");
    for &t in &chart.x.ticks {
        let x = px(t);
        let _ = write!(s, "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{BOTTOM}\"/>");
    }
    for &t in &chart.y.ticks {
        let y = py(t);
        let _ = write!(s, "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{RIGHT}\" y2=\"{y:.1}\"/>");
    }
    s.push_str("</g>");

    // The series, clipped to the plot area by the chart's axes.
    s.push_str("<g class=\"series\" fill=\"none\" stroke-linejoin=\"round\">");
    for (i, series) in chart.series.iter().enumerate() {
        let pts = chart.drawn_points(series);
        let dash = if series.dashed { " stroke-dasharray=\"5 4\"" } else { "" };
        let width = if series.color == GREY { 1.5 } else { 2.0 };
        let coords: Vec<String> =
            pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = write!(
            s,
            "<polyline class=\"series-{i}\" stroke=\"{}\" stroke-width=\"{width}\"{dash} \
             points=\"{}\"/>",
            series.color.hex(),
            coords.join(" ")
        );
        if pts.len() == 1 {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                px(pts[0].0),
                py(pts[0].1),
                series.color.hex()
            );
        }
    }
    s.push_str("</g>");
    let _ = write!(
        s,
        "<rect class=\"frame\" x=\"{left}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" \
         fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>",
        RIGHT - left,
        BOTTOM - TOP
    );

    // Tick labels.
    s.push_str("<g class=\"ticks\" font-size=\"11\" fill=\"#333333\">");
    for &t in &chart.x.ticks {
        let _ = write!(
            s,
            "<text class=\"tick-label x\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            px(t),
            BOTTOM + 15.0,
            chart.x.label(t)
        );
    }
    for &t in &chart.y.ticks {
        let _ = write!(
            s,
            "<text class=\"tick-label y\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 5.0,
            py(t) + 4.0,
            chart.y.label(t)
        );
    }
    s.push_str("</g>");

    // Axis titles.
    let _ = write!(
        s,
        "<text class=\"axis-title x\" id=\"{id}-x-title\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" \
         text-anchor=\"middle\" fill=\"#222222\">{}</text>",
        (left + RIGHT) / 2.0,
        HEIGHT - 12.0,
        esc(&chart.x.title)
    );
    let (yx, yy) = (15.0, (TOP + BOTTOM) / 2.0);
    let _ = write!(
        s,
        "<text class=\"axis-title y\" id=\"{id}-y-title\" x=\"{yx}\" y=\"{yy:.1}\" font-size=\"12\" \
         text-anchor=\"middle\" fill=\"#222222\" transform=\"rotate(-90 {yx} {yy:.1})\">{}</text>",
        esc(&chart.y.title)
    );

    // The legend: one row between the title and the plot.
    s.push_str("<g class=\"legend\" font-size=\"11\" fill=\"#333333\">");
    let mut x = left;
    for series in &chart.series {
        let dash = if series.dashed { " stroke-dasharray=\"5 4\"" } else { "" };
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"32\" x2=\"{:.1}\" y2=\"32\" stroke=\"{}\" \
             stroke-width=\"2\"{dash}/><text class=\"legend-label\" x=\"{:.1}\" y=\"36\">{}</text>",
            x + 18.0,
            series.color.hex(),
            x + 22.0,
            esc(&series.name)
        );
        x += 22.0 + 6.2 * series.name.chars().count() as f64 + 12.0;
    }
    s.push_str("</g></svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{Axis, Series, BLUE};

    fn chart() -> Chart {
        let mut chance = Series::new("chance", vec![(0.0, 0.0), (1.0, 1.0)], GREY);
        chance.dashed = true;
        Chart {
            id: "a&b-roc".into(),
            title: "a&b: ROC".into(),
            x: Axis::fixed("False positive rate", 0.0, 1.0, 0.2),
            y: Axis::fixed("True positive rate", 0.0, 1.0, 0.2),
            series: vec![
                Series::new("image-level ROC", vec![(0.0, 0.0), (0.0, 0.5), (1.0, 1.0)], BLUE),
                chance,
            ],
        }
    }

    #[test]
    fn the_svg_has_titles_ticks_legend_and_lines() {
        let svg = render(&chart());
        assert!(svg.starts_with(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"a&amp;b-roc\""
        ));
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains(
            "<text class=\"axis-title x\" id=\"a&amp;b-roc-x-title\" x=\"188.0\" y=\"238.0\" \
             font-size=\"12\" text-anchor=\"middle\" fill=\"#222222\">False positive rate</text>"
        ));
        assert!(svg.contains(">True positive rate</text>") && svg.contains("rotate(-90 15 124.0)"));
        assert_eq!(svg.matches("<text class=\"tick-label x\"").count(), 6);
        assert_eq!(svg.matches("<text class=\"tick-label y\"").count(), 6);
        for label in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] {
            // One x and one y tick label each.
            assert_eq!(svg.matches(&format!("\">{label}</text>")).count(), 2, "{label}");
        }
        assert!(svg.contains(">a&amp;b: ROC</text>"));
        assert!(svg.contains(">image-level ROC</text>") && svg.contains(">chance</text>"));
        // The curve from (0, 0) up the left edge to (0, 0.5), then to (1, 1).
        assert!(svg.contains("points=\"62.0,202.0 62.0,124.0 314.0,46.0\""), "{svg}");
        assert!(svg.contains("stroke-dasharray"));
    }

    #[test]
    fn long_tick_labels_move_the_plot_right() {
        let mut c = chart();
        c.y = Axis::fixed("Loss", 0.0123, 0.0125, 0.00005);
        let svg = render(&c);
        assert!(svg.contains(">0.01230</text>"), "{svg}");
        // 7 characters: the plot starts at 24 + 7 × 6.6 = 70.2 instead of 62.
        assert!(svg.contains("<rect class=\"frame\" x=\"70.2\""), "{svg}");
    }

    #[test]
    fn long_titles_are_squeezed_into_the_chart() {
        let mut c = chart();
        assert!(!render(&c).contains("textLength"));
        c.title = "a-run-with-a-long-experiment-name (its-folder): image-level ROC".into();
        assert!(render(&c).contains("textLength=\"318\" lengthAdjust=\"spacingAndGlyphs\">a-run"));
    }

    #[test]
    fn a_single_point_is_a_dot() {
        let mut c = chart();
        c.series.truncate(1);
        c.series[0].points = vec![(0.5, 0.5)];
        assert!(render(&c).contains("<circle cx=\"188.0\" cy=\"124.0\" r=\"3\""));
    }
}
