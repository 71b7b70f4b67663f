//! Renderers: pure functions from a report to text. One module per output format.

pub mod html;
pub mod json;
pub mod table;
pub mod text;
