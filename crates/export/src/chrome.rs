//! Chrome's JSON trace format (`{"traceEvents": [...]}`; the Trace Event Format document):
//! B/E slices, `i` instants, `C` counters, `M` process and thread names. Timestamps are
//! microseconds with nanosecond decimals.

use std::io::{self, Write};

use crate::model::{Arg, Sink, Track, Uuid, COUNTER_PID, CPU_PID};

#[derive(Debug)]
pub struct ChromeSink<W: Write> {
    out: W,
    first: bool,
    counters_named: bool,
    cpus_named: bool,
    buf: Vec<u8>,
    pub bytes: u64,
}

fn push_str(o: &mut Vec<u8>, s: &str) {
    o.push(b'"');
    for c in s.chars() {
        match c {
            '"' => o.extend_from_slice(b"\\\""),
            '\\' => o.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                o.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0; 4];
                o.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    o.push(b'"');
}

fn push_ts(o: &mut Vec<u8>, ns: u64) {
    let _ = write!(o, "{}.{:03}", ns / 1000, ns % 1000);
}

impl<W: Write> ChromeSink<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            first: true,
            counters_named: false,
            cpus_named: false,
            buf: Vec::with_capacity(256),
            bytes: 0,
        }
    }

    fn write(&mut self, ev: &[u8]) -> io::Result<()> {
        let prefix: &[u8] = if self.first {
            self.first = false;
            b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"
        } else {
            b",\n"
        };
        self.out.write_all(prefix)?;
        self.out.write_all(ev)?;
        self.bytes += (prefix.len() + ev.len()) as u64;
        Ok(())
    }

    fn meta(&mut self, what: &str, pid: u32, tid: u32, name: &str) -> io::Result<()> {
        let mut o = Vec::new();
        let _ = write!(
            o,
            "{{\"ph\":\"M\",\"name\":\"{what}\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":"
        );
        push_str(&mut o, name);
        o.extend_from_slice(b"}}");
        self.write(&o)
    }

    fn event(
        &mut self,
        ph: &str,
        ts: u64,
        track: Track,
        name: Option<&str>,
        args: &[Arg<'_>],
    ) -> io::Result<()> {
        let mut o = std::mem::take(&mut self.buf);
        o.clear();
        let _ = write!(
            o,
            "{{\"ph\":\"{ph}\",\"pid\":{},\"tid\":{},\"ts\":",
            track.pid, track.tid
        );
        push_ts(&mut o, ts);
        if let Some(n) = name {
            o.extend_from_slice(b",\"name\":");
            push_str(&mut o, n);
        }
        if ph == "i" {
            o.extend_from_slice(b",\"s\":\"t\"");
        }
        if !args.is_empty() {
            o.extend_from_slice(b",\"args\":{");
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                match a {
                    Arg::U(k, v) => {
                        let _ = write!(o, "\"{k}\":{v}");
                    }
                    Arg::S(k, s) => {
                        let _ = write!(o, "\"{k}\":");
                        push_str(&mut o, s);
                    }
                }
            }
            o.push(b'}');
        }
        o.push(b'}');
        let r = self.write(&o);
        self.buf = o;
        r
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for ChromeSink<W> {
    fn process(&mut self, track: Track, name: &str) -> io::Result<()> {
        self.meta("process_name", track.pid, 0, name)
    }

    fn thread(&mut self, track: Track, _parent: Uuid, name: &str) -> io::Result<()> {
        self.meta("thread_name", track.pid, track.tid, name)
    }

    fn cpu(&mut self, track: Track, cpu: u32) -> io::Result<()> {
        if !self.cpus_named {
            self.cpus_named = true;
            self.meta("process_name", CPU_PID, 0, "physical CPUs")?;
        }
        self.meta("thread_name", track.pid, track.tid, &format!("CPU {cpu}"))
    }

    fn counter_track(
        &mut self,
        track: Track,
        _parent: Option<Uuid>,
        _name: &str,
        _unit: &str,
    ) -> io::Result<()> {
        if track.pid == COUNTER_PID && !self.counters_named {
            self.counters_named = true;
            self.meta("process_name", COUNTER_PID, 0, "KVM exit rates")?;
        }
        Ok(())
    }

    fn begin(&mut self, ts: u64, track: Track, name: &str, args: &[Arg<'_>]) -> io::Result<()> {
        self.event("B", ts, track, Some(name), args)
    }

    fn end(&mut self, ts: u64, track: Track) -> io::Result<()> {
        self.event("E", ts, track, None, &[])
    }

    fn instant(&mut self, ts: u64, track: Track, name: &str, args: &[Arg<'_>]) -> io::Result<()> {
        self.event("i", ts, track, Some(name), args)
    }

    fn counter(&mut self, ts: u64, track: Track, name: &str, value: f64) -> io::Result<()> {
        let mut o = Vec::with_capacity(96);
        let _ = write!(
            o,
            "{{\"ph\":\"C\",\"pid\":{},\"tid\":{},\"ts\":",
            track.pid, track.tid
        );
        push_ts(&mut o, ts);
        o.extend_from_slice(b",\"name\":");
        push_str(&mut o, name);
        let v = if value.is_finite() { value } else { 0.0 };
        let _ = write!(o, ",\"args\":{{\"value\":{v}}}}}");
        self.write(&o)
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.first {
            self.write(b"")?;
            // An empty trace: the prefix alone was written; nothing to separate.
        }
        self.out.write_all(b"\n]}\n")?;
        self.bytes += 4;
        self.out.flush()
    }
}
