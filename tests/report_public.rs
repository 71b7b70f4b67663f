//! Golden tests: the report on real public VMX, SVM and arm64 traces (tests/fixtures/public,
//! sources in its README) equals the counts and paired latencies worked out by hand in
//! expected.json.

use std::collections::BTreeMap;
use std::path::Path;

use kvmscope_analysis::{Report, ReportBuilder};
use serde_json::Value;

fn report(path: &Path) -> (Report, kvmscope_trace::text::TextStats) {
    let file = std::fs::File::open(path).unwrap();
    let mut b = ReportBuilder::new();
    let stats = kvmscope_trace::text::decode(file, |ev| b.observe(ev)).unwrap();
    (b.finish(Vec::new()), stats)
}

fn counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn public_traces_match_hand_counts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let fixtures = expected["fixtures"].as_object().unwrap();
    assert!(
        fixtures.len() >= 5,
        "expected at least five public fixtures"
    );
    for (name, want) in fixtures {
        let (r, stats) = report(&dir.join(name));
        let ctx = |what: &str| format!("{name}: {what}");
        assert_eq!(
            stats.lines,
            want["lines"].as_u64().unwrap(),
            "{}",
            ctx("lines")
        );
        assert_eq!(
            stats.events,
            want["event_lines"].as_u64().unwrap(),
            "{}",
            ctx("event lines")
        );
        assert_eq!(
            stats.unknown_lines,
            0,
            "{}: {:?}",
            ctx("unknown lines"),
            stats.unknown_examples
        );

        let by_name: BTreeMap<String, u64> = r
            .overview
            .by_name
            .iter()
            .map(|(n, c)| (n.rsplit(':').next().unwrap().to_string(), *c))
            .collect();
        assert_eq!(
            by_name,
            counts(&want["events"]),
            "{}",
            ctx("events by name")
        );
        assert_eq!(
            r.overview.first_ts_ns / 1000,
            want["first_ts_us"].as_u64().unwrap(),
            "{}",
            ctx("first ts")
        );
        assert_eq!(
            r.overview.last_ts_ns / 1000,
            want["last_ts_us"].as_u64().unwrap(),
            "{}",
            ctx("last ts")
        );

        let exits = r.exits.as_ref().expect("exits");
        assert_eq!(
            exits.total,
            want["kvm_exit_total"].as_u64().unwrap(),
            "{}",
            ctx("exit total")
        );
        let by_reason: BTreeMap<String, u64> = exits
            .rows
            .iter()
            .map(|row| (row.reason.clone(), row.count))
            .collect();
        assert_eq!(
            by_reason,
            counts(&want["kvm_exit_by_reason"]),
            "{}",
            ctx("exits by reason")
        );

        let lat = want["vmexit_latency_by_reason"].as_object().unwrap();
        for row in &exits.rows {
            let l = &row.latency;
            match lat.get(&row.reason) {
                Some(w) => {
                    let got = (
                        l.samples,
                        l.min_ns / 1000,
                        l.max_ns / 1000,
                        l.total_ns / 1000,
                    );
                    let exp = (
                        w["samples"].as_u64().unwrap(),
                        w["min_us"].as_u64().unwrap(),
                        w["max_us"].as_u64().unwrap(),
                        w["total_us"].as_u64().unwrap(),
                    );
                    assert_eq!(got, exp, "{}", ctx(&format!("latency of {}", row.reason)));
                    assert!(
                        l.min_ns % 1000 == 0 && l.max_ns % 1000 == 0,
                        "{}",
                        ctx("µs precision")
                    );
                }
                None => assert_eq!(
                    l.samples,
                    0,
                    "{}",
                    ctx(&format!("{} should have no latency", row.reason))
                ),
            }
        }
        let total = &want["vmexit_latency_total"];
        assert_eq!(
            exits.paired,
            total["samples"].as_u64().unwrap(),
            "{}",
            ctx("paired total")
        );
        assert_eq!(
            exits.total_time_ns / 1000,
            total["total_us"].as_u64().unwrap(),
            "{}",
            ctx("time total")
        );
        assert_eq!(
            exits.total - exits.paired,
            want["exits_without_entry"].as_u64().unwrap(),
            "{}",
            ctx("exits without entry")
        );

        if let Some(ue) = want.get("kvm_userspace_exit_by_reason") {
            let got: BTreeMap<String, u64> = r
                .overview
                .userspace_exits
                .iter()
                .map(|u| (u.errno.unwrap_or(u.reason).to_string(), u.count))
                .collect();
            assert_eq!(got, counts(ue), "{}", ctx("userspace exits"));
        }
        if let Some(msr) = want.get("kvm_msr") {
            let got: BTreeMap<String, u64> = r
                .accesses
                .msr
                .iter()
                .map(|m| {
                    (
                        format!(
                            "{} {:#x}",
                            if m.write { "write" } else { "read" },
                            m.msr.msr
                        ),
                        m.count,
                    )
                })
                .collect();
            assert_eq!(got, counts(msr), "{}", ctx("kvm_msr"));
        }
    }
}
