//! The legend under the time axis: each mark the panels draw, drawn the same way, with
//! what it means. Items run left to right and wrap to a new row at the drawing's edge.

use std::fmt::Write;

use super::{text_width, FLIP_COLOR, LIMIT_STYLE, RESTART_STYLE, SERIES_COLOR, X1};

/// A row's height, pixels.
const ROW: u32 = 20;
/// A sample mark's width, and the room between items.
const MARK: f64 = 18.0;
const GAP: f64 = 14.0;
const FONT: f64 = 12.0;
const START: f64 = 10.0;

/// How an item's sample mark is drawn.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Series,
    Limit,
    Band,
    Flip,
    Restart,
    Exhaustion,
    Lead,
}

/// The items, in the order a reader meets them.
pub const ITEMS: [(&str, &str); 7] = [
    ("series", "series"),
    ("limit", "limit"),
    ("band", "/healthz would answer 503"),
    ("flip", "flip to 503"),
    ("restart", "restart"),
    ("exhaustion", "exhaustion"),
    ("lead", "lead: flip to exhaustion/restart"),
];

const MARKS: [Mark; 7] = [
    Mark::Series,
    Mark::Limit,
    Mark::Band,
    Mark::Flip,
    Mark::Restart,
    Mark::Exhaustion,
    Mark::Lead,
];

/// Each item's x and row.
fn layout() -> Vec<(f64, u32)> {
    let mut x = START;
    let mut row = 0;
    let mut out = Vec::new();
    for (_, text) in ITEMS {
        let w = MARK + 6.0 + text_width(text, FONT);
        if x > START && x + w > X1 {
            x = START;
            row += 1;
        }
        out.push((x.round(), row));
        x += w + GAP;
    }
    out
}

/// The legend's height, pixels.
pub fn height() -> u32 {
    let rows = layout().last().map_or(0, |(_, row)| row + 1);
    rows * ROW + 10
}

/// The legend with its top at `top`.
pub fn draw(out: &mut String, top: u32) {
    let _ = writeln!(out, "<g class=\"legend\">");
    for (((class, text), mark), (x, row)) in ITEMS.iter().zip(MARKS).zip(layout()) {
        let y = f64::from(top + row * ROW) + 10.0;
        let _ = writeln!(out, "<g class=\"legend-{class}\">");
        sample(out, mark, x, y);
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{text}</text>\n</g>",
            x + MARK + 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(out, "</g>");
}

/// A mark `MARK` wide from `x`, centred on `y`.
fn sample(out: &mut String, mark: Mark, x: f64, y: f64) {
    let (x1, mid) = (x + MARK, x + MARK / 2.0);
    let (top, bottom) = (y - 7.0, y + 7.0);
    let hline =
        |style: &str| format!("<line x1=\"{x}\" y1=\"{y}\" x2=\"{x1}\" y2=\"{y}\" {style}/>");
    let vline = |style: &str| {
        format!("<line x1=\"{mid}\" y1=\"{top}\" x2=\"{mid}\" y2=\"{bottom}\" {style}/>")
    };
    let svg = match mark {
        Mark::Series => hline(&format!("stroke=\"{SERIES_COLOR}\" stroke-width=\"2\"")),
        Mark::Limit => hline(LIMIT_STYLE),
        Mark::Band => format!(
            "<rect x=\"{x}\" y=\"{top}\" width=\"{MARK}\" height=\"14\" fill=\"{FLIP_COLOR}\" fill-opacity=\"0.15\"/>"
        ),
        Mark::Flip => vline(&format!("stroke=\"{FLIP_COLOR}\" stroke-width=\"2\"")),
        Mark::Restart => vline(RESTART_STYLE),
        Mark::Exhaustion => format!("<circle cx=\"{mid}\" cy=\"{y}\" r=\"4\" fill=\"black\"/>"),
        Mark::Lead => format!(
            "<path d=\"M{x},{top} L{x},{bottom} M{x},{y} L{x1},{y} M{},{} L{x1},{y} L{},{} M{x1},{top} L{x1},{bottom}\" stroke=\"#222\" stroke-width=\"1.5\" fill=\"none\"/>",
            x1 - 6.0,
            y - 4.0,
            x1 - 6.0,
            y + 4.0
        ),
    };
    let _ = writeln!(out, "{svg}");
}
