//! Every line of every public fixture decodes: no unknown lines, and every event with a typed
//! decoder has its fields parsed.

use std::path::Path;

#[test]
fn public_fixtures_decode_fully() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/public");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        files += 1;
        let stats =
            kvmscope_trace::text::decode(std::fs::File::open(&path).unwrap(), |_| {}).unwrap();
        assert_eq!(
            stats.unknown_lines,
            0,
            "{}: {:?}",
            path.display(),
            stats.unknown_examples
        );
        assert_eq!(
            stats.undecoded,
            0,
            "{}: {:?}",
            path.display(),
            stats.undecoded_examples
        );
    }
    assert!(files >= 5);
}
