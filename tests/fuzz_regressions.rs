//! Every input the fuzzing campaign (fuzz/, docs/fuzzing.md) found a bug with, replayed under
//! plain `cargo test`: the files under `tests/fixtures/fuzz/<target>/` go through the same code
//! as the fuzz target of that name (fuzz/src/, included here), and the cases below check the
//! error each one now gets.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use std::path::Path;

type Run = fn(&[u8]);

const TARGETS: &[(&str, Run)] = &[
    ("text_decode", targets::text_decode::run),
    ("text_line", targets::text_line::run),
    ("pipeline", targets::pipeline::run),
    ("tracedat", targets::tracedat::run),
    ("tracedat_events", targets::tracedat_events::run),
    ("ringbuf", targets::ringbuf::run),
    ("format", targets::format::run),
    ("stacks_collapse", targets::stacks_collapse::run),
    ("stacks_folded", targets::stacks_folded::run),
    ("system_proc", targets::system_proc::run),
    ("snapshot_json", targets::snapshot_json::run),
    ("http_request", targets::http_request::run),
];

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz"))
}

/// Every saved crash input runs through its target without a panic.
#[test]
fn saved_crashes_replay_cleanly() {
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let run = TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("tests/fixtures/fuzz/{name}: no fuzz target of that name"))
            .1;
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let data = std::fs::read(&f).unwrap();
            eprintln!("replaying {}", f.display());
            run(&data);
        }
    }
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

/// Replaces the text of the section that follows `name\0` and its u64 length.
fn replace_section(file: &[u8], name: &[u8], text: &str) -> Vec<u8> {
    let at = file
        .windows(name.len())
        .position(|w| w == name)
        .expect("section name")
        + name.len();
    let n = u64::from_le_bytes(file[at..at + 8].try_into().unwrap()) as usize;
    let mut out = file[..at].to_vec();
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&file[at + 8 + n..]);
    out
}

/// A header_page claiming a 1 TiB page was accepted, and the reader then sized its page
/// buffer from it (found by the `ringbuf` target: `PageLayout::page_size` overflowed on the
/// offsets a header_page may claim). Now the header is refused with its byte offset.
#[test]
fn huge_page_layout_is_refused() {
    let dat = fixture("tracedat/kvmscope-record-lab-v6.dat");
    for (offset, size) in [
        (16u64, 1u64 << 40),
        (u64::MAX - 8, 4080),
        (16, u64::MAX - 16),
    ] {
        let header_page = format!(
            "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
             \tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
             \tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
             \tfield: char data;\toffset:{offset};\tsize:{size};\tsigned:0;\n"
        );
        let bad = replace_section(&dat, b"header_page\0", &header_page);
        targets::tracedat::run(&bad);
        targets::tracedat_events::run(&bad);
        let Err(err) = kvmscope_tracedat::file::TraceDat::parse(&bad[..]) else {
            panic!("a header_page with data at {offset}, {size} bytes, was accepted");
        };
        let msg = err.to_string();
        assert!(
            msg.contains("header_page at byte") && msg.contains("unsupported page header layout"),
            "{msg}"
        );
    }
}
