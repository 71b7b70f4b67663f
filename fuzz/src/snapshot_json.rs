//! The system snapshot a recording carries as JSON (the trace.dat sidecar's `system`, or
//! `diagnose --system FILE`): read as `kvmscope diagnose` reads it, then through every rule
//! over reports of real captures. A snapshot is external input: any values it holds (empty
//! CPU lists, huge counters, zero frequencies) must not panic a rule.

use kvmscope_system::SystemSnapshot;

/// One input.
pub fn run(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // As src/cmd/diagnose.rs: the sidecar's "system" member, or the whole document.
    let inner = v.get("system").cloned().unwrap_or(v);
    let Ok(snap) = serde_json::from_value::<SystemSnapshot>(inner) else {
        return;
    };
    let _ = snap.isolation_summary();
    if let Some(t) = &snap.timer_list {
        let _ = t.summary();
    }
    for r in super::real_reports() {
        let d = kvmscope_diagnose::diagnose(r, Some(&snap));
        let _ = kvmscope_diagnose::render::text(&d);
    }
    // What a recording writes back must read again as the same snapshot.
    let json = serde_json::to_string(&snap).expect("a snapshot serializes");
    let again: SystemSnapshot = serde_json::from_str(&json).expect("a snapshot reads back");
    assert_eq!(again, snap);
}
