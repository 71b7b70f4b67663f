//! Event `format` files, `print fmt` symbol tables and constant expressions, `header_page`
//! and `header_event` (`capture::format`). After the first NUL byte comes a record: every
//! field of a format that parsed is read from it, and a page layout that parsed reads it as
//! a ring-buffer page.

use kvmscope_tracedat::format::{
    check_header_event, eval_const, parse_symbols, EventFormat, Formats, PageLayout,
};
use kvmscope_tracedat::ringbuf::Page;

/// One input.
pub fn run(data: &[u8]) {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let text = String::from_utf8_lossy(&data[..cut]);
    let record = data.get(cut + 1..).unwrap_or(&[]);
    if let Ok(f) = EventFormat::parse("fuzz", &text, "fuzz") {
        let _ = f.full_name();
        for field in &f.fields {
            let _ = (field.is_string(), field.bytes(record), field.u64(record));
            let _ = (field.i64(record), field.str(record));
            let _ = f.symbol(record, &field.name);
        }
        for t in &f.symbols {
            let _ = t.lookup(u64::from_le_bytes(
                record
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 8]),
            ));
        }
        let mut all = Formats::new();
        all.insert(f);
        let _ = all.len();
    }
    for t in parse_symbols(&text) {
        let _ = (t.lookup(0), t.lookup(u64::MAX), t.lookup(1));
    }
    let _ = eval_const(&text);
    let _ = check_header_event(&text, "fuzz");
    if let Ok(l) = PageLayout::parse(&text, "fuzz") {
        let _ = l.page_size();
        if let Ok(p) = Page::parse(&l, record, 0, 0) {
            for rec in p.records() {
                let _ = rec.map(|r| r.common_pid);
            }
        }
    }
}
