//! `--json`: the report's own data, pretty-printed with stable field order.

use serde::Serialize;

pub fn render<T: Serialize>(value: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
