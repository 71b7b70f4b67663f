//! Decoding of the kernel's ring-buffer pages (as read from `per_cpu/cpuN/trace_pipe_raw`
//! and stored in trace.dat flyrecord sections). Sans I/O: takes `&[u8]` pages.
//!
//! A page is `timestamp: u64`, `commit: local_t` (data length in the low 27 bits; bit 31
//! "events were missed before this page", bit 30 "the missed count is stored after the
//! data"), then the data: records with a 4-byte header `type_len:5 | time_delta:27`.
//! type_len 1..=28 is a data record of type_len*4 bytes; 0 a data record whose length is in
//! the next u32; 29 padding (a discarded record, or the end of the page when its delta is 0);
//! 30 a time extension (delta = next u32 << 27 | time_delta); 31 an absolute time stamp.

use crate::error::TraceDatError;
use crate::format::PageLayout;

const TYPE_PADDING: u32 = 29;
const TYPE_TIME_EXTEND: u32 = 30;
const TYPE_TIME_STAMP: u32 = 31;
const TS_SHIFT: u32 = 27;
const COMMIT_MASK: u64 = (1 << 27) - 1;
const MISSED_EVENTS: u64 = 1 << 31;
const MISSED_STORED: u64 = 1 << 30;
/// Bits of an absolute time stamp record; the rest come from the page time stamp.
const ABS_TS_MASK: u64 = (1 << 59) - 1;

/// One event record, borrowing its payload from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Trace clock time in ns (the instance's `trace_clock`, `local` by default).
    pub ts_ns: u64,
    pub cpu: u32,
    /// The event id (`common_type`): look it up in [`crate::format::Formats`].
    pub id: u16,
    /// `common_pid`: the thread that emitted the event.
    pub common_pid: i32,
    /// The payload, starting with the common fields (offsets as in the `format` file). May be
    /// longer than the event's fields (records are padded to 4 bytes).
    pub data: &'a [u8],
}

impl<'a> Record<'a> {
    /// `common_flags` (irqs-off, need-resched, hardirq, softirq...).
    pub fn common_flags(&self) -> u8 {
        self.data.get(2).copied().unwrap_or(0)
    }

    /// `common_preempt_count`.
    pub fn common_preempt_count(&self) -> u8 {
        self.data.get(3).copied().unwrap_or(0)
    }
}

/// Events the kernel lost before a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    #[default]
    None,
    /// Events were lost, the kernel did not say how many.
    Unknown,
    /// This many events were lost.
    Count(u64),
}

impl Missed {
    /// The count when known; 0 for None; None for Unknown.
    pub fn count(&self) -> Option<u64> {
        match self {
            Missed::None => Some(0),
            Missed::Unknown => None,
            Missed::Count(n) => Some(*n),
        }
    }
}

/// The header of one page and its data.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// Time stamp of the page (the base for the first record's delta).
    pub ts: u64,
    pub missed: Missed,
    /// The committed data: records only.
    pub data: &'a [u8],
    /// Offset of `data` in the input, for error messages (file offset when known).
    pub data_offset: u64,
    pub cpu: u32,
}

impl<'a> Page<'a> {
    /// Parses a page header. `offset` is where `bytes` starts in its file (or 0), used in
    /// errors. `bytes` may be longer than the page's committed data (a whole page).
    pub fn parse(
        layout: &PageLayout,
        bytes: &'a [u8],
        cpu: u32,
        offset: u64,
    ) -> Result<Page<'a>, TraceDatError> {
        let corrupt = |at: usize, message: String| TraceDatError::Corrupt {
            what: format!("ring-buffer page of cpu {cpu}"),
            offset: offset + at as u64,
            message,
        };
        if bytes.len() < layout.data_offset {
            return Err(corrupt(
                0,
                format!(
                    "page of {} bytes is shorter than its {}-byte header",
                    bytes.len(),
                    layout.data_offset
                ),
            ));
        }
        let ts = read_u64(bytes, layout.timestamp_offset).unwrap_or(0);
        let commit = match layout.commit_size {
            4 => read_u32(bytes, layout.commit_offset).unwrap_or(0) as u64,
            _ => read_u64(bytes, layout.commit_offset).unwrap_or(0),
        };
        let size = (commit & COMMIT_MASK) as usize;
        let end = layout.data_offset + size;
        if end > bytes.len() {
            return Err(corrupt(
                layout.commit_offset,
                format!(
                    "commit says {size} bytes of data but only {} follow the header",
                    bytes.len() - layout.data_offset
                ),
            ));
        }
        let missed = if commit & MISSED_EVENTS == 0 {
            Missed::None
        } else if commit & MISSED_STORED != 0 {
            match layout.commit_size {
                4 => read_u32(bytes, end).map(|n| Missed::Count(n as u64)),
                _ => read_u64(bytes, end).map(Missed::Count),
            }
            .unwrap_or(Missed::Unknown)
        } else {
            Missed::Unknown
        };
        Ok(Page {
            ts,
            missed,
            data: &bytes[layout.data_offset..end],
            data_offset: offset + layout.data_offset as u64,
            cpu,
        })
    }

    /// The records of this page, in order. A corrupt record yields one error (naming its
    /// offset) and ends the iteration.
    pub fn records(&self) -> Records<'a> {
        Records {
            data: self.data,
            pos: 0,
            ts: self.ts,
            page_ts: self.ts,
            cpu: self.cpu,
            base: self.data_offset,
            done: false,
        }
    }
}

/// Iterator over the records of a page.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    data: &'a [u8],
    pos: usize,
    ts: u64,
    page_ts: u64,
    cpu: u32,
    base: u64,
    done: bool,
}

impl<'a> Records<'a> {
    fn corrupt(&mut self, at: usize, message: String) -> Option<Result<Record<'a>, TraceDatError>> {
        self.done = true;
        Some(Err(TraceDatError::Corrupt {
            what: format!("ring-buffer record of cpu {}", self.cpu),
            offset: self.base + at as u64,
            message,
        }))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, TraceDatError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.pos >= self.data.len() {
                return None;
            }
            let at = self.pos;
            let Some(header) = read_u32(self.data, at) else {
                return self.corrupt(at, "record header cut short".into());
            };
            let type_len = header & 0x1f;
            let delta = (header >> 5) as u64;
            match type_len {
                TYPE_PADDING => {
                    if delta == 0 {
                        // The rest of the page is unused.
                        self.done = true;
                        return None;
                    }
                    let Some(len) = read_u32(self.data, at + 4) else {
                        return self.corrupt(at, "padding length cut short".into());
                    };
                    self.ts = self.ts.wrapping_add(delta);
                    self.pos = at + 4 + len as usize;
                }
                TYPE_TIME_EXTEND => {
                    let Some(hi) = read_u32(self.data, at + 4) else {
                        return self.corrupt(at, "time extend cut short".into());
                    };
                    self.ts = self.ts.wrapping_add(((hi as u64) << TS_SHIFT) | delta);
                    self.pos = at + 8;
                }
                TYPE_TIME_STAMP => {
                    let Some(hi) = read_u32(self.data, at + 4) else {
                        return self.corrupt(at, "time stamp cut short".into());
                    };
                    let abs = (((hi as u64) << TS_SHIFT) | delta) & ABS_TS_MASK;
                    self.ts = abs | (self.page_ts & !ABS_TS_MASK);
                    self.pos = at + 8;
                }
                _ => {
                    let (start, len) = if type_len == 0 {
                        let Some(len) = read_u32(self.data, at + 4) else {
                            return self.corrupt(at, "record length cut short".into());
                        };
                        if len < 4 {
                            return self.corrupt(at, format!("record length {len} is below 4"));
                        }
                        (at + 8, len as usize - 4)
                    } else {
                        (at + 4, type_len as usize * 4)
                    };
                    let Some(data) = start
                        .checked_add(len)
                        .and_then(|end| self.data.get(start..end))
                    else {
                        return self.corrupt(
                            at,
                            format!(
                                "record of {len} bytes runs past the page's {} committed bytes",
                                self.data.len()
                            ),
                        );
                    };
                    self.ts = self.ts.wrapping_add(delta);
                    self.pos = start + len;
                    if data.len() < 8 {
                        return self.corrupt(
                            at,
                            format!(
                                "record of {} bytes has no room for common fields",
                                data.len()
                            ),
                        );
                    }
                    return Some(Ok(Record {
                        ts_ns: self.ts,
                        cpu: self.cpu,
                        id: u16::from_le_bytes([data[0], data[1]]),
                        common_pid: i32::from_le_bytes([data[4], data[5], data[6], data[7]]),
                        data,
                    }));
                }
            }
        }
    }
}

/// Adds `by` ns to every time in one ring-buffer page, in place: the page time stamp and the
/// absolute time stamps (TIME_STAMP records) among its records; the deltas of the other
/// records are relative and stay. `page` is one whole page as stored (`cpu` and `offset`, its
/// place in the file, name it in errors). Returns how many absolute time stamps it shifted.
/// On an error (a corrupt page, a time that would not fit) the page may be half shifted.
pub fn shift_page(
    layout: &PageLayout,
    page: &mut [u8],
    cpu: u32,
    offset: u64,
    by: u64,
) -> Result<usize, TraceDatError> {
    let (data_at, len, ts) = {
        let p = Page::parse(layout, page, cpu, offset)?;
        (layout.data_offset, p.data.len(), p.ts)
    };
    let corrupt = |at: usize, message: String| TraceDatError::Corrupt {
        what: format!("ring-buffer page of cpu {cpu}"),
        offset: offset + at as u64,
        message,
    };
    let Some(new_ts) = ts.checked_add(by) else {
        return Err(corrupt(
            layout.timestamp_offset,
            format!("page time stamp {ts} + {by} does not fit in 64 bits"),
        ));
    };
    let ts_at = layout.timestamp_offset;
    match page.get_mut(ts_at..ts_at + 8) {
        Some(b) => b.copy_from_slice(&new_ts.to_le_bytes()),
        None => return Err(corrupt(ts_at, "page time stamp cut short".into())),
    }
    let data = &mut page[data_at..data_at + len];
    let mut pos = 0usize;
    let mut shifted = 0;
    while pos < data.len() {
        let at = pos;
        let cut = |what: &str| corrupt(data_at + at, format!("{what} cut short"));
        let header = read_u32(data, at).ok_or_else(|| cut("record header"))?;
        let type_len = header & 0x1f;
        let next_u32 = |what: &str| read_u32(data, at + 4).ok_or_else(|| cut(what));
        let next = match type_len {
            TYPE_PADDING if header >> 5 == 0 => break,
            TYPE_PADDING => at.checked_add(4 + next_u32("padding length")? as usize),
            TYPE_TIME_EXTEND => Some(at + 8),
            TYPE_TIME_STAMP => {
                let hi = next_u32("time stamp")?;
                let abs = ((u64::from(hi) << TS_SHIFT) | u64::from(header >> 5)) & ABS_TS_MASK;
                let new = abs
                    .checked_add(by)
                    .filter(|t| *t <= ABS_TS_MASK)
                    .ok_or_else(|| {
                        corrupt(
                            data_at + at,
                            format!("absolute time stamp {abs} + {by} does not fit in 59 bits"),
                        )
                    })?;
                let h = TYPE_TIME_STAMP | (((new & ((1 << TS_SHIFT) - 1)) as u32) << 5);
                data[at..at + 4].copy_from_slice(&h.to_le_bytes());
                data[at + 4..at + 8].copy_from_slice(&((new >> TS_SHIFT) as u32).to_le_bytes());
                shifted += 1;
                Some(at + 8)
            }
            0 => at.checked_add(4 + next_u32("record length")? as usize),
            n => Some(at + 4 + n as usize * 4),
        };
        pos = next.ok_or_else(|| corrupt(data_at + at, "record length overflows".into()))?;
    }
    Ok(shifted)
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Builds ring-buffer pages the way the kernel does; used by tests and by the trace.dat
/// writer's own tests.
#[derive(Debug)]
pub struct PageBuilder {
    layout: PageLayout,
    buf: Vec<u8>,
    last_ts: u64,
    started: bool,
}

impl PageBuilder {
    pub fn new(layout: PageLayout, page_ts: u64) -> PageBuilder {
        let mut buf = vec![0u8; layout.data_offset];
        buf[layout.timestamp_offset..layout.timestamp_offset + 8]
            .copy_from_slice(&page_ts.to_le_bytes());
        PageBuilder {
            layout,
            buf,
            last_ts: page_ts,
            started: true,
        }
    }

    /// Appends a record at `ts` (>= the previous one) with `payload` (padded to 4 bytes).
    /// Returns false when the page is full.
    pub fn push(&mut self, ts: u64, payload: &[u8]) -> bool {
        let delta = ts.saturating_sub(self.last_ts);
        let padded = payload.len().div_ceil(4) * 4;
        let ext = if delta >= 1 << TS_SHIFT { 8 } else { 0 };
        let len = if padded > 28 * 4 || padded == 0 {
            padded + 8
        } else {
            padded + 4
        };
        if self.buf.len() + ext + len > self.layout.page_size() {
            return false;
        }
        let mut delta = delta;
        if ext > 0 {
            let h = TYPE_TIME_EXTEND | (((delta & ((1 << TS_SHIFT) - 1)) as u32) << 5);
            self.buf.extend_from_slice(&h.to_le_bytes());
            self.buf
                .extend_from_slice(&((delta >> TS_SHIFT) as u32).to_le_bytes());
            delta = 0;
        }
        if len == padded + 4 {
            let h = (padded / 4) as u32 | ((delta as u32) << 5);
            self.buf.extend_from_slice(&h.to_le_bytes());
        } else {
            let h = (delta as u32) << 5;
            self.buf.extend_from_slice(&h.to_le_bytes());
            self.buf
                .extend_from_slice(&((padded + 4) as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(payload);
        self.buf.resize(self.buf.len() + padded - payload.len(), 0);
        self.last_ts = ts;
        let _ = self.started;
        true
    }

    /// Marks events as missed before this page (`Some(n)` stores the count).
    pub fn finish(mut self, missed: Option<Option<u64>>) -> Vec<u8> {
        let size = (self.buf.len() - self.layout.data_offset) as u64;
        let mut commit = size;
        if let Some(count) = missed {
            commit |= MISSED_EVENTS;
            if let Some(n) = count {
                commit |= MISSED_STORED;
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
        }
        let c = self.layout.commit_offset;
        self.buf[c..c + 8].copy_from_slice(&commit.to_le_bytes());
        self.buf.resize(self.layout.page_size(), 0);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payload(id: u16, pid: i32, extra: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 8];
        p[0..2].copy_from_slice(&id.to_le_bytes());
        p[4..8].copy_from_slice(&pid.to_le_bytes());
        p.extend_from_slice(extra);
        p
    }

    #[test]
    fn round_trip_small_large_and_extended() {
        let l = PageLayout::DEFAULT_64;
        let mut b = PageBuilder::new(l, 1_000);
        assert!(b.push(1_010, &payload(110, 42, &[1; 20])));
        assert!(b.push(1_010 + (1 << 28), &payload(111, 43, &[2; 200])));
        assert!(b.push(1_010 + (1 << 28) + 5, &payload(112, 44, &[])));
        let page = b.finish(Some(Some(7)));
        let p = Page::parse(&l, &page, 1, 0).unwrap();
        assert_eq!(p.missed, Missed::Count(7));
        let recs: Vec<_> = p.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            (recs[0].ts_ns, recs[0].id, recs[0].common_pid),
            (1_010, 110, 42)
        );
        assert_eq!(recs[1].ts_ns, 1_010 + (1 << 28));
        assert_eq!(recs[1].data.len(), 208);
        assert_eq!((recs[2].id, recs[2].cpu), (112, 1));
    }

    #[test]
    fn absolute_time_stamp_and_padding() {
        let l = PageLayout::DEFAULT_64;
        // TIME_STAMP 0x1234_5678_9 (abs) = hi << 27 | delta
        let abs: u64 = 0x1_2345_6789;
        let mut page = page_with_abs(5u64 << 59 | 100, abs);
        let mut commit = [0u8; 8];
        commit.copy_from_slice(&page[8..16]);
        let commit = u64::from_le_bytes(commit) | MISSED_EVENTS;
        page[8..16].copy_from_slice(&commit.to_le_bytes());
        let p = Page::parse(&l, &page, 0, 4096).unwrap();
        assert_eq!(p.missed, Missed::Unknown);
        let recs: Vec<_> = p.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].ts_ns, (5u64 << 59) | (abs + 4));
    }

    /// A page with a TIME_STAMP record (`abs`), a discarded record, a data record and the
    /// end padding, page time stamp `page_ts`.
    fn page_with_abs(page_ts: u64, abs: u64) -> Vec<u8> {
        let mut page = vec![0u8; 16];
        page[0..8].copy_from_slice(&page_ts.to_le_bytes());
        let mut data = Vec::new();
        data.extend_from_slice(&(31 | (((abs & ((1 << 27) - 1)) as u32) << 5)).to_le_bytes());
        data.extend_from_slice(&((abs >> 27) as u32).to_le_bytes());
        // discarded record (padding with delta 3; array[0] counts itself and 8 bytes)
        data.extend_from_slice(&(29u32 | (3 << 5)).to_le_bytes());
        data.extend_from_slice(&12u32.to_le_bytes());
        data.extend_from_slice(&[0; 8]);
        // a record with delta 1
        data.extend_from_slice(&(2u32 | (1 << 5)).to_le_bytes());
        data.extend_from_slice(&payload(9, 1, &[]));
        // end-of-page padding
        data.extend_from_slice(&29u32.to_le_bytes());
        page[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        page.extend_from_slice(&data);
        page.resize(4096, 0);
        page
    }

    fn times(l: &PageLayout, page: &[u8]) -> (u64, Vec<u64>) {
        let p = Page::parse(l, page, 0, 0).unwrap();
        let ts = p.records().map(|r| r.unwrap().ts_ns).collect();
        (p.ts, ts)
    }

    #[test]
    fn shift_page_moves_page_and_absolute_stamps() {
        let l = PageLayout::DEFAULT_64;
        let by = 5_000_000_123;
        // Relative records only (one with a time extend).
        let mut b = PageBuilder::new(l, 1_000);
        assert!(b.push(1_010, &payload(110, 42, &[1; 20])));
        assert!(b.push(1_010 + (1 << 28), &payload(111, 43, &[2; 200])));
        let mut page = b.finish(Some(Some(7)));
        let (pts, before) = times(&l, &page);
        assert_eq!(shift_page(&l, &mut page, 0, 0, by).unwrap(), 0);
        let (pts2, after) = times(&l, &page);
        assert_eq!(pts2, pts + by);
        assert_eq!(after, before.iter().map(|t| t + by).collect::<Vec<_>>());
        assert_eq!(
            Page::parse(&l, &page, 0, 0).unwrap().missed,
            Missed::Count(7)
        );
        // An absolute time stamp whose low 27 bits carry into the high word.
        let abs: u64 = 0x1_2345_6789 | ((1 << 27) - 1);
        let mut page = page_with_abs(100, abs);
        let (_, before) = times(&l, &page);
        assert_eq!(before, vec![abs + 4]);
        assert_eq!(shift_page(&l, &mut page, 0, 0, by).unwrap(), 1);
        assert_eq!(times(&l, &page), (100 + by, vec![abs + by + 4]));
    }

    #[test]
    fn shift_page_refuses_what_does_not_fit() {
        let l = PageLayout::DEFAULT_64;
        let mut page = page_with_abs(100, ABS_TS_MASK - 10);
        let err = shift_page(&l, &mut page, 2, 8192, 11).unwrap_err();
        assert!(err.to_string().contains("59 bits"), "{err}");
        assert!(err.to_string().contains("byte offset 8208"), "{err}");
        let mut page = page_with_abs(u64::MAX - 1, 0);
        let err = shift_page(&l, &mut page, 0, 0, 2).unwrap_err();
        assert!(err.to_string().contains("64 bits"), "{err}");
        // A record header cut short, and a commit past the page.
        let mut page = page_with_abs(0, 0);
        page[8..16].copy_from_slice(&10u64.to_le_bytes());
        let err = shift_page(&l, &mut page, 0, 0, 1).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
        page[8..16].copy_from_slice(&5000u64.to_le_bytes());
        assert!(shift_page(&l, &mut page, 0, 0, 1).is_err());
    }

    #[test]
    fn corrupt_record_names_offset() {
        let l = PageLayout::DEFAULT_64;
        let mut page = vec![0u8; 16];
        let mut data = Vec::new();
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&1000u32.to_le_bytes());
        page[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        page.extend_from_slice(&data);
        let p = Page::parse(&l, &page, 0, 8192).unwrap();
        let err = p.records().next().unwrap().unwrap_err();
        assert!(err.to_string().contains("byte offset 8208"), "{err}");
        let err = Page::parse(&l, &page[..10], 0, 0).unwrap_err();
        assert!(err.to_string().contains("offset 0"), "{err}");
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let l = PageLayout { data_size: 584, ..PageLayout::DEFAULT_64 };
            if let Ok(p) = Page::parse(&l, &bytes, 0, 0) {
                for r in p.records() { let _ = r; }
            }
        }

        #[test]
        fn shift_page_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), by in any::<u64>()) {
            let l = PageLayout { data_size: 584, ..PageLayout::DEFAULT_64 };
            let mut page = bytes;
            let _ = shift_page(&l, &mut page, 0, 0, by);
        }

        #[test]
        fn builder_round_trips(events in proptest::collection::vec((0u64..1 << 30, 0usize..150), 1..30)) {
            let l = PageLayout::DEFAULT_64;
            let mut b = PageBuilder::new(l, 7);
            let mut ts = 7;
            let mut want = Vec::new();
            for (i, (d, n)) in events.iter().enumerate() {
                ts += d;
                let p = payload(i as u16, i as i32, &vec![i as u8; *n]);
                if !b.push(ts, &p) { break; }
                want.push((ts, i as u16));
            }
            let page = b.finish(None);
            let p = Page::parse(&l, &page, 0, 0).unwrap();
            let got: Vec<_> = p.records().map(|r| r.map(|r| (r.ts_ns, r.id))).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got, want);
        }
    }
}
