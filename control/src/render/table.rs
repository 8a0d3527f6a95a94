//! A plain-text table: a title, a header row and aligned columns separated by ` | `,
//! the way the CN2 documentation lays out its tags, address groups and rules.

/// Rows of cells under a header; every row has the header's number of cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Table {
        Table { title: title.to_string(), header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    /// The table as text: title, header, a `-+-` rule, then the rows; columns padded
    /// to their widest cell (counted in characters), no trailing spaces.
    pub fn to_text(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
                }
            }
            out.push('\n');
            out
        };
        let mut out = format!("{}\n", self.title);
        out.push_str(&line(&self.header));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rule.join("-+-"));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_text() {
        let mut t = Table::new("Tags", &["Key", "Value"]);
        t.push(vec!["role".into(), "db".into()]);
        t.push(vec!["namespace".into(), "✓".into()]);
        assert_eq!(
            t.to_text(),
            "Tags\nKey       | Value\n----------+------\nrole      | db\nnamespace | ✓\n"
        );
    }
}
