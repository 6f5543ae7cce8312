//! One table model, three small renderers: Markdown, HTML and CSV. Every table of the report is
//! built once as a [`Table`] and rendered by these.

use std::fmt::Write as _;

use crate::html::esc;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// Plain text.
    Text(String),
    /// Text set as code (Markdown backticks, HTML `<code>`).
    Code(String),
    /// A number shown with `decimals` decimals; `None` is a missing value (`—` in Markdown and
    /// HTML, empty in CSV). `signed` numbers show their sign (`+1.20`) and are coloured in HTML.
    Num { value: Option<f64>, decimals: usize, signed: bool },
}

impl Cell {
    pub(crate) fn text(s: impl Into<String>) -> Self {
        Cell::Text(s.into())
    }

    /// A number; NaN (a metric that was not computed, e.g. pixel metrics without masks) is
    /// shown as absent (—).
    pub(crate) fn num(value: f64, decimals: usize) -> Self {
        Cell::Num { value: Some(value).filter(|v| !v.is_nan()), decimals, signed: false }
    }

    pub(crate) fn opt(value: Option<f64>, decimals: usize) -> Self {
        Cell::Num { value, decimals, signed: false }
    }

    pub(crate) fn diff(value: Option<f64>, decimals: usize) -> Self {
        Cell::Num { value, decimals, signed: true }
    }

    pub(crate) fn int(value: u64) -> Self {
        Cell::Num { value: Some(value as f64), decimals: 0, signed: false }
    }

    fn is_num(&self) -> bool {
        matches!(self, Cell::Num { .. })
    }

    /// The cell as Markdown and HTML show it (before escaping).
    fn shown(&self) -> String {
        match self {
            Cell::Text(s) | Cell::Code(s) => s.clone(),
            Cell::Num { value: None, .. } => "—".into(),
            Cell::Num { value: Some(v), decimals, signed } => {
                let d = *decimals;
                if *signed {
                    format!("{v:+.d$}")
                } else {
                    format!("{v:.d$}")
                }
            }
        }
    }
}

/// A row; a summary row (a mean) is set in bold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub cells: Vec<Cell>,
    pub summary: bool,
}

impl Row {
    pub(crate) fn new(cells: Vec<Cell>) -> Self {
        Row { cells, summary: false }
    }
}

/// A table: an id (the HTML element's), an optional caption, column headers and rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub id: String,
    pub caption: Option<String>,
    pub headers: Vec<String>,
    pub rows: Vec<Row>,
}

impl Table {
    pub(crate) fn new(id: &str, headers: &[&str]) -> Self {
        Table {
            id: id.into(),
            caption: None,
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, cells: Vec<Cell>) {
        self.rows.push(Row::new(cells));
    }

    /// Whether column `i` holds numbers (right-aligned).
    fn numeric(&self, i: usize) -> bool {
        self.rows.iter().any(|r| r.cells.get(i).is_some_and(Cell::is_num))
    }

    /// A GitHub-flavoured Markdown table, the caption in italics above it; numeric columns are
    /// right-aligned, `|` is escaped.
    pub(crate) fn to_markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut s = String::new();
        if let Some(c) = &self.caption {
            let _ = writeln!(s, "*{}*\n", cell(c));
        }
        let _ = writeln!(
            s,
            "| {} |",
            self.headers.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
        );
        let rules: Vec<&str> =
            (0..self.headers.len()).map(|i| if self.numeric(i) { "---:" } else { "---" }).collect();
        let _ = writeln!(s, "| {} |", rules.join(" | "));
        for row in &self.rows {
            let cells: Vec<String> = (0..self.headers.len())
                .map(|i| {
                    let Some(c) = row.cells.get(i) else { return String::new() };
                    let text = match c {
                        Cell::Code(t) => format!("`{}`", cell(t).replace('`', "'")),
                        other => cell(&other.shown()),
                    };
                    if row.summary && !text.is_empty() {
                        format!("**{text}**")
                    } else {
                        text
                    }
                })
                .collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        s
    }

    /// An HTML `<table>` with its id; numeric cells have the class `n`, signed ones also `pos` or
    /// `neg`; summary rows the class `mean`.
    pub(crate) fn to_html(&self) -> String {
        let mut s = format!("<table id=\"{}\">", esc(&self.id));
        if let Some(c) = &self.caption {
            let _ = write!(s, "<caption>{}</caption>", esc(c));
        }
        s.push_str("<thead><tr>");
        for h in &self.headers {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr></thead><tbody>\n");
        for row in &self.rows {
            s.push_str(if row.summary { "<tr class=\"mean\">" } else { "<tr>" });
            for i in 0..self.headers.len() {
                match row.cells.get(i) {
                    None => s.push_str("<td></td>"),
                    Some(Cell::Code(t)) => {
                        let _ = write!(s, "<td><code>{}</code></td>", esc(t));
                    }
                    Some(Cell::Text(t)) => {
                        let _ = write!(s, "<td>{}</td>", esc(t));
                    }
                    Some(c @ Cell::Num { value, signed, .. }) => {
                        let sign = match (signed, value) {
                            (true, Some(v)) if *v >= 0.0 => " pos",
                            (true, Some(_)) => " neg",
                            _ => "",
                        };
                        let _ = write!(s, "<td class=\"n{sign}\">{}</td>", esc(&c.shown()));
                    }
                }
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody></table>\n");
        s
    }

    /// CSV (RFC 4180): the headers, then one line per row; fields with a comma, a quote or a line
    /// break are quoted; missing numbers are empty, signs only on negative numbers; the caption is
    /// left out.
    pub(crate) fn to_csv(&self) -> String {
        let field = |s: &str| ikd_io::csv_field(s).into_owned();
        let mut s = String::new();
        let _ =
            writeln!(s, "{}", self.headers.iter().map(|h| field(h)).collect::<Vec<_>>().join(","));
        for row in &self.rows {
            let cells: Vec<String> = (0..self.headers.len())
                .map(|i| match row.cells.get(i) {
                    None | Some(Cell::Num { value: None, .. }) => String::new(),
                    Some(Cell::Text(t) | Cell::Code(t)) => field(t),
                    Some(Cell::Num { value: Some(v), decimals, .. }) => {
                        let d = *decimals;
                        format!("{v:.d$}")
                    }
                })
                .collect();
            let _ = writeln!(s, "{}", cells.join(","));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new("results", &["category", "AUROC", "Δ", "setting"]);
        t.caption = Some("Pixel AUROC in %".into());
        t.push(vec![
            Cell::text("a,b"),
            Cell::num(97.123, 2),
            Cell::diff(Some(-1.5), 2),
            Cell::Code("x|y".into()),
        ]);
        t.push(vec![Cell::text("c\"d"), Cell::num(90.0, 2), Cell::diff(None, 2)]);
        t.rows.push(Row {
            cells: vec![Cell::text("mean (2)"), Cell::num(93.5615, 2), Cell::diff(Some(0.25), 2)],
            summary: true,
        });
        t
    }

    #[test]
    fn markdown_aligns_numbers_escapes_pipes_and_bolds_means() {
        let md = table().to_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "*Pixel AUROC in %*");
        assert_eq!(lines[2], "| category | AUROC | Δ | setting |");
        assert_eq!(lines[3], "| --- | ---: | ---: | --- |");
        assert_eq!(lines[4], "| a,b | 97.12 | -1.50 | `x\\|y` |");
        assert_eq!(lines[5], "| c\"d | 90.00 | — |  |");
        assert_eq!(lines[6], "| **mean (2)** | **93.56** | **+0.25** |  |");
    }

    #[test]
    fn html_marks_numbers_signs_and_means() {
        let html = table().to_html();
        assert!(html.starts_with("<table id=\"results\"><caption>Pixel AUROC in %</caption>"));
        assert!(html.contains("<th>Δ</th>"));
        assert!(html.contains(
            "<tr><td>a,b</td><td class=\"n\">97.12</td><td class=\"n neg\">-1.50</td><td><code>x|y</code></td></tr>"
        ));
        assert!(html.contains(
            "<td>c&quot;d</td><td class=\"n\">90.00</td><td class=\"n\">—</td><td></td>"
        ));
        assert!(html.contains("<tr class=\"mean\"><td>mean (2)</td>"));
        assert!(html.contains("<td class=\"n pos\">+0.25</td>"));
    }

    #[test]
    fn csv_quotes_and_leaves_missing_values_empty() {
        let csv = table().to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "category,AUROC,Δ,setting");
        assert_eq!(lines[1], "\"a,b\",97.12,-1.50,x|y");
        assert_eq!(lines[2], "\"c\"\"d\",90.00,,");
        assert_eq!(lines[3], "mean (2),93.56,0.25,");
    }
}
