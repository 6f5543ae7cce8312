//! The Markdown report: tables as GitHub-flavoured Markdown, charts as the PNG files of the
//! report folder, each described in words in a list below them (the PNGs carry no text), images
//! by path.

use std::fmt::Write as _;

use crate::doc::Block;

/// The document of `blocks`.
pub(crate) fn render(blocks: &[Block]) -> String {
    let mut s = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "{} {text}\n", "#".repeat(usize::from(*level)));
            }
            Block::Para { text, .. } => {
                let _ = writeln!(s, "{text}\n");
            }
            Block::Table(t) => {
                let _ = writeln!(s, "{}", t.to_markdown());
            }
            Block::Charts(figs) => {
                let images: Vec<String> =
                    figs.iter().map(|f| format!("![{}]({})", f.chart.title, f.png)).collect();
                let _ = writeln!(s, "{}\n", images.join(" "));
                for f in figs {
                    let _ = writeln!(s, "- {}", f.describe());
                }
                s.push('\n');
            }
            Block::Images(figs) => {
                for f in figs {
                    let _ = writeln!(s, "![{0}]({1})  \n{0}\n", f.caption, f.rel);
                }
            }
        }
    }
    s
}
