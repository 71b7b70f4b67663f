//! One line of a text trace: the common columns (`text::line::parse`), the time stamp parser
//! and the typed payload decoder, for any `system:name` pair the input names.

use kvmscope_trace::text::{decode_line, line, payload};

/// One input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (parsed, ev, _undecoded) = decode_line(&text);
    let _ = format!("{parsed:?} {ev:?}");
    let _ = line::parse_ts(&text);
    // `system name payload`: every decoder gets arbitrary fields, not only the ones a
    // well-formed line header leads to.
    let mut it = text.splitn(3, ' ');
    let (system, name, p) = (
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
    );
    let _ = format!("{:?}", payload::decode(system, name, p));
    let sys = payload::system_of(name);
    let _ = format!("{:?}", payload::decode(sys, name, p));
}
