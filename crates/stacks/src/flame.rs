//! Flame graph SVGs, drawn by inferno (CDDL-1.0, used as a library), with KVM-aware
//! colours: every frame's colour is chosen here (none at random), so the SVG is a
//! deterministic function of the stacks.
//!
//! Samples of a vCPU thread with no stack (guest code running natively, where the host
//! has no kernel frames to show) get a synthetic `[guest]` frame so that guest time is a
//! visible, green box.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use inferno::flamegraph::color::{Color, PaletteMap};

use crate::folded::Stack;
use crate::kvm::{
    base_name, frame_colour_category, frame_kind, looks_like_vmm, Category, FrameKind,
};
use crate::Error;

/// The frame added to stack-less vCPU samples.
pub const GUEST_FRAME: &str = "[guest]";

/// What to draw.
#[derive(Debug, Clone)]
pub struct FlameOptions {
    /// Title at the top.
    pub title: String,
    /// Colour frames by KVM role (otherwise inferno's deterministic "hot" palette).
    pub kvm_colours: bool,
    /// Width in pixels (`None`: fluid).
    pub width: Option<usize>,
    /// Name of the count ("samples", "ns").
    pub count_name: String,
}

impl Default for FlameOptions {
    fn default() -> Self {
        FlameOptions {
            title: "kvmscope flame graph".into(),
            kvm_colours: true,
            width: Some(1200),
            count_name: "samples".into(),
        }
    }
}

const LEGEND: &str = "green: guest · orange: exit handling · red: MMU · purple: emulation · blue: halt · yellow: KVM other · cyan: VMM user space · grey: the rest";

fn rgb((r, g, b): (u8, u8, u8)) -> Color {
    Color { r, g, b }
}

/// A stable pale colour for frames outside KVM, from the name's FNV-1a hash.
fn rest_colour(name: &str) -> Color {
    let mut h: u32 = 0x811c9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    let v = (h % 40) as u8;
    Color {
        r: 200 + v / 2,
        g: 190 + v / 2,
        b: 170 + v / 3,
    }
}

/// Stacks with `[guest]` added to stack-less vCPU samples, and the vCPU thread names.
fn with_guest_frames(stacks: &[Stack]) -> (Vec<Stack>, BTreeSet<String>) {
    let mut vcpus = BTreeSet::new();
    for s in stacks {
        let mut it = s.frames.split(';');
        let pname = it.next().unwrap_or("");
        if it.any(|f| base_name(f) == "kvm_arch_vcpu_ioctl_run") {
            vcpus.insert(pname.to_string());
        }
    }
    let out = stacks
        .iter()
        .map(|s| {
            if !s.frames.contains(';') && vcpus.contains(&s.frames) {
                Stack {
                    frames: format!("{};{GUEST_FRAME}", s.frames),
                    weight: s.weight,
                }
            } else {
                s.clone()
            }
        })
        .collect();
    (out, vcpus)
}

/// The colour of every frame name, chosen from the contexts the name appears in.
fn palette(stacks: &[Stack], vcpus: &BTreeSet<String>) -> PaletteMap {
    let mut chosen: BTreeMap<&str, Category> = BTreeMap::new();
    let mut rest: BTreeSet<&str> = BTreeSet::new();
    for s in stacks {
        let mut frames = s.frames.split(';');
        let pname = frames.next().unwrap_or("");
        let vmm = vcpus.contains(pname) || looks_like_vmm(pname);
        if vmm {
            chosen.insert(pname, Category::VmmUser);
        } else {
            rest.insert(pname);
        }
        let mut in_run = false;
        // The nearest enclosing role (MMU, emulation, halt, exit handling): frames without
        // one of their own (helpers such as memcpy or kvm_read_guest) take its colour, so
        // the whole tower above a handler reads as that handler's cost.
        let mut context: Option<Category> = None;
        for f in frames {
            if frame_kind(f) == Some(FrameKind::RunLoop) {
                in_run = true;
            }
            let own = if f == GUEST_FRAME {
                Some(Category::Guest)
            } else {
                frame_colour_category(f, in_run)
            };
            let cat = match own {
                Some(
                    c @ (Category::Mmu
                    | Category::Emulation
                    | Category::Halt
                    | Category::ExitHandling),
                ) => {
                    context = Some(c);
                    Some(c)
                }
                Some(Category::KvmOther) | None if context.is_some() => context,
                other => other,
            };
            match cat {
                Some(c) => {
                    // A specific role wins over "KVM other" and VMM user space.
                    let e = chosen.entry(f).or_insert(c);
                    if matches!(*e, Category::KvmOther | Category::VmmUser) {
                        *e = c;
                    }
                }
                None if vmm && !f.ends_with("_[k]") && !in_run => {
                    chosen.entry(f).or_insert(Category::VmmUser);
                }
                None => {
                    rest.insert(f);
                }
            }
        }
    }
    let mut map = PaletteMap::default();
    for name in rest {
        if !chosen.contains_key(name) {
            map.insert(name, rest_colour(name));
        }
    }
    for (name, cat) in chosen {
        map.insert(name, rgb(cat.colour()));
    }
    map
}

/// `stack count` lines for inferno. inferno reads a second number before the count as a
/// differential's other count (`stack before after`), so a stack whose text ends in
/// ` <number>` (a frame with a space and digits in its name) would lend it one; that space
/// becomes `_`.
fn folded_lines(stacks: &[Stack]) -> Vec<String> {
    let mut lines: Vec<String> = stacks
        .iter()
        .filter(|s| s.weight > 0)
        .map(|s| {
            // inferno trims the line's end before it looks for the counts, so a frame that
            // ends in blanks after its number is read the same way.
            let frames = s.frames.trim_end();
            match frames.rsplit_once(' ') {
                Some((head, last)) if reads_as_count(last) => {
                    format!("{head}_{last} {}", s.weight)
                }
                _ => format!("{frames} {}", s.weight),
            }
        })
        .collect();
    lines.sort();
    lines
}

/// What inferno takes for a sample count at the end of a line: digits, or digits, a dot and
/// digits (either side may be empty).
fn reads_as_count(token: &str) -> bool {
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    match token.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(token),
    }
}

fn inferno_options<'a>(
    opts: &FlameOptions,
    subtitle: Option<String>,
) -> inferno::flamegraph::Options<'a> {
    let mut o = inferno::flamegraph::Options::default();
    o.title = opts.title.clone();
    o.subtitle = subtitle;
    o.image_width = opts.width;
    o.count_name = opts.count_name.clone();
    o.deterministic = true;
    o
}

/// The most samples a flame graph is drawn from: inferno sums counts without overflow checks,
/// and 2^53 samples (exact in an f64) is far past any real profile.
pub const MAX_SAMPLES: u64 = 1 << 53;

/// Refuses stacks whose counts add up past [`MAX_SAMPLES`] (a crafted or corrupt input).
fn check_total(stacks: &[Stack]) -> Result<(), Error> {
    let mut total = 0u64;
    for s in stacks {
        total = total.saturating_add(s.weight);
        if total > MAX_SAMPLES {
            return Err(Error::TooManySamples);
        }
    }
    Ok(())
}

/// Draws one profile.
pub fn render<W: Write>(stacks: &[Stack], opts: &FlameOptions, out: W) -> Result<(), Error> {
    check_total(stacks)?;
    let (stacks, vcpus) = with_guest_frames(stacks);
    let lines = folded_lines(&stacks);
    if lines.is_empty() {
        return Err(Error::NoStacks);
    }
    let mut map;
    let mut o = inferno_options(opts, opts.kvm_colours.then(|| LEGEND.to_string()));
    if opts.kvm_colours {
        map = palette(&stacks, &vcpus);
        o.palette_map = Some(&mut map);
    }
    inferno::flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), out)
        .map_err(Error::Render)
}

/// Draws the difference between two profiles (frames coloured red where `after` spends
/// more, blue where less; widths from `after`). `normalize` scales `before` to the same
/// total first.
pub fn render_diff<W: Write>(
    before: &[Stack],
    after: &[Stack],
    normalize: bool,
    opts: &FlameOptions,
    out: W,
) -> Result<(), Error> {
    if !after.iter().any(|s| s.weight > 0) {
        return Err(Error::NoStacks);
    }
    check_total(before)?;
    check_total(after)?;
    let (before, _) = with_guest_frames(before);
    let (after, _) = with_guest_frames(after);
    let b = folded_lines(&before).join("\n");
    let a = folded_lines(&after).join("\n");
    let mut diff = Vec::new();
    let dopt = inferno::differential::Options {
        normalize,
        strip_hex: false,
    };
    inferno::differential::from_readers(dopt, b.as_bytes(), a.as_bytes(), &mut diff)
        .map_err(Error::Render)?;
    let text = String::from_utf8_lossy(&diff);
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines.sort_unstable();
    let mut o = inferno_options(
        opts,
        Some("differential: red = more in the second profile, blue = less".into()),
    );
    inferno::flamegraph::from_lines(&mut o, lines, out).map_err(Error::Render)
}
