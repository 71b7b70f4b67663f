//! Perfetto's protobuf trace (`Trace { repeated TracePacket packet = 1; }`) with
//! TrackDescriptor and TrackEvent packets on one packet sequence, event and argument names
//! interned (sent once in `interned_data`, then referred to by id). Field numbers are those
//! of Perfetto's `protos/perfetto/trace` (trace_packet.proto, track_descriptor.proto,
//! track_event.proto, debug_annotation.proto, interned_data.proto).

use std::collections::HashMap;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
use std::io::{self, Write};

use crate::model::{Arg, Sink, Track, Uuid};
use crate::proto::Msg;

// TracePacket
const TIMESTAMP: u32 = 8;
const SEQUENCE_ID: u32 = 10;
const TRACK_EVENT: u32 = 11;
const INTERNED_DATA: u32 = 12;
const SEQUENCE_FLAGS: u32 = 13;
const TRACK_DESCRIPTOR: u32 = 60;
const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
const SEQ_NEEDS_INCREMENTAL_STATE: u64 = 2;
// TrackDescriptor
const TD_UUID: u32 = 1;
const TD_NAME: u32 = 2;
const TD_PROCESS: u32 = 3;
const TD_THREAD: u32 = 4;
const TD_PARENT: u32 = 5;
const TD_COUNTER: u32 = 8;
// ProcessDescriptor / ThreadDescriptor / CounterDescriptor
const PD_PID: u32 = 1;
const PD_NAME: u32 = 6;
const THD_PID: u32 = 1;
const THD_TID: u32 = 2;
const THD_NAME: u32 = 5;
const CD_UNIT_NAME: u32 = 6;
// TrackEvent
const TE_DEBUG_ANNOTATIONS: u32 = 4;
const TE_TYPE: u32 = 9;
const TE_NAME_IID: u32 = 10;
const TE_TRACK_UUID: u32 = 11;
const TE_DOUBLE_COUNTER: u32 = 44;
const TYPE_SLICE_BEGIN: u64 = 1;
const TYPE_SLICE_END: u64 = 2;
const TYPE_INSTANT: u64 = 3;
const TYPE_COUNTER: u64 = 4;
// DebugAnnotation
const DA_NAME_IID: u32 = 1;
const DA_UINT: u32 = 3;
const DA_STRING: u32 = 6;
// InternedData
const ID_EVENT_NAMES: u32 = 2;
const ID_ANNOTATION_NAMES: u32 = 3;
const IID: u32 = 1;
const IID_NAME: u32 = 2;

const SEQUENCE: u64 = 1;

/// Writes a Perfetto trace to `W` as events come.
#[derive(Debug)]
pub struct PerfettoSink<W: Write> {
    out: W,
    msg: Msg,
    event_names: Map<Box<str>, u64>,
    arg_names: Map<&'static str, u64>,
    new_events: Vec<u64>,
    new_args: Vec<(u64, &'static str)>,
    first: bool,
    pub bytes: u64,
}

impl<W: Write> PerfettoSink<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            msg: Msg::new(),
            event_names: Map::default(),
            arg_names: Map::default(),
            new_events: Vec::new(),
            new_args: Vec::new(),
            first: true,
            bytes: 0,
        }
    }

    /// Starts a packet: sequence id and flags.
    fn start(&mut self, needs_state: bool) {
        self.msg.clear();
        self.msg.uint(SEQUENCE_ID, SEQUENCE);
        if self.first {
            self.msg.uint(SEQUENCE_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED);
            self.first = false;
        } else if needs_state {
            self.msg.uint(SEQUENCE_FLAGS, SEQ_NEEDS_INCREMENTAL_STATE);
        }
    }

    /// Writes the packet as `Trace.packet` (field 1).
    fn emit(&mut self) -> io::Result<()> {
        let mut head = [0u8; 11];
        head[0] = 0x0a;
        let mut n = 1;
        let mut v = self.msg.buf.len() as u64;
        while v >= 0x80 {
            head[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        head[n] = v as u8;
        n += 1;
        self.out.write_all(&head[..n])?;
        self.out.write_all(&self.msg.buf)?;
        self.bytes += (n + self.msg.buf.len()) as u64;
        Ok(())
    }

    fn name_iid(&mut self, name: &str) -> u64 {
        if let Some(&i) = self.event_names.get(name) {
            return i;
        }
        let i = self.event_names.len() as u64 + 1;
        self.event_names.insert(name.into(), i);
        self.new_events.push(i);
        i
    }

    fn arg_iid(&mut self, name: &'static str) -> u64 {
        if let Some(&i) = self.arg_names.get(name) {
            return i;
        }
        let i = self.arg_names.len() as u64 + 1;
        self.arg_names.insert(name, i);
        self.new_args.push((i, name));
        i
    }

    fn event(
        &mut self,
        ts: u64,
        track: Uuid,
        kind: u64,
        name: Option<&str>,
        args: &[Arg<'_>],
        value: Option<f64>,
    ) -> io::Result<()> {
        let iid = name.map(|n| self.name_iid(n));
        let mut arg_iids = [0u64; 8];
        for (slot, a) in arg_iids.iter_mut().zip(args) {
            *slot = match a {
                Arg::U(n, _) | Arg::S(n, _) => self.arg_iid(n),
            };
        }
        self.start(true);
        self.msg.uint(TIMESTAMP, ts);
        if !self.new_events.is_empty() || !self.new_args.is_empty() {
            self.msg.begin(INTERNED_DATA);
            for i in std::mem::take(&mut self.new_events) {
                self.msg.begin(ID_EVENT_NAMES);
                self.msg.uint(IID, i);
                self.msg.string(IID_NAME, name.unwrap_or_default());
                self.msg.end();
            }
            for (i, n) in std::mem::take(&mut self.new_args) {
                self.msg.begin(ID_ANNOTATION_NAMES);
                self.msg.uint(IID, i);
                self.msg.string(IID_NAME, n);
                self.msg.end();
            }
            self.msg.end();
        }
        self.msg.begin(TRACK_EVENT);
        self.msg.uint(TE_TYPE, kind);
        self.msg.uint(TE_TRACK_UUID, track);
        if let Some(i) = iid {
            self.msg.uint(TE_NAME_IID, i);
        }
        for (a, &iid) in args.iter().zip(&arg_iids) {
            self.msg.begin(TE_DEBUG_ANNOTATIONS);
            self.msg.uint(DA_NAME_IID, iid);
            match a {
                Arg::U(_, v) => self.msg.uint(DA_UINT, *v),
                Arg::S(_, s) => self.msg.string(DA_STRING, s),
            }
            self.msg.end();
        }
        if let Some(v) = value {
            self.msg.double(TE_DOUBLE_COUNTER, v);
        }
        self.msg.end();
        self.emit()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for PerfettoSink<W> {
    fn process(&mut self, track: Track, name: &str) -> io::Result<()> {
        self.start(false);
        self.msg.begin(TRACK_DESCRIPTOR);
        self.msg.uint(TD_UUID, track.uuid);
        self.msg.begin(TD_PROCESS);
        self.msg.int(PD_PID, i64::from(track.pid));
        self.msg.string(PD_NAME, name);
        self.msg.end();
        self.msg.end();
        self.emit()
    }

    fn thread(&mut self, track: Track, parent: Uuid, name: &str) -> io::Result<()> {
        self.start(false);
        self.msg.begin(TRACK_DESCRIPTOR);
        self.msg.uint(TD_UUID, track.uuid);
        self.msg.uint(TD_PARENT, parent);
        self.msg.begin(TD_THREAD);
        self.msg.int(THD_PID, i64::from(track.pid));
        self.msg.int(THD_TID, i64::from(track.tid));
        self.msg.string(THD_NAME, name);
        self.msg.end();
        self.msg.end();
        self.emit()
    }

    fn cpu(&mut self, track: Track, cpu: u32) -> io::Result<()> {
        self.start(false);
        self.msg.begin(TRACK_DESCRIPTOR);
        self.msg.uint(TD_UUID, track.uuid);
        self.msg.string(TD_NAME, &format!("CPU {cpu}"));
        self.msg.end();
        self.emit()
    }

    fn counter_track(
        &mut self,
        track: Track,
        parent: Option<Uuid>,
        name: &str,
        unit: &str,
    ) -> io::Result<()> {
        self.start(false);
        self.msg.begin(TRACK_DESCRIPTOR);
        self.msg.uint(TD_UUID, track.uuid);
        if let Some(p) = parent {
            self.msg.uint(TD_PARENT, p);
        }
        self.msg.string(TD_NAME, name);
        self.msg.begin(TD_COUNTER);
        self.msg.string(CD_UNIT_NAME, unit);
        self.msg.end();
        self.msg.end();
        self.emit()
    }

    fn begin(&mut self, ts: u64, track: Track, name: &str, args: &[Arg<'_>]) -> io::Result<()> {
        self.event(ts, track.uuid, TYPE_SLICE_BEGIN, Some(name), args, None)
    }

    fn end(&mut self, ts: u64, track: Track) -> io::Result<()> {
        self.event(ts, track.uuid, TYPE_SLICE_END, None, &[], None)
    }

    fn instant(&mut self, ts: u64, track: Track, name: &str, args: &[Arg<'_>]) -> io::Result<()> {
        self.event(ts, track.uuid, TYPE_INSTANT, Some(name), args, None)
    }

    fn counter(&mut self, ts: u64, track: Track, _name: &str, value: f64) -> io::Result<()> {
        self.event(ts, track.uuid, TYPE_COUNTER, None, &[], Some(value))
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
