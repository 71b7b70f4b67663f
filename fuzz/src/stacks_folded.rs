//! Folded stacks as read for flame graphs and diffs (`stacks::folded::parse`), KVM
//! attribution of them, and the flame graph and differential SVGs (inferno) of small inputs:
//! the input's halves, split at the first form feed, are the two profiles of the diff.

use kvmscope_stacks::flame::{render, render_diff, FlameOptions};
use kvmscope_stacks::{folded, Attribution};

/// One input.
pub fn run(data: &[u8]) {
    let _ = folded::detect(data);
    let cut = data.iter().position(|&b| b == 0x0c).unwrap_or(data.len());
    let (a, b) = (&data[..cut], data.get(cut + 1..).unwrap_or(&[]));
    let Ok(before) = folded::parse(a) else {
        return;
    };
    let attr = Attribution::from_stacks(&before);
    let _ = (attr.to_text(), attr.dominant_mmu_path());
    if data.len() > 4096 {
        return;
    }
    let opts = FlameOptions {
        kvm_colours: true,
        ..FlameOptions::default()
    };
    let _ = render(&before, &opts, std::io::sink());
    if let Ok(after) = folded::parse(b) {
        let _ = render_diff(
            &before,
            &after,
            data.len().is_multiple_of(2),
            &opts,
            std::io::sink(),
        );
    }
}
