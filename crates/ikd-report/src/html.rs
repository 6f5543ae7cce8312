//! The HTML report: one self-contained page, charts inline as SVG, images embedded as data URIs.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use crate::doc::Block;
use crate::Result;

/// `s` with `&`, `<`, `>` and `"` escaped.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Markdown's `code` spans of an escaped line as HTML `<code>` elements.
pub(crate) fn code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { format!("<code>{part}</code>") } else { part.to_string() })
        .collect()
}

const CSS: &str = "body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;\
color:#222;padding:0 1em}table{border-collapse:collapse;margin:1em 0}\
caption{text-align:left;font-size:14px;padding:4px 0;max-width:900px}\
th,td{border:1px solid #ccc;padding:4px 8px}th{background:#f0f0f0}\
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.mean td{font-weight:bold;\
background:#fafafa}.pos{color:#1a7f37}.neg{color:#c62828}\
.charts,.gallery{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}\
figure{margin:0}figure.chart{width:330px}figure.chart svg{display:block;border:1px solid #ddd}\
figcaption{font-size:12px;color:#444;margin-top:2px}figure.shot figcaption{max-width:480px}\
img.shot{height:150px;max-width:520px;border:1px solid #ddd}";

fn data_uri(dir: &Path, rel: &str) -> Result<String> {
    let path = dir.join(rel);
    let bytes = std::fs::read(&path).map_err(|e| ikd::Error::io(&path, e))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// The page of `blocks` titled `title`; images are read from the report folder `dir`.
pub(crate) fn render(title: &str, blocks: &[Block], dir: &Path) -> Result<String> {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{CSS}</style></head><body>\n",
        esc(title)
    );
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", esc(text));
            }
            Block::Para { id, text } => {
                let id = id.as_ref().map_or(String::new(), |i| format!(" id=\"{}\"", esc(i)));
                let _ = writeln!(s, "<p{id}>{}</p>", code_spans(&esc(text)));
            }
            Block::Table(t) => s.push_str(&t.to_html()),
            Block::Charts(figs) => {
                s.push_str("<div class=\"charts\">");
                for f in figs {
                    let _ = write!(s, "<figure class=\"chart\">{}", crate::svg::render(&f.chart));
                    if !f.note.is_empty() {
                        let _ = write!(s, "<figcaption>{}</figcaption>", esc(&f.note));
                    }
                    s.push_str("</figure>");
                }
                s.push_str("</div>\n");
            }
            Block::Images(figs) => {
                s.push_str("<div class=\"gallery\">");
                for f in figs {
                    let _ = write!(
                        s,
                        "<figure class=\"shot\"><img class=\"shot\" alt=\"{0}\" src=\"{1}\">\
                         <figcaption>{0}</figcaption></figure>",
                        esc(&f.caption),
                        data_uri(dir, &f.rel)?
                    );
                }
                s.push_str("</div>\n");
            }
        }
    }
    s.push_str("</body></html>\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_become_code_elements() {
        assert_eq!(code_spans("run `a b` or `c`."), "run <code>a b</code> or <code>c</code>.");
        assert_eq!(code_spans("no code"), "no code");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
