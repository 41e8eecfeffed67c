//! Results: rows of (benchmark, case, value, unit), an optional target met or missed, a
//! note; printed as a table and written as JSON.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub bench: String,
    pub case: String,
    pub unit: String,
    pub value: f64,
    pub note: String,
    /// The goal and whether it was met.
    pub target: Option<(String, bool)>,
    pub extra: serde_json::Value,
}

impl Row {
    pub fn new(bench: &str, case: &str, unit: &str, value: f64) -> Self {
        Self {
            bench: bench.into(),
            case: case.into(),
            unit: unit.into(),
            value,
            note: String::new(),
            target: None,
            extra: serde_json::Value::Null,
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    pub fn target(mut self, goal: &str, met: bool) -> Self {
        self.target = Some((goal.into(), met));
        self
    }
}

#[derive(Default, Serialize)]
pub struct Report {
    pub machine: serde_json::Value,
    pub command: String,
    pub rows: Vec<Row>,
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

impl Report {
    pub fn push(&mut self, row: Row) {
        println!(
            "  {:<12} {:<34} {:>12} {:<8} {}",
            row.bench,
            row.case,
            fmt_value(row.value),
            row.unit,
            row.note
        );
        self.rows.push(row);
    }

    /// The results as a Markdown table.
    pub fn table(&self) -> String {
        let mut t = String::from(
            "| bench | case | value | unit | target | note |\n|---|---|---:|---|---|---|\n",
        );
        for r in &self.rows {
            let target = match &r.target {
                Some((g, true)) => format!("{g}: met"),
                Some((g, false)) => format!("{g}: **missed**"),
                None => String::new(),
            };
            t += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.bench,
                r.case,
                fmt_value(r.value),
                r.unit,
                target,
                r.note
            );
        }
        t
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}
