//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;

/// `field == value && ...` as (field, value) pairs; None when a clause is not `==`.
pub fn conditions(filter: &str) -> Option<BTreeMap<&str, u64>> {
    filter
        .split("&&")
        .map(|c| {
            let (f, v) = c.split_once("==")?;
            let v = v.trim();
            let v = v
                .strip_prefix("0x")
                .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())?;
            Some((f.trim(), v))
        })
        .collect()
}

/// What the report says for one promised event (and filter), or None when the report has no
/// breakdown for it.
pub fn reported(report: &Value, event: &str, filter: Option<&str>) -> Option<u64> {
    let sum = |rows: &Value, keep: &dyn Fn(&Value) -> bool| -> u64 {
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| keep(r))
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    let Some(filter) = filter else {
        let by_name = report["overview"]["by_name"].as_array().unwrap();
        let full = format!("kvm:{event}");
        return Some(
            by_name
                .iter()
                .find(|p| p[0] == full.as_str())
                .map_or(0, |p| p[1].as_u64().unwrap()),
        );
    };
    let c = conditions(filter)?;
    let is = |r: &Value, key: &str, field: &str| {
        c.get(field).is_none_or(|&v| r[key].as_u64() == Some(v))
    };
    let is_write = |r: &Value, field: &str, write_value: u64| {
        c.get(field)
            .is_none_or(|&v| r["write"].as_bool() == Some(v == write_value))
    };
    let a = &report["accesses"];
    match event {
        "kvm_pio" => Some(sum(&a["pio"], &|r| {
            is(r, "port", "port") && is_write(r, "rw", 1)
        })),
        "kvm_msr" => Some(sum(&a["msr"], &|r| {
            is(r, "msr", "ecx") && is_write(r, "write", 1)
        })),
        "kvm_mmio" => Some(sum(&a["mmio"], &|r| {
            is(r, "gpa", "gpa") && is_write(r, "type", 2)
        })),
        "kvm_userspace_exit" => Some(sum(&report["overview"]["userspace_exits"], &|r| {
            is(r, "reason", "reason")
        })),
        // Exit reasons only: the report has no breakdown by exit info.
        "kvm_exit" if c.len() == 1 && c.contains_key("exit_reason") => {
            let rows = &report["exits"]["rows"];
            Some(if rows.is_array() {
                sum(rows, &|r| is(r, "code", "exit_reason"))
            } else {
                0
            })
        }
        _ => None,
    }
}

/// The output directory of a run that a `static` keeps for the whole test binary: `name` under
/// cargo's `CARGO_TARGET_TMPDIR`, emptied first. A `tempfile::TempDir` held by a static is
/// never dropped, so it would leave each run's output (hundreds of MB for the emulated hosts)
/// in /tmp; this one is replaced by the next run and goes with `cargo clean`.
pub fn shared_out_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot empty {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
    dir
}

/// Whether the emulated KVM hosts (SVM and arm64) can run here: QEMU's libraries come with
/// Debian's qemu-system-x86 (the amd64 QEMU 10 builds of qemu-system-x86_64 and -aarch64 the
/// lab fetches need the same ones); kernels, busybox and QEMU 10 are fetched with apt and
/// unpacked with dpkg-deb into the cache. Prints the reason and returns false when not (fails
/// under KVMSCOPE_REQUIRE_KVM=1).
pub fn emulator_here() -> bool {
    kvmscope_capture::host::require_tool(
        "qemu-system-x86_64",
        "apt-get install --no-install-recommends qemu-system-x86",
    ) && kvmscope_capture::host::require_tool("apt-get", "a Debian system")
        && kvmscope_capture::host::require_tool("dpkg-deb", "apt-get install dpkg")
}

/// The vCPU thread ids of a `kvmscope lab run --json` document.
pub fn vcpu_tids(lab: &Value) -> Vec<u64> {
    let tids = lab["vcpu_tids"].as_array().expect("lab JSON has vcpu_tids");
    tids.iter().map(|t| t.as_u64().unwrap()).collect()
}

/// Runs `cmd`, which must succeed (else the failure shows its standard error); its output.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kvmscope report --json ARGS`, which must succeed.
pub fn report_json<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Value {
    let out = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_kvmscope"))
            .args(["report", "--json"])
            .args(args),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
