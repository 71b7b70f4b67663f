//! What the emulated host says on its serial console: the init script's markers, kernel
//! panics and oopses, and the tail kept for error messages. Sans I/O: lines in, state out.

use std::collections::VecDeque;

/// Lines the init script prints to mark its progress (each at the start of a line).
pub(crate) const MARK: &str = "@@kvmscope:";

/// One thing the console said that the runner acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Said {
    /// Init started; KVM is loaded and /dev/kvm exists.
    Booted,
    /// Job `index` (0-based) started.
    JobStarted(usize),
    /// Job `index` ended with `status`.
    JobEnded(usize, i32),
    /// Outputs are on the disk.
    Saved,
    /// Init could not set the host up (`what`).
    Failed(String),
    /// The kernel panicked.
    Panic,
    /// The kernel oopsed (it may go on).
    Oops,
}

/// The console so far: its tail and what it said.
#[derive(Debug)]
pub(crate) struct Console {
    tail: VecDeque<String>,
    keep: usize,
    /// Every line, for the console log saved with the outputs.
    pub log: String,
    pub booted: bool,
    pub saved: bool,
    pub panicked: bool,
    pub oopses: u32,
    pub failed: Option<String>,
    /// The first panic, oops or BUG line: kept for the error message even when a long call
    /// trace pushes it out of the tail.
    trouble: Option<String>,
}

impl Console {
    pub fn new(keep: usize) -> Self {
        Console {
            tail: VecDeque::new(),
            keep,
            log: String::new(),
            booted: false,
            saved: false,
            panicked: false,
            oopses: 0,
            failed: None,
            trouble: None,
        }
    }

    /// Takes one console line (without its newline; `\r` and terminal escapes removed).
    pub fn line(&mut self, raw: &str) -> Option<Said> {
        let line = clean(raw);
        self.log.push_str(&line);
        self.log.push('\n');
        if self.tail.len() == self.keep {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        let said = parse(&line)?;
        // The panic line wins over an earlier oops: it says why the kernel stopped.
        if matches!(said, Said::Panic) && !self.panicked
            || matches!(said, Said::Oops) && self.trouble.is_none()
        {
            self.trouble = Some(line);
        }
        match &said {
            Said::Booted => self.booted = true,
            Said::Saved => self.saved = true,
            Said::Panic => self.panicked = true,
            Said::Oops => self.oopses += 1,
            Said::Failed(w) => self.failed = Some(w.clone()),
            Said::JobStarted(_) | Said::JobEnded(..) => {}
        }
        Some(said)
    }

    /// The last lines, for an error message; the first panic or oops line leads when the
    /// tail no longer holds it.
    pub fn tail(&self) -> String {
        let tail = self.tail.iter().cloned().collect::<Vec<_>>().join("\n");
        match &self.trouble {
            Some(t) if !self.tail.contains(t) => format!("{t}\n[...]\n{tail}"),
            _ => tail,
        }
    }
}

fn parse(line: &str) -> Option<Said> {
    if line.contains("Kernel panic - not syncing") {
        return Some(Said::Panic);
    }
    if line.contains("Oops: ") || line.contains("BUG: ") {
        return Some(Said::Oops);
    }
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let mut words = rest.split_whitespace();
    match words.next()? {
        "booted" => Some(Said::Booted),
        "job" => Some(Said::JobStarted(words.next()?.parse().ok()?)),
        "jobdone" => {
            let i = words.next()?.parse().ok()?;
            Some(Said::JobEnded(i, words.next()?.parse().ok()?))
        }
        "saved" => Some(Said::Saved),
        "fail" => Some(Said::Failed(words.collect::<Vec<_>>().join(" "))),
        _ => None,
    }
}

/// Drops carriage returns and ANSI/VT100 escape sequences (firmware clears the screen).
fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters, then one final byte in @..~
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_init_markers() {
        let mut c = Console::new(3);
        assert_eq!(
            c.line("\x1b[?7l\x1b[2J@@kvmscope:booted 2.81"),
            Some(Said::Booted)
        );
        assert_eq!(c.line("@@kvmscope:job 0 pio"), Some(Said::JobStarted(0)));
        assert_eq!(
            c.line("@@kvmscope:jobdone 0 1\r"),
            Some(Said::JobEnded(0, 1))
        );
        assert_eq!(c.line("random output"), None);
        assert_eq!(c.line("@@kvmscope:saved"), Some(Said::Saved));
        assert!(c.booted && c.saved && !c.panicked);
        assert_eq!(
            c.tail(),
            "@@kvmscope:jobdone 0 1\nrandom output\n@@kvmscope:saved"
        );
        assert!(c.log.starts_with("@@kvmscope:booted 2.81\n"));
    }

    #[test]
    fn notices_panics_oopses_and_failures() {
        let mut c = Console::new(10);
        c.line("[    7.99] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI");
        c.line("[    7.99] Kernel panic - not syncing: Fatal exception in interrupt");
        c.line("@@kvmscope:fail insmod kvm_amd.ko");
        assert!(c.panicked);
        assert_eq!(c.oopses, 1);
        assert_eq!(c.failed.as_deref(), Some("insmod kvm_amd.ko"));
    }

    #[test]
    fn the_panic_line_survives_a_long_call_trace() {
        let mut c = Console::new(3);
        c.line("[    8.19] Kernel panic - not syncing: sysrq triggered crash");
        for i in 0..10 {
            c.line(&format!("[    8.2{i}]  frame_{i}+0x1/0x2"));
        }
        let t = c.tail();
        assert!(
            t.starts_with("[    8.19] Kernel panic - not syncing: sysrq triggered crash\n[...]\n"),
            "{t}"
        );
        assert!(t.ends_with("frame_9+0x1/0x2"), "{t}");
    }

    #[test]
    fn never_panics_on_odd_lines() {
        let mut c = Console::new(2);
        for l in [
            "",
            "\x1b",
            "\x1b[",
            "@@kvmscope:",
            "@@kvmscope:job",
            "@@kvmscope:job x",
            "@@kvmscope:jobdone 1",
            "é\x1b[9",
            "@@kvmscope:jobdone 1 -1",
        ] {
            c.line(l);
        }
        assert_eq!(
            c.line("@@kvmscope:jobdone 3 -1"),
            Some(Said::JobEnded(3, -1))
        );
    }
}
