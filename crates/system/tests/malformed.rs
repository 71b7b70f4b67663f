//! Malformed input gives a clear error with the line number; no input makes a parser panic.

use kvmscope_system::{
    cmdline, cpuinfo, cpulist, interrupts, kconfig, softirqs, timer_list, Error,
};
use proptest::prelude::*;

fn line_of(e: &Error) -> usize {
    e.line().expect("a parse error has a line")
}

#[test]
fn interrupts_errors_name_the_line() {
    let e = interrupts::parse("").unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");

    let e = interrupts::parse("  24:   1   2  IO-APIC\n").unwrap_err();
    assert_eq!(line_of(&e), 1);
    assert!(e.to_string().contains("CPU<n>"), "{e}");

    let text = "           CPU0       CPU1\n 24:   1   2  IO-APIC 5-edge ACPI\nLOC:   5   Local timer interrupts\n";
    let e = interrupts::parse(text).unwrap_err();
    assert_eq!(line_of(&e), 3);
    assert!(
        e.to_string()
            .contains("has 1 counts but the header names 2 CPUs"),
        "{e}"
    );

    let e = interrupts::parse("CPU0\nthis is not an interrupt line\n").unwrap_err();
    assert_eq!(line_of(&e), 2);
    assert!(e.to_string().contains("/proc/interrupts: line 2"), "{e}");

    let e = interrupts::parse("CPU0\nTLB: lots TLB shootdowns\n").unwrap_err();
    assert!(e.to_string().contains("no counts"), "{e}");

    let e = interrupts::parse("CPU0\nTLB: 99999999999999999999999 TLB shootdowns\n").unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn softirqs_errors_name_the_line() {
    let e = softirqs::parse("   CPU0  CPU1\n  HI: 1 2\nTIMER: 3\n").unwrap_err();
    assert_eq!(line_of(&e), 3);
    assert!(e.to_string().contains("has 1 counts"), "{e}");
    let e = softirqs::parse("   CPU0\n  HI: x\n").unwrap_err();
    assert_eq!(line_of(&e), 2);
}

#[test]
fn timer_list_errors_name_the_line() {
    let text = "Timer List Version: v0.10\nnow at 5 nsecs\n\ncpu: 0\n clock 0:\nactive timers:\n #0: <0>, tick_nohz_handler, S:01\n garbage\n";
    let e = timer_list::parse(text).unwrap_err();
    assert_eq!(line_of(&e), 7);
    assert!(
        e.to_string().contains("not followed by \"# expires at"),
        "{e}"
    );

    let text = "cpu: 0\n clock 0:\nactive timers:\n #0: <0>, f, S:01\n # expires at 5-x nsecs [in 1 to 2 nsecs]\n";
    let e = timer_list::parse(text).unwrap_err();
    assert_eq!(line_of(&e), 5);
    assert!(e.to_string().contains("expiry"), "{e}");

    let e = timer_list::parse("now at soon nsecs\n").unwrap_err();
    assert_eq!(line_of(&e), 1);

    let e = timer_list::parse("cpu: 0\n  .tick_stopped   : maybe\n").unwrap_err();
    assert_eq!(line_of(&e), 2);
    assert!(e.to_string().contains(".tick_stopped"), "{e}");

    let e = timer_list::parse("cpu: 0\n #0: <0>, f, S:01\n").unwrap_err();
    assert!(e.to_string().contains("ends after a timer line"), "{e}");

    let e = timer_list::parse("Tick Device: mode:     1\nPer CPU device: 0\n mode: three\n")
        .unwrap_err();
    assert_eq!(line_of(&e), 3);

    let e = timer_list::parse("hello world\n").unwrap_err();
    assert!(e.to_string().contains("unrecognised line"), "{e}");
}

#[test]
fn other_errors() {
    let e = kconfig::parse("CONFIG_HZ=250\nHZ=100\n").unwrap_err();
    assert_eq!(line_of(&e), 2);
    let e = kconfig::parse("CONFIG_X=\"open\n").unwrap_err();
    assert!(e.to_string().contains("unterminated"), "{e}");
    let e = cpuinfo::parse("processor : 0\nno colon here\n").unwrap_err();
    assert_eq!(line_of(&e), 2);
    let e = cpulist::parse("/sys/devices/system/cpu/isolated", "1-x").unwrap_err();
    assert!(
        e.to_string().contains("/sys/devices/system/cpu/isolated"),
        "{e}"
    );
    assert!(cpulist::parse("t", "5-1").is_err());
    assert!(cpulist::parse("t", "0-7:3/2").is_err());
    let e = cmdline::parse("nohz_full=1-a").timing().unwrap_err();
    assert!(e.to_string().contains("nohz_full="), "{e}");
    assert!(kvmscope_system::parse_timer_migration("2\n").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic_on_arbitrary_text(s in "\\PC*") {
        let _ = interrupts::parse(&s);
        let _ = softirqs::parse(&s);
        let _ = timer_list::parse(&s);
        let _ = kconfig::parse(&s);
        let _ = cpuinfo::parse(&s);
        let _ = cpulist::parse("t", &s);
        let _ = cmdline::parse(&s).timing();
    }

    #[test]
    fn parsers_never_panic_on_kernel_like_lines(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("CPU0 CPU1".to_string()),
                Just(" #0: <0>, f, S:01".to_string()),
                Just(" # expires at 1-2 nsecs [in 1 to 2 nsecs]".to_string()),
                Just("cpu: 1".to_string()),
                Just("Tick Device: mode:     1".to_string()),
                Just("Per CPU device: 0".to_string()),
                Just("tick_broadcast_mask: zz".to_string()),
                "[A-Z]{1,4}: [0-9 ]{0,30}[A-Za-z ]{0,10}",
                "[ .a-z_:0-9#<>,-]{0,40}",
            ],
            0..20,
        )
    ) {
        let s = lines.join("\n");
        let _ = interrupts::parse(&s);
        let _ = softirqs::parse(&s);
        let _ = timer_list::parse(&s);
    }

    #[test]
    fn cpulist_round_trips(cpus in proptest::collection::btree_set(0u32..512, 0..40)) {
        let v: Vec<u32> = cpus.into_iter().collect();
        let text = cpulist::format(&v);
        prop_assert_eq!(cpulist::parse("t", &text).unwrap(), v);
    }
}

proptest! {
    /// Adding known increments to a real file's counters and diffing gives them back.
    #[test]
    fn diff_recovers_increments(incs in proptest::collection::vec((0u64..1_000_000, 0u64..1_000_000), 36)) {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/system/x86_64-6.18-pvm/interrupts"),
        )
        .unwrap();
        let before = interrupts::parse(&text).unwrap();
        let mut after = before.clone();
        for (line, &(a, b)) in after.lines.iter_mut().zip(&incs) {
            line.counts[0] += a;
            if !line.global {
                line.counts[1] += b;
            }
        }
        let d = interrupts::diff(&before, &after);
        prop_assert_eq!(d.wrapped, 0);
        for (line, &(a, b)) in d.lines.iter().zip(&incs) {
            if line.global {
                prop_assert_eq!(&line.deltas, &vec![a]);
            } else {
                prop_assert_eq!(&line.deltas, &vec![a, b]);
            }
        }
    }
}
