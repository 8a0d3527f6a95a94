//! `palisade matrix`: who can open a connection to whom, for one traffic class, as a
//! grid with a row per source and a column per destination: every pod that is an
//! endpoint, then every node with an address. Each cell is the compiled snapshot's own
//! `classify` verdict for the first addresses of the two ends (the destination's of the
//! source's family), so the grid shows exactly what the workers would do.

use super::PortArg;
use crate::model::Model;
use dataplane::snapshot::Snapshot;
use dataplane::{Classifier, Verdict};
use std::fmt::Write as _;
use std::net::IpAddr;

/// One row/column of the grid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// `ns/pod` or `node/NAME`.
    pub label: String,
    pub addrs: Vec<IpAddr>,
}

/// One cell: what happens when the row's party opens a connection to the column's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Row and column are the same party (always allowed).
    Same,
    /// The destination has no address of the source's family.
    NoCommonFamily,
    Allow { rules: Vec<String> },
    Deny { rules: Vec<String> },
}

impl Cell {
    fn symbol(&self) -> &'static str {
        match self {
            Cell::Same => "·",
            Cell::NoCommonFamily => "-",
            Cell::Allow { .. } => "✓",
            Cell::Deny { .. } => "✗",
        }
    }

    /// Hover text: the verdict and its deciding rules.
    fn detail(&self) -> String {
        let with = |word: &str, rules: &[String]| {
            if rules.is_empty() {
                format!("{word} (no policy isolates either end)")
            } else {
                format!("{word}: {}", rules.join(", "))
            }
        };
        match self {
            Cell::Same => "same endpoint".into(),
            Cell::NoCommonFamily => "no address of a common family".into(),
            Cell::Allow { rules } => with("allow", rules),
            Cell::Deny { rules } => with("deny", rules),
        }
    }
}

/// The grid. `cells[row][column]`: row = source, column = destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    pub traffic: PortArg,
    pub parties: Vec<Party>,
    pub cells: Vec<Vec<Cell>>,
}

/// Classify every ordered pair of endpoints with `snapshot`.
pub fn build(model: &Model, snapshot: &Snapshot, traffic: PortArg) -> Matrix {
    let mut parties: Vec<Party> = model
        .pods
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_endpoint())
        .map(|(i, p)| Party { label: model.pod_ref(i), addrs: p.addrs.clone() })
        .collect();
    parties.extend(
        model
            .nodes
            .iter()
            .filter(|n| !n.addrs.is_empty())
            .map(|n| Party { label: format!("node/{}", n.name), addrs: n.addrs.clone() }),
    );
    let cells = parties
        .iter()
        .enumerate()
        .map(|(r, src)| {
            parties
                .iter()
                .enumerate()
                .map(|(c, dst)| {
                    if r == c {
                        return Cell::Same;
                    }
                    let s = src.addrs[0];
                    let Some(d) = dst.addrs.iter().copied().find(|d| d.is_ipv4() == s.is_ipv4()) else {
                        return Cell::NoCommonFamily;
                    };
                    let verdict = snapshot.classify(s, d, traffic.proto_number(d.is_ipv4()), traffic.port.unwrap_or(0));
                    cell(&verdict, snapshot)
                })
                .collect()
        })
        .collect();
    Matrix { traffic, parties, cells }
}

fn cell(verdict: &Verdict, snapshot: &Snapshot) -> Cell {
    let rules = verdict.rules().map(|r| snapshot.rule_name(r).to_string()).collect();
    if verdict.is_allow() {
        Cell::Allow { rules }
    } else {
        Cell::Deny { rules }
    }
}

impl Matrix {
    fn title(&self) -> String {
        format!("Reachability for {}: row = source, column = destination", self.traffic)
    }

    fn summary(&self) -> String {
        let (mut allowed, mut denied) = (0, 0);
        for cell in self.cells.iter().flatten() {
            match cell {
                Cell::Allow { .. } => allowed += 1,
                Cell::Deny { .. } => denied += 1,
                _ => {}
            }
        }
        format!("{allowed} allowed, {denied} denied of {} ordered pairs", allowed + denied)
    }

    const LEGEND: &'static str = "✓ allowed   ✗ denied   · same endpoint   - no common address family";

    /// Aligned text: numbered rows, columns headed by the same numbers.
    pub fn to_text(&self) -> String {
        let n = self.parties.len();
        let num_w = n.to_string().len();
        let label_w = self.parties.iter().map(|p| p.label.chars().count()).max().unwrap_or(0);
        let col_w = num_w.max(1);
        let mut out = format!("{}\n{}\n\n", self.title(), Self::LEGEND);
        // Header: column numbers over the cells.
        let _ = write!(out, "{:w$}", "", w = num_w + 1 + label_w + 1);
        for c in 1..=n {
            let _ = write!(out, " {c:>col_w$}");
        }
        out.push('\n');
        for (r, party) in self.parties.iter().enumerate() {
            let _ = write!(out, "{:>num_w$} {:label_w$} ", r + 1, party.label);
            for cell in &self.cells[r] {
                let _ = write!(out, " {:>col_w$}", cell.symbol());
            }
            out.push('\n');
        }
        let _ = write!(out, "\n{}\n", self.summary());
        out
    }

    /// A self-contained HTML page: one table, colours for the verdicts, the deciding
    /// rules on hover.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(out, "<title>{}</title>", escape(&self.title()));
        out.push_str(
            "<style>\n\
             body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\n\
             table{border-collapse:collapse}\n\
             th,td{border:1px solid #ccc;padding:0;text-align:center}\n\
             th.col{writing-mode:vertical-rl;transform:rotate(180deg);padding:.4em .2em;font-weight:normal;white-space:nowrap}\n\
             th.row{text-align:right;padding:0 .5em;font-weight:normal;white-space:nowrap}\n\
             td{width:1.9em;height:1.9em;font-weight:bold}\n\
             td.allow{background:#c8e6c9;color:#1b5e20}\n\
             td.deny{background:#ffcdd2;color:#b71c1c}\n\
             td.same,td.none{background:#f3f3f3;color:#999}\n\
             caption{caption-side:top;text-align:left;margin-bottom:.6em}\n\
             </style>\n</head>\n<body>\n<table>\n",
        );
        let _ = writeln!(
            out,
            "<caption><strong>{}</strong><br>{}<br>{}</caption>",
            escape(&self.title()),
            escape(Self::LEGEND),
            escape(&self.summary())
        );
        out.push_str("<tr><th></th>");
        for p in &self.parties {
            let _ = write!(out, "<th class=\"col\" scope=\"col\">{}</th>", escape(&p.label));
        }
        out.push_str("</tr>\n");
        for (r, p) in self.parties.iter().enumerate() {
            let _ = write!(out, "<tr><th class=\"row\" scope=\"row\">{}</th>", escape(&p.label));
            for (c, cell) in self.cells[r].iter().enumerate() {
                let class = match cell {
                    Cell::Same => "same",
                    Cell::NoCommonFamily => "none",
                    Cell::Allow { .. } => "allow",
                    Cell::Deny { .. } => "deny",
                };
                let hover = format!("{} → {}: {}", p.label, self.parties[c].label, cell.detail());
                let _ = write!(out, "<td class=\"{class}\" title=\"{}\">{}</td>", escape(&hover), cell.symbol());
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n</body>\n</html>\n");
        out
    }

    /// A self-contained SVG: labelled rows, rotated column labels, coloured squares,
    /// the deciding rules in each square's `<title>`.
    pub fn to_svg(&self) -> String {
        const CELL: usize = 26;
        const CHAR: usize = 8; // approximate width of a 13px monospace character
        let n = self.parties.len();
        let label_w = self.parties.iter().map(|p| p.label.chars().count()).max().unwrap_or(0) * CHAR + 12;
        let header = [self.title(), Self::LEGEND.to_string(), self.summary()];
        let top = 24 + 18 * header.len() + label_w; // header lines, then the rotated column labels
        let header_w = header.iter().map(|l| l.chars().count()).max().unwrap_or(0) * CHAR + 20;
        let width = (label_w + n * CELL + 20).max(header_w);
        let height = top + n * CELL + 20;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"13\">\n"
        );
        let _ = writeln!(out, "<rect width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>");
        for (i, line) in header.iter().enumerate() {
            let weight = if i == 0 { " font-weight=\"bold\"" } else { "" };
            let _ = writeln!(out, "<text x=\"10\" y=\"{}\"{weight}>{}</text>", 20 + 18 * i, escape(line));
        }
        for (i, p) in self.parties.iter().enumerate() {
            let y = top + i * CELL + CELL / 2 + 4;
            let _ = writeln!(out, "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{}</text>", label_w - 6, escape(&p.label));
            let x = label_w + i * CELL + CELL / 2 + 4;
            let _ = writeln!(
                out,
                "<text x=\"{x}\" y=\"{}\" transform=\"rotate(-90 {x} {})\">{}</text>",
                top - 6,
                top - 6,
                escape(&p.label)
            );
        }
        for (r, row) in self.cells.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let (fill, ink) = match cell {
                    Cell::Allow { .. } => ("#c8e6c9", "#1b5e20"),
                    Cell::Deny { .. } => ("#ffcdd2", "#b71c1c"),
                    Cell::Same | Cell::NoCommonFamily => ("#f3f3f3", "#999999"),
                };
                let (x, y) = (label_w + c * CELL, top + r * CELL);
                let hover = format!("{} → {}: {}", self.parties[r].label, self.parties[c].label, cell.detail());
                let _ = writeln!(
                    out,
                    "<g><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{CELL}\" height=\"{CELL}\" fill=\"{fill}\" stroke=\"#cccccc\"/>\
                     <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ink}\" font-weight=\"bold\">{}</text></g>",
                    escape(&hover),
                    x + CELL / 2,
                    y + CELL / 2 + 5,
                    cell.symbol()
                );
            }
        }
        out.push_str("</svg>\n");
        out
    }
}

/// Escape text for HTML/XML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Offline;
    use std::path::Path;

    fn grid(dir: &str, port: &str) -> Matrix {
        let o = Offline::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir)).unwrap();
        build(&o.model, &o.compiled.snapshot, port.parse().unwrap())
    }

    fn symbols(m: &Matrix) -> Vec<String> {
        m.cells.iter().map(|row| row.iter().map(Cell::symbol).collect::<Vec<_>>().join(" ")).collect()
    }

    /// The Contrail book's outcomes: with policy1 only, client1-dev, client-jtac and
    /// cent222 reach webserver-dev, client2-dev, client-qa and cent333 do not, and
    /// webserver-dev reaches only dbserver-dev (and its own node cent222).
    #[test]
    fn contrail_lab_with_policy1() {
        let m = grid("examples/policies/lab", "tcp/80");
        let labels: Vec<_> = m.parties.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(
            labels,
            ["dev/client1-dev", "dev/client2-dev", "dev/webserver-dev", "dev/dbserver-dev", "jtac/client-jtac", "qa/client-qa", "node/cent222", "node/cent333"]
        );
        assert_eq!(
            symbols(&m),
            [
                "· ✓ ✓ ✓ ✓ ✓ ✓ ✓",
                "✓ · ✗ ✓ ✓ ✓ ✓ ✓",
                "✗ ✗ · ✓ ✗ ✗ ✓ ✗",
                "✓ ✓ ✗ · ✓ ✓ ✓ ✓",
                "✓ ✓ ✓ ✓ · ✓ ✓ ✓",
                "✓ ✓ ✗ ✓ ✓ · ✓ ✓",
                "✓ ✓ ✓ ✓ ✓ ✓ · ✓",
                "✓ ✓ ✗ ✓ ✓ ✓ ✓ ·",
            ]
        );
    }

    /// With policy2 as well, only webserver-dev (and dbserver-dev's node cent333)
    /// reach dbserver-dev, and dbserver-dev opens nothing but to its own node.
    #[test]
    fn contrail_lab_with_policy2_text() {
        let m = grid("examples/policies", "tcp/80");
        assert_eq!(
            m.to_text(),
            "Reachability for TCP port 80: row = source, column = destination\n\
             ✓ allowed   ✗ denied   · same endpoint   - no common address family\n\
             \n\
             \x20                    1 2 3 4 5 6 7 8\n\
             1 dev/client1-dev    · ✓ ✓ ✗ ✓ ✓ ✓ ✓\n\
             2 dev/client2-dev    ✓ · ✗ ✗ ✓ ✓ ✓ ✓\n\
             3 dev/webserver-dev  ✗ ✗ · ✓ ✗ ✗ ✓ ✗\n\
             4 dev/dbserver-dev   ✗ ✗ ✗ · ✗ ✗ ✗ ✓\n\
             5 jtac/client-jtac   ✓ ✓ ✓ ✗ · ✓ ✓ ✓\n\
             6 qa/client-qa       ✓ ✓ ✗ ✗ ✓ · ✓ ✓\n\
             7 node/cent222       ✓ ✓ ✓ ✗ ✓ ✓ · ✓\n\
             8 node/cent333       ✓ ✓ ✗ ✓ ✓ ✓ ✓ ·\n\
             \n\
             37 allowed, 19 denied of 56 ordered pairs\n"
        );
        // Another port: policy1 and policy2 allow only TCP 80, so webserver-dev and
        // dbserver-dev accept nobody on UDP 53 but their own nodes.
        let udp = grid("examples/policies", "udp/53");
        assert_eq!(symbols(&udp)[0], "· ✓ ✗ ✗ ✓ ✓ ✓ ✓");
    }

    #[test]
    fn html_and_svg_are_complete_documents() {
        let m = grid("examples/policies", "tcp/80");
        let html = m.to_html();
        assert!(html.starts_with("<!DOCTYPE html>\n") && html.ends_with("</html>\n"));
        assert_eq!(html.matches("<td ").count(), 64);
        assert_eq!(html.matches("class=\"deny\"").count(), 19);
        assert!(html.contains(
            "title=\"dev/client2-dev → dev/webserver-dev: deny: dev-ingress-default-deny\">✗</td>"
        ));
        let svg = m.to_svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 64);
        assert_eq!(svg.matches("<title>").count(), 64);
        assert!(svg.contains("<title>dev/client1-dev → dev/webserver-dev: allow: dev-ingress-policy1-0-podSelector-2-0</title>"));
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
