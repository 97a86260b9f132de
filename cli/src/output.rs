//! Aligned tables for people, JSON for scripts.

use std::io::Write;

/// A table printed with columns padded to their widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let mut out = std::io::stdout().lock();
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            let mut s = String::new();
            for (i, c) in cells.enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(c);
                if i + 1 < widths.len() {
                    s.extend(std::iter::repeat_n(' ', widths[i].saturating_sub(c.chars().count())));
                }
            }
            s.trim_end().to_string()
        };
        writeln!(out, "{}", line(&mut self.headers.iter().copied()))?;
        for r in &self.rows {
            writeln!(out, "{}", line(&mut r.iter().map(String::as_str)))?;
        }
        Ok(())
    }
}

pub fn print_json(v: &serde_json::Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)
}

/// Renders a broker id list like `[1,2,3]`.
pub fn ids(v: &[i32]) -> String {
    let parts: Vec<String> = v.iter().map(i32::to_string).collect();
    parts.join(",")
}
