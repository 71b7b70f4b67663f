//! Ring-buffer pages (`capture::ringbuf`) under any page layout a `header_page` file could
//! describe (when bit 7 of byte 11 is set, the layout comes from the first 12 bytes; else
//! the 64-bit kernel's), then every record of the page.

use kvmscope_tracedat::format::PageLayout;
use kvmscope_tracedat::ringbuf::Page;

/// A layout from the first 12 bytes, written as a `header_page` file and read by
/// `PageLayout::parse`, so every layout the parser accepts can be reached (flag bits make the
/// numbers huge: a trace.dat may claim anything).
fn layout(h: &[u8; 12]) -> Option<PageLayout> {
    let w = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]) as u64;
    let big = |v: u64, bit: u8| if h[10] & bit != 0 { u64::MAX - v } else { v };
    let commit_size = if h[11] & 1 != 0 { 4 } else { 8 };
    let ts = big(w(0) & 0xff, 1);
    let commit = big(w(2) & 0xff, 2);
    let data = big(commit.saturating_add(commit_size + (w(4) & 0xff)), 4);
    let size = big(w(6), 8);
    let text = format!(
        "\tfield: u64 timestamp;\toffset:{ts};\tsize:8;\tsigned:0;\n\
         \tfield: local_t commit;\toffset:{commit};\tsize:{commit_size};\tsigned:1;\n\
         \tfield: int overwrite;\toffset:{commit};\tsize:1;\tsigned:1;\n\
         \tfield: char data;\toffset:{data};\tsize:{size};\tsigned:0;\n"
    );
    PageLayout::parse(&text, "fuzz").ok()
}

/// One input.
pub fn run(data: &[u8]) {
    let (l, page) = if data.len() >= 12 && data[11] & 0x80 != 0 {
        let Some(l) = layout(data[..12].try_into().unwrap()) else {
            return;
        };
        (l, &data[12..])
    } else {
        (PageLayout::DEFAULT_64, data)
    };
    let _ = l.page_size();
    let Ok(p) = Page::parse(&l, page, 0, 4096) else {
        return;
    };
    let _ = p.missed.count();
    for rec in p.records() {
        match rec {
            Ok(r) => {
                let _ = (r.common_flags(), r.common_preempt_count(), r.id, r.ts_ns);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}
