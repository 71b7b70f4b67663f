//! `--html OUT.html` for report and diagnose: the page, and the flame graph of `--stacks`.

use std::path::Path;

use anyhow::Context;
use kvmscope_analysis::timeline::Timeline;
use kvmscope_analysis::Report;
use kvmscope_diagnose::Diagnosis;

/// What the page shows.
#[derive(Debug)]
pub struct PageArgs<'a> {
    pub title: String,
    pub report: &'a Report,
    pub timeline: &'a Timeline,
    pub diagnosis: Option<&'a Diagnosis>,
    pub stacks: Option<&'a Path>,
    pub notes: Vec<String>,
}

/// Renders the page and writes it to `out` (`-`: standard output).
pub fn write(out: &Path, args: &PageArgs<'_>) -> anyhow::Result<()> {
    let flame = match args.stacks {
        Some(p) => Some(flame_svg(p)?),
        None => None,
    };
    let timeline = args.timeline.finish();
    let mut notes = args.notes.clone();
    if let Some(p) = args.stacks {
        notes.push(format!("stacks: {}", p.display()));
    }
    let page = kvmscope_render::html::Page {
        title: args.title.clone(),
        report: args.report,
        timeline: &timeline,
        diagnosis: args.diagnosis,
        flame_svg: flame.as_deref(),
        notes,
    };
    let html = kvmscope_render::html::render(&page);
    if out.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout().lock().write_all(html.as_bytes())?;
    } else {
        std::fs::write(out, html).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn flame_svg(path: &Path) -> anyhow::Result<String> {
    let stacks = super::flamegraph::read_stacks(Some(path))?;
    let opts = kvmscope_stacks::flame::FlameOptions {
        title: format!("{} (host CPU)", path.display()),
        kvm_colours: true,
        width: Some(1000),
        ..kvmscope_stacks::flame::FlameOptions::default()
    };
    let mut svg = Vec::new();
    kvmscope_stacks::flame::render(&stacks, &opts, &mut svg)
        .with_context(|| format!("cannot draw the flame graph of {}", path.display()))?;
    String::from_utf8(svg).context("the flame graph is not UTF-8")
}
