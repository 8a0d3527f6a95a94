//! A dependency-free SVG chart of the harness's results: grouped bars (testpmd io,
//! palisade, OVS-DPDK conntrack) of Mpps, one panel per sweep (flow count, policy
//! count). Missing figures are drawn as an empty slot marked "n/a".

use std::fmt::Write;

/// One group of bars: a label and one optional value per series.
pub struct Group {
    pub label: String,
    pub values: Vec<Option<f64>>,
}

/// One panel: a title, the x-axis name and its groups.
pub struct Panel {
    pub title: String,
    pub axis: String,
    pub groups: Vec<Group>,
}

pub const SERIES: [(&str, &str); 3] = [("testpmd io", "#8c8c8c"), ("palisade", "#1f77b4"), ("OVS-DPDK conntrack", "#d62728")];

const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 56.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 50.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A "nice" axis maximum and tick step at or above `max`.
fn axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| s * 5.0 >= max).unwrap_or(mag * 10.0);
    ((max / step).ceil() * step, step)
}

fn panel(svg: &mut String, p: &Panel, x0: f64) {
    let plot_w = PANEL_W - LEFT - 16.0;
    let plot_h = PANEL_H - BOTTOM;
    let max = p.groups.iter().flat_map(|g| g.values.iter().flatten()).fold(0.0f64, |a, &b| a.max(b));
    let (top, step) = axis(max * 1.1);
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#, x0 + LEFT, TOP - 14.0, escape(&p.title));
    let mut tick = 0.0;
    while tick <= top + 1e-9 {
        let ty = y(tick);
        let _ = writeln!(svg, r##"<line x1="{:.1}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/>"##, x0 + LEFT, x0 + LEFT + plot_w);
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#, x0 + LEFT - 6.0, ty + 4.0, tick);
        tick += step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle">Mpps</text>"#,
        x0 + 16.0,
        TOP + plot_h / 2.0,
        x0 + 16.0,
        TOP + plot_h / 2.0
    );
    let n = p.groups.len().max(1) as f64;
    let group_w = plot_w / n;
    let bar_w = group_w * 0.8 / SERIES.len() as f64;
    for (gi, g) in p.groups.iter().enumerate() {
        let gx = x0 + LEFT + gi as f64 * group_w + group_w * 0.1;
        for (si, (_, color)) in SERIES.iter().enumerate() {
            let bx = gx + si as f64 * bar_w;
            match g.values.get(si).copied().flatten() {
                Some(v) => {
                    let (by, bh) = (y(v), v / top * plot_h);
                    let _ = writeln!(svg, r#"<rect x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"/>"#, bar_w - 2.0);
                    let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{v:.1}</text>"#, bx + bar_w / 2.0 - 1.0, by - 3.0);
                }
                None => {
                    let _ = writeln!(svg, r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#999" text-anchor="middle">n/a</text>"##, bx + bar_w / 2.0 - 1.0, y(0.0) - 3.0);
                }
            }
        }
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#, gx + group_w * 0.4, TOP + plot_h + 16.0, escape(&g.label));
    }
    let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#, x0 + LEFT + plot_w / 2.0, TOP + plot_h + 36.0, escape(&p.axis));
    let _ = writeln!(svg, r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##, x0 + LEFT, y(0.0), x0 + LEFT + plot_w, y(0.0));
}

/// The whole chart: `panels` side by side under `title`, a legend, `note` at the foot.
pub fn svg(title: &str, panels: &[Panel], note: &str) -> String {
    let width = PANEL_W * panels.len().max(1) as f64;
    let height = TOP + PANEL_H + 30.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="12" y="22" font-size="15" font-weight="bold">{}</text>"#, escape(title));
    let mut lx = 12.0;
    for (name, color) in SERIES {
        let _ = writeln!(svg, r#"<rect x="{lx:.1}" y="32" width="12" height="12" fill="{color}"/>"#);
        let _ = writeln!(svg, r#"<text x="{:.1}" y="42" font-size="12">{}</text>"#, lx + 16.0, escape(name));
        lx += 28.0 + 7.0 * name.len() as f64;
    }
    for (i, p) in panels.iter().enumerate() {
        panel(&mut svg, p, i as f64 * PANEL_W);
    }
    let _ = writeln!(svg, r##"<text x="12" y="{:.1}" font-size="10" fill="#555">{}</text>"##, height - 8.0, escape(note));
    svg.push_str("</svg>\n");
    svg
}
