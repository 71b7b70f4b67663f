//! Golden tests on captures from this machine (tests/fixtures/host, made by its capture.sh):
//! the report of each capture, restricted to the lab guest's vCPU threads, equals the
//! reviewed golden JSON and text beside it, and agrees with the ground truth the lab printed
//! when the capture was made. Re-bless with `KVMSCOPE_BLESS=1 cargo test --test
//! report_host_fixtures` after an intended change, and review the diff.

use std::path::{Path, PathBuf};

use kvmscope_analysis::{EventFilter, InputSummary, ReportBuilder};
use serde_json::Value;

mod support;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host")
}

/// One promise of the lab: (event, filter, exact count).
type Promise = (String, Option<String>, u64);

/// The vCPU tids and the promised rows from the lab's printout.
fn lab_truth(lab: &str) -> (Vec<u32>, Vec<Promise>) {
    let tids = lab
        .lines()
        .find_map(|l| {
            l.strip_prefix("threads ")
                .and_then(|l| l.split_once("vCPU tids "))
        })
        .map(|(_, t)| t.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .expect("vCPU tids line");
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in lab.lines() {
        if line.starts_with("ground truth:") {
            in_table = true;
            continue;
        }
        if in_table && line.trim().is_empty() {
            break;
        }
        let Some(rest) = line.trim().strip_prefix("kvm:") else {
            continue;
        };
        // EVENT  FILTER  COUNT  HOSTS  WHY: columns are separated by two or more spaces.
        let cols: Vec<&str> = rest
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let (event, filter, count, hosts) = (cols[0], cols[1], cols[2], cols[3]);
        if hosts != "any" && hosts != "pvm" {
            continue;
        }
        let Ok(count) = count.parse() else { continue }; // ranges are not exact promises
        rows.push((
            event.to_string(),
            (filter != "-").then(|| filter.to_string()),
            count,
        ));
    }
    (tids, rows)
}

fn golden(path: &Path, actual: &str) {
    if std::env::var_os("KVMSCOPE_BLESS").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing: run with KVMSCOPE_BLESS=1", path.display()));
    assert!(
        expected == actual,
        "{} differs from the report; diff it after KVMSCOPE_BLESS=1:\n{actual}",
        path.display()
    );
}

#[test]
fn host_captures_report_golden_and_ground_truth() {
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(stem) = name
            .strip_suffix(".txt")
            .or_else(|| name.strip_suffix(".perfscript"))
            .filter(|s| !s.contains('.'))
        else {
            continue;
        };
        n += 1;
        let lab = std::fs::read_to_string(dir().join(format!("{stem}.lab.txt"))).unwrap();
        let (tids, promises) = lab_truth(&lab);
        let filter = EventFilter {
            pids: Vec::new(),
            tids,
        };
        let mut builder = ReportBuilder::new();
        let stats = kvmscope_trace::text::decode(std::fs::File::open(&path).unwrap(), |ev| {
            if filter.keeps(ev) {
                builder.observe(ev);
            }
        })
        .unwrap();
        assert_eq!(
            (stats.unknown_lines, stats.undecoded),
            (0, 0),
            "{name}: {:?} {:?}",
            stats.unknown_examples,
            stats.undecoded_examples
        );
        let input = InputSummary::text(name.clone(), stats);
        let report = builder.finish(vec![input]);
        let json = kvmscope_render::json::render(&report);
        golden(&dir().join(format!("{stem}.report.json")), &json);
        golden(
            &dir().join(format!("{stem}.report.txt")),
            &kvmscope_render::text::render(&report),
        );

        let value: Value = serde_json::from_str(&json).unwrap();
        let mut checked = 0;
        for (event, filt, count) in &promises {
            if let Some(got) = support::reported(&value, event, filt.as_deref()) {
                assert_eq!(got, *count, "{name}: {event} [{filt:?}]");
                checked += 1;
            }
        }
        assert!(checked > 0, "{name}: no promise checked");
    }
    assert!(
        n >= 10,
        "expected the nine ftrace captures and the perf script one, found {n}"
    );
}
