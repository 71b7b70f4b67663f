//! The exporter's HTTP request line parser (`fleet::http::parse_request_line`), on any bytes
//! a client could send; the method and path it returns must be parts of the first line.

use kvmscope_fleet::http::parse_request_line;

/// One input.
pub fn run(data: &[u8]) {
    if let Some((method, path)) = parse_request_line(data) {
        let line = data
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or(&[]);
        assert!(line.starts_with(method.as_bytes()));
        assert!(!path.contains('?') && !path.contains(' '));
    }
}
