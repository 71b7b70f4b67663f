//! Properties of the collapser:
//! - the byte-scan matchers agree with the reference script's regular expressions (run by a
//!   regex engine with the same leftmost-first semantics, bytes mode);
//! - arbitrary input never panics, and every unrecognised line is reported with its number;
//! - any number of threads and any block size give the single-threaded result.

use kvmscope_stacks::perf_script::{match_event, match_frame, match_header, strip_offset};
use kvmscope_stacks::{collapse_reader_blocks, Collapser, Options};
use proptest::prelude::*;
use regex::bytes::Regex;
use std::sync::LazyLock;

static HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u)^(\S.+?)\s+(\d+)/*(\d+)*\s+").unwrap());
static EVENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u):\s*(\d+)*\s+(\S+):\s*$").unwrap());
static FRAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u)^\s*(\w+)\s*(.+) \((.*)\)").unwrap());
static OFFSET: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?-u)\+0x[\da-f]+$").unwrap());

/// Lines made of the bytes that matter to the patterns.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b" \t\r\x0b:/()[]+-_>;'\"#0123456789abfxLjv.\xff".to_vec();
    prop::collection::vec(prop::sample::select(alphabet), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn header_matcher_is_the_regex(l in line()) {
        let want = HEADER.captures(&l).map(|c| {
            (c.get(1).unwrap().as_bytes().to_vec(), c.get(2).unwrap().as_bytes().to_vec(),
             c.get(3).map(|m| m.as_bytes().to_vec()))
        });
        let got = match_header(&l).map(|h| (h.comm.to_vec(), h.pid.to_vec(), h.tid.map(<[u8]>::to_vec)));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn event_matcher_is_the_regex(l in line()) {
        let want = EVENT.captures(&l).map(|c| {
            (c.get(1).map(|m| m.as_bytes().to_vec()), c.get(2).unwrap().as_bytes().to_vec())
        });
        let got = match_event(&l).map(|e| (e.period.map(<[u8]>::to_vec), e.event.to_vec()));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn frame_matcher_is_the_regex(l in line()) {
        let want = FRAME.captures(&l).map(|c| {
            (c.get(1).unwrap().as_bytes().to_vec(), c.get(2).unwrap().as_bytes().to_vec(),
             c.get(3).unwrap().as_bytes().to_vec())
        });
        let got = match_frame(&l).map(|f| (f.pc.to_vec(), f.func.to_vec(), f.module.to_vec()));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn offset_strip_is_the_regex(l in line()) {
        let want = OFFSET.find(&l).map_or(&l[..], |m| &l[..m.start()]).to_vec();
        prop_assert_eq!(strip_offset(&l).to_vec(), want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut c = Collapser::new(Options::default().all());
        c.feed(&data);
        let out = c.finish();
        prop_assert!(out.unrecognized.iter().all(|u| u.line >= 1 && u.line <= out.lines));
    }
}

/// perf-script-like text: headers, stack lines, blank lines, junk, several events.
fn script() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => Just(&b"swapper     0 [000] 158665.570607: cpu-clock:\n"[..]),
        3 => Just(&b"java 24636/25607 [001] 1.5: 100 cycles:\n"[..]),
        1 => Just(&b"java 24636/0 [001] 1.5: 7 instructions:\n"[..]),
        8 => Just(&b"\tffffffff8103ce3b native_safe_halt+0x1b ([kernel.kallsyms])\n"[..]),
        3 => Just(&b"\t7f722d142778 Ljava/io/PrintStream;::print (/tmp/perf-19982.map)\n"[..]),
        2 => Just(&b"\t7f0 [unknown] (/usr/lib/libc.so.6)\n"[..]),
        2 => Just(&b"\t7f0 a->b->c (/x)\n"[..]),
        6 => Just(&b"\n"[..]),
        1 => Just(&b"# comment\n"[..]),
        1 => Just(&b"junk line\n"[..]),
    ];
    prop::collection::vec(piece, 0..200).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn threads_and_blocks_do_not_change_the_result(
        input in script(), block in 16usize..300, threads in 2usize..4, all in any::<bool>(), tid in any::<bool>()
    ) {
        let mut opts = Options { tid, ..Options::default() };
        if all { opts = opts.all(); }
        let one = collapse_reader_blocks(input.as_slice(), &opts, 1, 1 << 20).unwrap();
        let many = collapse_reader_blocks(input.as_slice(), &opts, threads, block).unwrap();
        prop_assert_eq!(&one.stacks, &many.stacks);
        prop_assert_eq!(&one.unrecognized, &many.unrecognized);
        prop_assert_eq!(one.unrecognized_count, many.unrecognized_count);
        prop_assert_eq!(one.lines, many.lines);
        prop_assert_eq!(&one.filtered_for, &many.filtered_for);
    }
}

#[test]
fn sample_without_stack_is_the_bare_process_name() {
    let input = b"kvmscope-vcpu0 18615 [000] 710.36: 5025125 cpu-clock:ppp: \n\nqemu 1 [001] 710.37: 5025125 cpu-clock:ppp: \n\tffff kvm_vcpu_ioctl+0x117 ([kernel.kallsyms])\n\n";
    let out = collapse_reader_blocks(&input[..], &Options::default(), 1, 1 << 20).unwrap();
    let mut text = Vec::new();
    out.write_folded(&mut text).unwrap();
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "kvmscope-vcpu0 5025125\nqemu;kvm_vcpu_ioctl 5025125\n"
    );
}

#[test]
fn a_symbol_that_is_only_an_offset_adds_no_frame() {
    // `split /->/, ""` is an empty list in the reference script: no frame, not an empty one.
    let input = b"a.out 1 [000] 1.0: cpu-clock:\n\tffff +0x12 (/x)\n\tffff main (/a)\n\n";
    let out = collapse_reader_blocks(&input[..], &Options::default(), 1, 1 << 20).unwrap();
    let mut text = Vec::new();
    out.write_folded(&mut text).unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), "a.out;main 1\n");
}
