//! The results table: printed as it fills, and optionally written as
//! Markdown (with the machine it ran on) for BENCHMARKS.md.

use std::fmt::Write as _;
use std::process::Command;

pub struct Row {
    pub scenario: String,
    pub figure: String,
    pub value: String,
    pub goal: String,
    /// `None`: a figure without a goal (or a quick run, which checks none).
    pub met: Option<bool>,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn push(
        &mut self,
        scenario: &str,
        figure: &str,
        value: String,
        goal: &str,
        met: Option<bool>,
    ) {
        let row = Row {
            scenario: scenario.to_owned(),
            figure: figure.to_owned(),
            value,
            goal: goal.to_owned(),
            met,
        };
        eprintln!(
            "  {:<14} {}: {} {}",
            row.scenario,
            row.figure,
            row.value,
            met_text(&row)
        );
        self.rows.push(row);
    }

    pub fn missed(&self) -> usize {
        self.rows.iter().filter(|r| r.met == Some(false)).count()
    }

    /// A plain-text table for the terminal.
    pub fn table(&self) -> String {
        let headers = ["scenario", "figure", "value", "goal", "met?"];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.scenario.clone(),
                    r.figure.clone(),
                    r.value.clone(),
                    r.goal.clone(),
                    met_text(r),
                ]
            })
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..5).map(width).collect();
        let line = |c: &[String]| {
            let mut s = String::new();
            for (i, cell) in c.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let _ = write!(s, "{cell}{}  ", " ".repeat(pad));
            }
            s.trim_end().to_owned() + "\n"
        };
        let mut out = line(&headers.map(String::from));
        out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
        for c in &cells {
            out += &line(c);
        }
        out
    }

    /// The table in Markdown.
    pub fn markdown(&self) -> String {
        let mut out =
            String::from("| scenario | figure | value | goal | met? |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let cell = |c: &str| c.replace('|', "\\|");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&r.scenario),
                cell(&r.figure),
                cell(&r.value),
                cell(&r.goal),
                met_text(r)
            );
        }
        out
    }
}

fn met_text(r: &Row) -> String {
    match r.met {
        Some(true) => "yes".into(),
        Some(false) => "**NO**".into(),
        None if r.goal.is_empty() => String::new(),
        None => "(not checked)".into(),
    }
}

/// `date`, `nproc`, `free -h`, the CPU model, the load: where and when.
pub fn machine() -> String {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_owned())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    format!(
        "date: {}\nnproc: {}\nCPU: {}\nkernel: {}\nload average at start: {}\nfree -h:\n{}\n",
        run("date", &[]),
        run("nproc", &[]),
        cpu,
        run("uname", &["-sr"]),
        load_average(),
        run("free", &["-h"]),
    )
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
