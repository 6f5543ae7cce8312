//! The report as a list of blocks (headings, paragraphs, tables, charts, images), written out by
//! two renderers: [`crate::markdown::render`] and [`crate::html::render`].

use crate::chart::Chart;
use crate::table::Table;

/// A chart of the report: drawn as SVG in the HTML report, as the PNG file `png` (a path in the
/// report folder) in the Markdown report.
#[derive(Debug, Clone)]
pub(crate) struct ChartFigure {
    pub chart: Chart,
    pub png: String,
    /// What the chart shows, beyond its title and axes.
    pub note: String,
}

impl ChartFigure {
    /// The chart in words, for the Markdown report, whose PNG charts have no text: title, axes
    /// with their ranges, the series and the note (Markdown).
    pub(crate) fn describe(&self) -> String {
        let c = &self.chart;
        let axis = |a: &crate::chart::Axis| {
            format!("{} {}–{}", a.title.to_lowercase(), a.label(a.min), a.label(a.max))
        };
        let series: Vec<String> =
            c.series.iter().map(|s| format!("{} {}", s.color_name(), s.name)).collect();
        let mut s = format!(
            "**{}** — x: {}; y: {}; {}",
            c.title,
            axis(&c.x),
            axis(&c.y),
            series.join(", ")
        );
        if !self.note.is_empty() {
            s.push_str(". ");
            s.push_str(&self.note);
        }
        s.push('.');
        s
    }
}

/// An image file of the report folder (a path in it) with its caption.
#[derive(Debug, Clone)]
pub(crate) struct ImageFigure {
    pub rel: String,
    pub caption: String,
}

/// One block of the report.
#[derive(Debug, Clone)]
pub(crate) enum Block {
    /// A heading of level 1 to 4.
    Heading(u8, String),
    /// A paragraph; `code` spans in backticks; the id is the HTML element's.
    Para {
        id: Option<String>,
        text: String,
    },
    Table(Table),
    /// Charts side by side.
    Charts(Vec<ChartFigure>),
    /// Images side by side (the gallery).
    Images(Vec<ImageFigure>),
}

impl Block {
    pub(crate) fn heading(level: u8, text: impl Into<String>) -> Self {
        Block::Heading(level, text.into())
    }

    pub(crate) fn para(text: impl Into<String>) -> Self {
        Block::Para { id: None, text: text.into() }
    }
}
