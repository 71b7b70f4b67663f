//! Traces as tables for the engines a fleet already runs (DuckDB, Spark, Trino, pandas):
//! `kvmscope export --format parquet|arrow`.
//!
//! Two tables, written as the events stream past (memory stays flat whatever the input
//! size): **events**, one row per trace event with typed columns ([`event_schema`]), and
//! **exits**, one row per exit paired with its entry on the same vCPU thread exactly as the
//! report pairs them (`kvm_exit` → next `kvm_entry` on the thread; [`exit_schema`]).
//! Rows are collected into Arrow record batches of [`BATCH_ROWS`]; Parquet row groups are
//! cut at [`ROW_GROUP_ROWS`] rows or [`ROW_GROUP_BYTES`] of encoded data, whichever comes
//! first, and written to the file before the next one starts. Parquet files are
//! snappy-compressed with dictionary encoding; Arrow files are the IPC file format
//! (Feather v2), uncompressed.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use kvmscope_analysis::keys::ReasonKey;
use kvmscope_trace::{Event, EventKind, ExitReason, MmioKind};

/// Rows per Arrow record batch.
pub const BATCH_ROWS: usize = 65_536;
/// Most rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 262_144;
/// Most encoded bytes per Parquet row group (bounds the writer's memory).
pub const ROW_GROUP_BYTES: usize = 24 * 1024 * 1024;

/// What went wrong writing a table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ColumnarError {
    #[error("writing the Parquet {table} table failed: {source}")]
    Parquet {
        table: &'static str,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("writing the Arrow {table} table failed: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: arrow_schema::ArrowError,
    },
}

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet (snappy, dictionary-encoded strings, row groups as they fill).
    Parquet,
    /// Arrow IPC file format (Feather v2).
    Arrow,
}

fn u64f(name: &str) -> Field {
    Field::new(name, DataType::UInt64, true)
}

fn u32f(name: &str) -> Field {
    Field::new(name, DataType::UInt32, true)
}

fn strf(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// The events table: one row per event.
///
/// | column | type | what |
/// |---|---|---|
/// | ts_ns | u64 | timestamp, ns since the trace clock's origin |
/// | cpu | u32? | CPU (null when the source did not print it) |
/// | tid, tgid | u32, u32? | thread, and process when the source says it |
/// | comm, system, name | str | thread name, tracepoint system and name |
/// | isa | str? | kvm_exit: vmx, svm, arm64 or unknown |
/// | exit_reason, exit_code | str?, u64? | kvm_exit: the reason as the report names it, and its code |
/// | vcpu | u32? | vCPU id where the event prints it |
/// | rip | u64? | guest RIP/PC (kvm_exit, kvm_entry, arm64 WFx) |
/// | port | u32? | kvm_pio |
/// | msr | u32? | kvm_msr, msr:read_msr/write_msr |
/// | gpa | u64? | kvm_mmio guest physical address |
/// | fault_addr | u64? | kvm_page_fault address (GPA under TDP, GVA under shadow paging) |
/// | write | bool? | direction of pio, mmio, msr, cr |
/// | value | u64? | data of pio, mmio, msr, cr |
/// | userspace_reason | u32? | kvm_userspace_exit's KVM_EXIT_* number |
/// | esr_class | u32? | arm64 exception class (kvm_exit traps, sys_reg ESR) |
/// | payload | str | the event's fields as printed |
pub fn event_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts_ns", DataType::UInt64, false),
        u32f("cpu"),
        Field::new("tid", DataType::UInt32, false),
        u32f("tgid"),
        strf("comm", false),
        strf("system", false),
        strf("name", false),
        strf("isa", true),
        strf("exit_reason", true),
        u64f("exit_code"),
        u32f("vcpu"),
        u64f("rip"),
        u32f("port"),
        u32f("msr"),
        u64f("gpa"),
        u64f("fault_addr"),
        Field::new("write", DataType::Boolean, true),
        u64f("value"),
        u32f("userspace_reason"),
        u32f("esr_class"),
        strf("payload", false),
    ]))
}

/// The exits table: one row per exit paired with its entry.
///
/// | column | type | what |
/// |---|---|---|
/// | tid | u32 | vCPU thread |
/// | vcpu | u32? | vCPU id, when kvm_exit or kvm_entry printed it |
/// | isa, reason, code | str, str, u64? | as in the events table |
/// | start_ns | u64 | the kvm_exit's timestamp |
/// | duration_ns | u64 | to the next kvm_entry on the thread |
pub fn exit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tid", DataType::UInt32, false),
        u32f("vcpu"),
        strf("isa", false),
        strf("reason", false),
        u64f("code"),
        Field::new("start_ns", DataType::UInt64, false),
        Field::new("duration_ns", DataType::UInt64, false),
    ]))
}

enum Sink<W: Write + Send> {
    Parquet(Box<parquet::arrow::ArrowWriter<W>>),
    Arrow(Box<arrow_ipc::writer::FileWriter<W>>),
}

impl<W: Write + Send> std::fmt::Debug for Sink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Parquet(_) => "Sink::Parquet",
            Sink::Arrow(_) => "Sink::Arrow",
        })
    }
}

/// One table being written.
#[derive(Debug)]
struct Table<W: Write + Send> {
    name: &'static str,
    schema: SchemaRef,
    sink: Sink<W>,
    rows: u64,
}

impl<W: Write + Send> Table<W> {
    fn new(
        name: &'static str,
        schema: SchemaRef,
        format: Format,
        out: W,
    ) -> Result<Self, ColumnarError> {
        let sink = match format {
            Format::Parquet => {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
                    .set_created_by(format!("kvmscope {}", env!("CARGO_PKG_VERSION")))
                    .build();
                Sink::Parquet(Box::new(
                    parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(props))
                        .map_err(|source| ColumnarError::Parquet {
                            table: name,
                            source,
                        })?,
                ))
            }
            Format::Arrow => Sink::Arrow(Box::new(
                arrow_ipc::writer::FileWriter::try_new(out, &schema).map_err(|source| {
                    ColumnarError::Arrow {
                        table: name,
                        source,
                    }
                })?,
            )),
        };
        Ok(Table {
            name,
            schema,
            sink,
            rows: 0,
        })
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), ColumnarError> {
        let table = self.name;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|source| ColumnarError::Arrow { table, source })?;
        self.rows += batch.num_rows() as u64;
        match &mut self.sink {
            Sink::Parquet(w) => w
                .write(&batch)
                .map_err(|source| ColumnarError::Parquet { table, source }),
            Sink::Arrow(w) => w
                .write(&batch)
                .map_err(|source| ColumnarError::Arrow { table, source }),
        }
    }

    fn finish(self) -> Result<(u64, usize), ColumnarError> {
        let table = self.name;
        match self.sink {
            Sink::Parquet(w) => {
                let meta = w
                    .close()
                    .map_err(|source| ColumnarError::Parquet { table, source })?;
                Ok((self.rows, meta.num_row_groups()))
            }
            Sink::Arrow(mut w) => {
                w.finish()
                    .map_err(|source| ColumnarError::Arrow { table, source })?;
                Ok((self.rows, 0))
            }
        }
    }
}

#[derive(Debug)]
struct EventColumns {
    ts: UInt64Builder,
    cpu: UInt32Builder,
    tid: UInt32Builder,
    tgid: UInt32Builder,
    comm: StringBuilder,
    system: StringBuilder,
    name: StringBuilder,
    isa: StringBuilder,
    reason: StringBuilder,
    code: UInt64Builder,
    vcpu: UInt32Builder,
    rip: UInt64Builder,
    port: UInt32Builder,
    msr: UInt32Builder,
    gpa: UInt64Builder,
    fault_addr: UInt64Builder,
    write: BooleanBuilder,
    value: UInt64Builder,
    userspace_reason: UInt32Builder,
    esr_class: UInt32Builder,
    payload: StringBuilder,
    len: usize,
}

impl EventColumns {
    fn new() -> Self {
        let n = BATCH_ROWS;
        EventColumns {
            ts: UInt64Builder::with_capacity(n),
            cpu: UInt32Builder::with_capacity(n),
            tid: UInt32Builder::with_capacity(n),
            tgid: UInt32Builder::with_capacity(n),
            comm: StringBuilder::new(),
            system: StringBuilder::new(),
            name: StringBuilder::new(),
            isa: StringBuilder::new(),
            reason: StringBuilder::new(),
            code: UInt64Builder::with_capacity(n),
            vcpu: UInt32Builder::with_capacity(n),
            rip: UInt64Builder::with_capacity(n),
            port: UInt32Builder::with_capacity(n),
            msr: UInt32Builder::with_capacity(n),
            gpa: UInt64Builder::with_capacity(n),
            fault_addr: UInt64Builder::with_capacity(n),
            write: BooleanBuilder::with_capacity(n),
            value: UInt64Builder::with_capacity(n),
            userspace_reason: UInt32Builder::with_capacity(n),
            esr_class: UInt32Builder::with_capacity(n),
            payload: StringBuilder::new(),
            len: 0,
        }
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.len = 0;
        vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.cpu.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.tgid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.system.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.isa.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.code.finish()),
            Arc::new(self.vcpu.finish()),
            Arc::new(self.rip.finish()),
            Arc::new(self.port.finish()),
            Arc::new(self.msr.finish()),
            Arc::new(self.gpa.finish()),
            Arc::new(self.fault_addr.finish()),
            Arc::new(self.write.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.userspace_reason.finish()),
            Arc::new(self.esr_class.finish()),
            Arc::new(self.payload.finish()),
        ]
    }
}

/// The typed fields of one event (all optional).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields {
    pub isa: Option<&'static str>,
    pub exit_reason: Option<String>,
    pub exit_code: Option<u64>,
    pub vcpu: Option<u32>,
    pub rip: Option<u64>,
    pub port: Option<u32>,
    pub msr: Option<u32>,
    pub gpa: Option<u64>,
    pub fault_addr: Option<u64>,
    pub write: Option<bool>,
    pub value: Option<u64>,
    pub userspace_reason: Option<u32>,
    pub esr_class: Option<u32>,
}

fn isa_name(k: &ReasonKey) -> &'static str {
    match k.isa() {
        kvmscope_trace::Isa::Vmx => "vmx",
        kvmscope_trace::Isa::Svm => "svm",
        kvmscope_trace::Isa::Arm64 => "arm64",
        kvmscope_trace::Isa::Unknown => "unknown",
    }
}

/// The typed columns of an event.
pub fn fields(ev: &Event<'_>) -> Fields {
    let mut f = Fields::default();
    match &ev.kind {
        EventKind::KvmExit(e) => {
            let key = ReasonKey::from_reason(&e.reason);
            f.isa = Some(isa_name(&key));
            f.exit_reason = Some(key.name());
            f.exit_code = key.code();
            f.vcpu = e.vcpu;
            f.rip = e.rip;
            if let ExitReason::Arm64 { ec, .. } = e.reason {
                f.esr_class = Some(ec);
            }
        }
        EventKind::KvmEntry { vcpu, rip } => {
            f.vcpu = *vcpu;
            f.rip = *rip;
        }
        EventKind::UserspaceExit { reason, .. } => f.userspace_reason = Some(*reason),
        EventKind::Pio {
            write, port, val, ..
        } => {
            f.port = Some(*port);
            f.write = Some(*write);
            f.value = Some(*val);
        }
        EventKind::Mmio { kind, gpa, val, .. } => {
            f.gpa = Some(*gpa);
            f.write = Some(*kind == MmioKind::Write);
            f.value = Some(*val);
        }
        EventKind::Msr {
            write, msr, data, ..
        } => {
            f.msr = Some(*msr);
            f.write = Some(*write);
            f.value = Some(*data);
        }
        EventKind::GuestMsr {
            write, msr, val, ..
        } => {
            f.msr = Some(*msr);
            f.write = Some(*write);
            f.value = Some(*val);
        }
        EventKind::Cr { write, val, .. } => {
            f.write = Some(*write);
            f.value = Some(*val);
        }
        EventKind::PageFault { vcpu, addr, .. } => {
            f.vcpu = *vcpu;
            f.fault_addr = Some(*addr);
        }
        EventKind::HvTimerState { vcpu, .. }
        | EventKind::WaitLapicExpire { vcpu, .. }
        | EventKind::HaltPollNs { vcpu, .. }
        | EventKind::PvTlbFlush { vcpu, .. } => f.vcpu = Some(*vcpu),
        EventKind::Wfx { pc, .. } => f.rip = Some(*pc),
        EventKind::SysReg {
            esr: Some(esr),
            write,
            ..
        } => {
            f.esr_class = Some(((esr >> 26) & 0x3f) as u32);
            f.write = *write;
        }
        _ => {}
    }
    f
}

#[derive(Debug)]
struct ExitColumns {
    tid: UInt32Builder,
    vcpu: UInt32Builder,
    isa: StringBuilder,
    reason: StringBuilder,
    code: UInt64Builder,
    start: UInt64Builder,
    duration: UInt64Builder,
    len: usize,
}

impl ExitColumns {
    fn new() -> Self {
        ExitColumns {
            tid: UInt32Builder::new(),
            vcpu: UInt32Builder::new(),
            isa: StringBuilder::new(),
            reason: StringBuilder::new(),
            code: UInt64Builder::new(),
            start: UInt64Builder::new(),
            duration: UInt64Builder::new(),
            len: 0,
        }
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.len = 0;
        vec![
            Arc::new(self.tid.finish()),
            Arc::new(self.vcpu.finish()),
            Arc::new(self.isa.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.code.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.duration.finish()),
        ]
    }
}

/// An exit waiting for its entry on a thread.
#[derive(Debug, Clone)]
struct OpenExit {
    start: u64,
    vcpu: Option<u32>,
    key: ReasonKey,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Written {
    pub events: u64,
    pub exits: u64,
    /// Parquet row groups of the events table (0 for Arrow).
    pub event_row_groups: usize,
    pub exit_row_groups: usize,
}

/// Writes the two tables as events are given to it.
#[derive(Debug)]
pub struct Writer<W: Write + Send, X: Write + Send> {
    events: Table<W>,
    exits: Table<X>,
    ev: EventColumns,
    ex: ExitColumns,
    open: HashMap<u32, OpenExit>,
}

impl<W: Write + Send, X: Write + Send> Writer<W, X> {
    /// Starts both tables.
    pub fn new(format: Format, events: W, exits: X) -> Result<Self, ColumnarError> {
        Ok(Writer {
            events: Table::new("events", event_schema(), format, events)?,
            exits: Table::new("exits", exit_schema(), format, exits)?,
            ev: EventColumns::new(),
            ex: ExitColumns::new(),
            open: HashMap::new(),
        })
    }

    /// Adds one event (and, when it is a kvm_entry closing an exit, one paired exit).
    pub fn push(&mut self, ev: &Event<'_>) -> Result<(), ColumnarError> {
        let f = fields(ev);
        let c = &mut self.ev;
        c.ts.append_value(ev.ts_ns);
        c.cpu
            .append_option((ev.cpu != kvmscope_trace::text::line::CPU_UNKNOWN).then_some(ev.cpu));
        c.tid.append_value(ev.tid);
        c.tgid.append_option(ev.tgid);
        c.comm.append_value(ev.comm);
        c.system.append_value(ev.system);
        c.name.append_value(ev.name);
        c.isa.append_option(f.isa);
        c.reason.append_option(f.exit_reason.as_deref());
        c.code.append_option(f.exit_code);
        c.vcpu.append_option(f.vcpu);
        c.rip.append_option(f.rip);
        c.port.append_option(f.port);
        c.msr.append_option(f.msr);
        c.gpa.append_option(f.gpa);
        c.fault_addr.append_option(f.fault_addr);
        c.write.append_option(f.write);
        c.value.append_option(f.value);
        c.userspace_reason.append_option(f.userspace_reason);
        c.esr_class.append_option(f.esr_class);
        c.payload.append_value(ev.payload);
        c.len += 1;
        if c.len >= BATCH_ROWS {
            let cols = self.ev.finish();
            self.events.write(cols)?;
        }
        self.pair(ev)
    }

    /// Pairs exactly as the report's exit analysis does: an exit opens an interval on its
    /// thread (a second exit restarts it), the next entry on the thread closes it (an entry
    /// earlier than its exit is dropped, as perf drops it).
    fn pair(&mut self, ev: &Event<'_>) -> Result<(), ColumnarError> {
        match &ev.kind {
            EventKind::KvmExit(e) => {
                self.open.insert(
                    ev.tid,
                    OpenExit {
                        start: ev.ts_ns,
                        vcpu: e.vcpu,
                        key: ReasonKey::from_reason(&e.reason),
                    },
                );
            }
            EventKind::KvmEntry { vcpu, .. } => {
                if let Some(o) = self.open.remove(&ev.tid) {
                    if ev.ts_ns >= o.start {
                        let x = &mut self.ex;
                        x.tid.append_value(ev.tid);
                        x.vcpu.append_option(o.vcpu.or(*vcpu));
                        x.isa.append_value(isa_name(&o.key));
                        x.reason.append_value(o.key.name());
                        x.code.append_option(o.key.code());
                        x.start.append_value(o.start);
                        x.duration.append_value(ev.ts_ns - o.start);
                        x.len += 1;
                        if x.len >= BATCH_ROWS {
                            let cols = self.ex.finish();
                            self.exits.write(cols)?;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes what is buffered and closes both files.
    pub fn finish(mut self) -> Result<Written, ColumnarError> {
        if self.ev.len > 0 {
            let cols = self.ev.finish();
            self.events.write(cols)?;
        }
        if self.ex.len > 0 {
            let cols = self.ex.finish();
            self.exits.write(cols)?;
        }
        let (events, event_row_groups) = self.events.finish()?;
        let (exits, exit_row_groups) = self.exits.finish()?;
        Ok(Written {
            events,
            exits,
            event_row_groups,
            exit_row_groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_trace::KvmExit;

    fn ev(ts: u64, tid: u32, name: &'static str, kind: EventKind<'static>) -> Event<'static> {
        Event {
            ts_ns: ts,
            cpu: 0,
            tid,
            tgid: Some(1),
            comm: "CPU 0/KVM",
            system: "kvm",
            name,
            payload: "",
            kind,
            name_ref: Default::default(),
        }
    }

    fn exit(ts: u64, tid: u32, code: u64) -> Event<'static> {
        ev(
            ts,
            tid,
            "kvm_exit",
            EventKind::KvmExit(KvmExit {
                reason: ExitReason::Svm(code),
                failed_vmentry: false,
                vcpu: Some(0),
                rip: None,
                info1: None,
                info2: None,
            }),
        )
    }

    fn entry(ts: u64, tid: u32) -> Event<'static> {
        ev(
            ts,
            tid,
            "kvm_entry",
            EventKind::KvmEntry {
                vcpu: Some(0),
                rip: None,
            },
        )
    }

    #[test]
    fn fields_of_an_exit() {
        let f = fields(&exit(1, 7, 0x78));
        assert_eq!(f.isa, Some("svm"));
        assert_eq!(f.exit_reason.as_deref(), Some("hlt"));
        assert_eq!(f.exit_code, Some(0x78));
    }

    #[test]
    fn pairs_like_the_report_and_writes_both_formats() {
        for format in [Format::Parquet, Format::Arrow] {
            let mut w = Writer::new(format, Vec::new(), Vec::new()).unwrap();
            // Exit, exit again (restarts), entry: one pair of 5 ns; an entry with no exit;
            // an exit never closed.
            for e in [
                exit(10, 1, 0x78),
                exit(20, 1, 0x7b),
                entry(25, 1),
                entry(30, 1),
                exit(40, 2, 0x78),
            ] {
                w.push(&e).unwrap();
            }
            let n = w.finish().unwrap();
            assert_eq!(n.events, 5);
            assert_eq!(n.exits, 1);
            if format == Format::Parquet {
                assert_eq!(n.event_row_groups, 1);
            }
        }
    }

    fn read_back(format: Format, bytes: Vec<u8>) -> Vec<RecordBatch> {
        match format {
            Format::Parquet => {
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    bytes::Bytes::from(bytes),
                )
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
            Format::Arrow => {
                arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
        }
    }

    #[test]
    fn both_formats_read_back_with_their_types() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{UInt32Type, UInt64Type};
        use arrow_array::Array;
        for format in [Format::Parquet, Format::Arrow] {
            let (mut evb, mut exb) = (Vec::new(), Vec::new());
            let mut w = Writer::new(format, &mut evb, &mut exb).unwrap();
            let mut pio = ev(
                5,
                3,
                "kvm_pio",
                EventKind::Pio {
                    write: true,
                    port: 0x3f8,
                    size: 1,
                    count: 1,
                    val: 0x41,
                },
            );
            pio.payload = "pio_write at 0x3f8 size 1 count 1 val 0x41";
            // More than one batch, so the file holds several.
            for i in 0..(BATCH_ROWS as u64 + 10) {
                w.push(&exit(2 * i, 3, 0x7b)).unwrap();
                w.push(&entry(2 * i + 1, 3)).unwrap();
            }
            w.push(&pio).unwrap();
            let n = w.finish().unwrap();
            assert_eq!(n.exits, BATCH_ROWS as u64 + 10);
            let batches = read_back(format, evb);
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows as u64, n.events);
            assert_eq!(
                batches[0].schema().fields().len(),
                event_schema().fields().len()
            );
            let last = batches.last().unwrap();
            let i = last.num_rows() - 1;
            let port = last
                .column_by_name("port")
                .unwrap()
                .as_primitive::<UInt32Type>();
            assert_eq!(port.value(i), 0x3f8);
            let value = last
                .column_by_name("value")
                .unwrap()
                .as_primitive::<UInt64Type>();
            assert_eq!(value.value(i), 0x41);
            let payload = last.column_by_name("payload").unwrap().as_string::<i32>();
            assert_eq!(payload.value(i), pio.payload);
            let reason = batches[0]
                .column_by_name("exit_reason")
                .unwrap()
                .as_string::<i32>();
            assert_eq!(
                reason.value(0),
                "io",
                "SVM exit 0x7b as the report names it"
            );
            assert!(reason.is_null(1), "kvm_entry has no exit reason");
            let exits = read_back(format, exb);
            let d = exits[0]
                .column_by_name("duration_ns")
                .unwrap()
                .as_primitive::<UInt64Type>();
            assert_eq!(d.value(0), 1);
        }
    }
}
