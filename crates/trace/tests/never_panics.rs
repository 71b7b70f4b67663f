//! The text decoder never panics, whatever the bytes: arbitrary input, and real lines with
//! random damage (cut, spliced, bytes replaced).

use proptest::prelude::*;

const REAL: &[&str] = &[
    " CPU 0/KVM-1234  [003] d..2. 1.000001: kvm_exit: vcpu 0 reason EPT_VIOLATION rip 0xffffffff81000000 info1 0x0000000000000181 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000",
    "  qemu-kvm-77 (   70) [001] d..2 5.5: kvm_entry: vcpu 0, rip 0x1",
    "qemu-system-x86 12345 [001]  1234.567890123:       kvm:kvm_exit: reason npf rip 0x1 info 100000004 7f000",
    " aarch32_id_regs-768     [002] .....   410.544665: kvm_exit: IRQ: HSR_EC: 0x0000 (UNKNOWN), PC: 0x0000000000401ec4",
    "bash-5387    [000] ...1.   254.876985: ipi_send_cpu: cpu=1 callsite=on_each_cpu_cond_mask+0x20/0x60 callback=generic_smp_call_function_single_interrupt+0x0/0x10",
    "a-1 [000] .... 1.000001: kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x41 ",
    "a-1 [000] .... 1.000001: kvm_mmu_get_page: sp gen 0 gfn 1000 l4 8-byte q0 wux nxe ad root 0 sync new",
    "a-1 [000] .... 1.000001: sched_switch: prev_comm=CPU 0/KVM prev_pid=5 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120",
    // Payloads with strings: slices of the line, a name from a table (not in the line), a
    // reason no table knows.
    " kvmscope-timer--1979    [001] d..1.  1965.922991: hrtimer_start: hrtimer=000000005c8980aa function=hrtimer_wakeup expires=1965894360208 softexpires=1965894310208 mode=ABS was_armed=0",
    "a-1 [000] .... 220.696238: kvm_apic: apic_write APIC_ICR = 0xb0000440b0",
    "a-1 [000] .... 1.000001: kvm_handle_sys_reg: HSR 0x603a3016",
    "a-1 [000] .... 1.000001: kvm_exit: reason SOME_NEW_REASON rip 0x1 info 1 2",
    "CPU:1 [LOST 12 EVENTS]",
    "# entries-in-buffer/entries-written: 547/600   #P:2",
];

fn decode_all(bytes: &[u8]) {
    let _ = kvmscope_trace::text::decode(bytes, |ev| {
        // Touch everything a consumer would.
        let _ = (
            ev.ts_ns,
            ev.cpu,
            ev.tid,
            ev.comm.len(),
            ev.payload.len(),
            ev.field("vcpu"),
        );
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_text(text in "[ -~\n\t\u{e9}\u{4e2d}]{0,300}") {
        decode_all(text.as_bytes());
    }

    #[test]
    fn damaged_real_lines(idx in 0..REAL.len(), cut in 0usize..400, pos in 0usize..400, byte in any::<u8>(), other in 0..REAL.len()) {
        let line = REAL[idx].as_bytes();
        let mut v = line[..cut.min(line.len())].to_vec();
        v.extend_from_slice(&REAL[other].as_bytes()[pos.min(REAL[other].len())..]);
        decode_all(&v);
        let mut w = line.to_vec();
        if !w.is_empty() {
            let p = pos % w.len();
            w[p] = byte;
        }
        decode_all(&w);
        // Every prefix of a real line.
        for end in 0..line.len() {
            decode_all(&line[..end]);
        }
    }
}

/// Everything a consumer sees of an event, owned, for comparing two decoders.
fn snapshot(bytes: &[u8], parallel: bool) -> Result<(Vec<String>, String), String> {
    let mut seen = Vec::new();
    let mut push = |ev: &kvmscope_trace::Event<'_>| seen.push(format!("{ev:?}"));
    let stats = if parallel {
        kvmscope_trace::text::decode_parallel_with_batch(bytes, &mut push, 700)
    } else {
        kvmscope_trace::text::decode_sequential(bytes, &mut push)
    };
    match stats {
        Ok(s) => Ok((seen, format!("{s:?}"))),
        Err(e) => Err(format!("{e} after {} events", seen.len())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The two-thread decoder gives the same events, in the same order, and the same
    /// statistics as the sequential one, on inputs large enough to span many batches.
    #[test]
    fn parallel_equals_sequential(picks in proptest::collection::vec((0..REAL.len(), any::<bool>(), 0usize..200), 1..120), repeat in 1usize..20) {
        let mut input = Vec::new();
        for _ in 0..repeat {
            for &(i, damage, at) in &picks {
                let line = REAL[i].as_bytes();
                if damage {
                    input.extend_from_slice(&line[..at.min(line.len())]);
                    if at % 3 == 0 {
                        input.push(0xff); // not UTF-8
                    }
                } else {
                    input.extend_from_slice(line);
                }
                input.push(b'\n');
            }
        }
        input.truncate(input.len() - repeat % 7); // sometimes cut the last line
        prop_assert_eq!(snapshot(&input, true), snapshot(&input, false));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The one-walk search for the CPU column and timestamp gives the general search's answer
    /// on every line it accepts (it declines the rest, which then take the general search):
    /// lines shaped like trace lines with every column varied, and arbitrary text.
    #[test]
    fn fast_columns_equal_general(
        lead in "[ \t]{0,3}",
        comm in "[a-z0-9 /:()<>-]{0,16}",
        tid in "[0-9]{0,6}",
        tgid in proptest::option::of("\\( *[0-9-]{0,7}\\)"),
        cpu in "\\[[0-9a]{0,4}\\]?",
        gap in "[ \t]{0,3}",
        flags in proptest::option::of("[.dNnhHsSX0-9:]{0,6}"),
        gap2 in "[ \t]{0,3}",
        ts in "[0-9.]{0,24}",
        after in "(: |:\t|:|: kvm_exit: x| x: y)?",
    ) {
        let mut line = format!("{lead}{comm}-{tid}");
        if let Some(t) = tgid {
            line.push_str(&t);
        }
        line.push(' ');
        line.push_str(&cpu);
        line.push_str(&gap);
        if let Some(f) = flags {
            line.push_str(&f);
            line.push_str(&gap2);
        }
        line.push_str(&ts);
        line.push_str(&after);
        let trimmed = line.trim_start_matches([' ', '\t']);
        let (fast, general) = kvmscope_trace::text::line::common_columns_both(trimmed);
        if fast.is_some() {
            prop_assert_eq!(fast, general, "{:?}", line);
        }
    }

    #[test]
    fn fast_columns_equal_general_on_any_text(text in "[ -~\t]{0,120}") {
        let (fast, general) = kvmscope_trace::text::line::common_columns_both(&text);
        if fast.is_some() {
            prop_assert_eq!(fast, general, "{:?}", text);
        }
    }
}

#[test]
fn fast_columns_take_the_real_lines() {
    // The fast path is the one real traces take (or the speed-up is not where it should be).
    for line in REAL.iter().filter(|l| l.contains("]")) {
        let t = line.trim_start();
        if t.starts_with("CPU:") {
            continue;
        }
        let (fast, general) = kvmscope_trace::text::line::common_columns_both(t);
        assert!(fast.is_some(), "{line}");
        assert_eq!(fast, general, "{line}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// The backward walk over the task column gives the general parser's answer wherever it
    /// answers: ftrace `comm-tid`, perf `comm tid` / `comm pid/tid`, with and without `(tgid)`.
    #[test]
    fn fast_task_equals_general(
        comm in "[a-zA-Z0-9 /:()<>\t-]{0,16}",
        sep in "[- /\t]",
        tid in "[0-9+]{0,12}",
        tgid in proptest::option::of("\\([ \t]*[0-9+-]{0,11}[ \t]*\\)"),
        gap in "[ \t]{0,12}",
    ) {
        let mut task = format!("{comm}{sep}{tid}");
        if let Some(t) = tgid {
            task.push_str(&gap);
            task.push_str(&t);
        }
        task.push_str(&gap);
        let (fast, general) = kvmscope_trace::text::line::parse_task_both(&task);
        if let Some(fast) = fast {
            prop_assert_eq!(fast, general, "{:?}", task);
        }
    }

    #[test]
    fn fast_task_equals_general_on_any_text(text in "[ -~\t]{0,60}") {
        let (fast, general) = kvmscope_trace::text::line::parse_task_both(&text);
        if let Some(fast) = fast {
            prop_assert_eq!(fast, general, "{:?}", text);
        }
    }
}

#[test]
fn fast_task_takes_the_real_lines() {
    for line in [
        "  kvmscope-vcpu0-11914   (  11913) ",
        "qemu-system-x86 12345 ",
        "CPU 0/KVM-1234  ",
        "<idle>-0 (-------) ",
    ] {
        let (fast, general) = kvmscope_trace::text::line::parse_task_both(line);
        assert_eq!(fast, Some(general), "{line}");
    }
}
