//! The table of medians and ratios, the machine it ran on, and the section
//! of bench/RESULTS.md that holds them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use crate::Failure;

/// Samples per (measure, server), one per round.
#[derive(Default)]
pub struct Samples(BTreeMap<(&'static str, &'static str), Vec<f64>>);

impl Samples {
    pub fn add(&mut self, measure: &'static str, server: &'static str, value: f64) {
        self.0.entry((measure, server)).or_default().push(value);
    }

    pub fn median(&self, measure: &'static str, server: &'static str) -> Option<f64> {
        median(self.0.get(&(measure, server))?.clone())
    }

    /// The median over rounds of `server`'s figure divided by `other`'s in
    /// the same round: measured minutes apart, the pair shares the machine's
    /// state, which drifts between rounds.
    pub fn median_ratio(&self, measure: &'static str, server: &'static str, other: &'static str) -> Option<f64> {
        self.median_ratio_between((measure, server), (measure, other))
    }

    /// As `median_ratio`, for any two (measure, server) series recorded in
    /// the same rounds.
    pub fn median_ratio_between(&self, ours: (&'static str, &'static str), theirs: (&'static str, &'static str)) -> Option<f64> {
        let (ours, theirs) = (self.0.get(&ours)?, self.0.get(&theirs)?);
        median(ours.iter().zip(theirs).filter(|(_, t)| **t > 0.0).map(|(o, t)| o / t).collect())
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// One row of the table: a measure, its unit and how to print it.
pub struct Measure {
    pub scenario: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub decimals: usize,
}

pub fn table(samples: &Samples, measures: &[Measure]) -> String {
    let mut text = String::from(
        "| scenario | measure | keyfront | nginx | ceiling | keyfront / nginx | keyfront / ceiling |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for measure in measures {
        let value = |server| samples.median(measure.name, server);
        let shown = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.*}", measure.decimals));
        let (keyfront, nginx, ceiling) = (value("keyfront"), value("nginx"), value("ceiling"));
        let ratio = |other| {
            samples
                .median_ratio(measure.name, "keyfront", other)
                .map_or("-".to_owned(), |r| format!("{r:.2}"))
        };
        let _ = writeln!(
            text,
            "| {} | {} ({}) | {} | {} | {} | {} | {} |",
            measure.scenario,
            measure.name,
            measure.unit,
            shown(keyfront),
            shown(nginx),
            shown(ceiling),
            ratio("nginx"),
            ratio("ceiling")
        );
    }
    text
}

/// A row of keyfront's figure beside a reference measured in the same
/// rounds: its own hits, or its origin.
pub struct Reference {
    pub scenario: &'static str,
    pub measure: &'static str,
    /// The (measure, server) series it is divided by.
    pub reference: (&'static str, &'static str),
    pub unit: &'static str,
    pub decimals: usize,
}

pub fn reference_table(samples: &Samples, rows: &[Reference]) -> String {
    let mut text = String::from(
        "| scenario | measure | keyfront | reference | reference figure | keyfront / reference |\n|---|---|---:|---|---:|---:|\n",
    );
    for row in rows {
        let shown = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.*}", row.decimals));
        let (measure, server) = row.reference;
        let _ = writeln!(
            text,
            "| {} | {} ({}) | {} | {server}: {measure} | {} | {} |",
            row.scenario,
            row.measure,
            row.unit,
            shown(samples.median(row.measure, "keyfront")),
            shown(samples.median(measure, server)),
            samples
                .median_ratio_between((row.measure, "keyfront"), row.reference)
                .map_or("-".to_owned(), |r| format!("{r:.2}"))
        );
    }
    text
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program).args(args).output().map_or_else(
        |_| format!("{program}: not found"),
        |output| {
            let text = [output.stdout, output.stderr].concat();
            String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_owned()
        },
    )
}

/// `nproc`, the CPU model, the kernel and the versions of everything measured.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap_or_default();
    let pingora = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"pingora\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .unwrap_or("?")
        .trim_matches('"');
    format!(
        "- machine: {} cores (`nproc`), {model}, Linux {}\n- keyfront {} (git {}), pingora {pingora}, {}\n- {}, {}\n",
        crate::threads(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        env!("CARGO_PKG_VERSION"),
        command_line("git", &["rev-parse", "--short", "HEAD"]),
        command_line("rustc", &["--version"]),
        command_line(crate::servers::nginx_binary(), &["-v"]),
        command_line("wrk", &["--version"]).split(" Copyright").next().unwrap_or_default(),
    )
}

const BEGIN: &str = "<!-- bench/compare: begin -->";
const END: &str = "<!-- bench/compare: end -->";

/// Replaces the generated section of bench/RESULTS.md (or appends one).
pub fn write_results(section: &str) -> Result<(), Failure> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/RESULTS.md");
    let text = std::fs::read_to_string(path)?;
    let generated = format!("{BEGIN}\n{section}{END}");
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if begin < end => format!("{}{generated}{}", &text[..begin], &text[end + END.len()..]),
        _ => format!("{}\n{generated}\n", text.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
