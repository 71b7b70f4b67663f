//! What the trace contains: its time span, events by name, the VMs (processes) and vCPU
//! threads that emitted KVM events, and userspace exits by reason.

use std::collections::BTreeMap;

use kvmscope_trace::{tables, Event, EventKind};
use serde::Serialize;

use crate::keys::{Tally, ThreadSlots};
use crate::names::{Class, NameId, NameTable};

#[derive(Debug, Default)]
pub struct Overview {
    first_ts: Option<u64>,
    last_ts: u64,
    events: u64,
    names: NameTable,
    /// Events per [`NameId`].
    by_name: Vec<u64>,
    threads: ThreadSlots<Thread>,
    userspace: Tally<(u32, Option<u32>)>,
    /// Events per CPU below 4096, by index; the rest in `cpus`.
    cpus_small: Vec<u64>,
    cpus: BTreeMap<u32, u64>,
}

#[derive(Debug, Default, Clone)]
struct Thread {
    comm: String,
    tgid: Option<u32>,
    vcpu: Option<u32>,
    kvm_events: u64,
    exits: u64,
    userspace_exits: u64,
    first_ts: u64,
    last_ts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverviewReport {
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub duration_ns: u64,
    pub events: u64,
    /// Events by `system:name`, most frequent first.
    pub by_name: Vec<(String, u64)>,
    pub cpus: Vec<(u32, u64)>,
    /// Processes with vCPU threads, by pid (tgid). Threads whose process the trace does not
    /// say are grouped under pid `None`.
    pub vms: Vec<Vm>,
    /// `kvm_userspace_exit` by reason.
    pub userspace_exits: Vec<UserspaceExitRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vm {
    pub pid: Option<u32>,
    pub comm: String,
    pub vcpus: Vec<VcpuThread>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VcpuThread {
    pub tid: u32,
    pub comm: String,
    /// The vCPU index the kernel printed (kvm_entry/kvm_exit `vcpu N`), when it did.
    pub vcpu: Option<u32>,
    pub kvm_events: u64,
    pub exits: u64,
    pub userspace_exits: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserspaceExitRow {
    pub reason: u32,
    pub name: String,
    /// Set for `restart`/`error` exits: the errno.
    pub errno: Option<u32>,
    pub count: u64,
}

impl Overview {
    /// Counts the event; returns its interned name and class, which the report's other
    /// analyses are dispatched by.
    #[inline]
    pub fn observe(&mut self, ev: &Event<'_>) -> (NameId, Class) {
        if self.first_ts.is_none() {
            self.first_ts = Some(ev.ts_ns);
        }
        self.last_ts = self.last_ts.max(ev.ts_ns);
        self.events += 1;
        let (id, class) = self.names.intern(ev);
        match self.by_name.get_mut(id as usize) {
            Some(n) => *n += 1,
            None => self.first_of_name(id),
        }
        if ev.cpu != kvmscope_trace::text::line::CPU_UNKNOWN {
            match self.cpus_small.get_mut(ev.cpu as usize) {
                Some(n) => *n += 1,
                None => self.cpu_past_small(ev.cpu),
            }
        }
        if matches!(class, Class::Kvm | Class::KvmMmu) {
            self.observe_kvm(ev);
        }
        (id, class)
    }

    #[cold]
    #[inline(never)]
    fn first_of_name(&mut self, id: NameId) {
        self.by_name.resize(id as usize + 1, 0);
        self.by_name[id as usize] = 1;
    }

    /// Counts an event of a CPU `cpus_small` does not reach yet.
    #[cold]
    #[inline(never)]
    fn cpu_past_small(&mut self, cpu: u32) {
        if cpu < 4096 {
            self.cpus_small.resize(cpu as usize + 1, 0);
            self.cpus_small[cpu as usize] = 1;
        } else {
            *self.cpus.entry(cpu).or_default() += 1;
        }
    }

    fn observe_kvm(&mut self, ev: &Event<'_>) {
        let t = self.threads.get_or_insert_with(ev.tid, || Thread {
            comm: ev.comm.to_string(),
            first_ts: ev.ts_ns,
            ..Thread::default()
        });
        t.kvm_events += 1;
        t.last_ts = ev.ts_ns;
        if t.tgid.is_none() {
            t.tgid = ev.tgid;
        }
        match ev.kind {
            EventKind::KvmExit(e) => {
                t.exits += 1;
                t.vcpu = e.vcpu.or(t.vcpu);
            }
            EventKind::KvmEntry { vcpu, .. } => t.vcpu = vcpu.or(t.vcpu),
            EventKind::VcpuIndex { vcpu } => t.vcpu = Some(vcpu),
            EventKind::UserspaceExit { reason, errno } => {
                t.userspace_exits += 1;
                self.userspace.bump((reason, errno));
            }
            _ => {}
        }
    }

    /// kvm and kvmmmu events seen (a kernel with any runs KVM: it is a host).
    pub fn kvm_events(&self) -> u64 {
        self.threads.values().map(|t| t.kvm_events).sum()
    }

    pub fn duration_ns(&self) -> u64 {
        self.last_ts - self.first_ts.unwrap_or(self.last_ts)
    }

    pub fn finish(&self) -> OverviewReport {
        let mut by_name: Vec<(String, u64)> = self
            .by_name
            .iter()
            .enumerate()
            .map(|(id, &n)| {
                let name = self.names.get(id as NameId);
                (format!("{}:{}", name.system, name.name), n)
            })
            .collect();
        by_name.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut vms: BTreeMap<Option<u32>, Vm> = BTreeMap::new();
        let mut threads: Vec<_> = self.threads.iter().collect();
        threads.sort_unstable_by_key(|&(tid, _)| tid);
        for (tid, t) in threads {
            // The process's own name is its main thread's (tid == pid); without that thread in
            // the trace, or without a tgid column, it is unknown ("?"): a vCPU thread's name
            // ("CPU 0/KVM") or another process's is never shown as the process's.
            let vm = vms.entry(t.tgid).or_insert_with(|| Vm {
                pid: t.tgid,
                comm: "?".into(),
                vcpus: Vec::new(),
            });
            if Some(tid) == t.tgid {
                vm.comm = t.comm.clone();
            }
            vm.vcpus.push(VcpuThread {
                tid,
                comm: t.comm.clone(),
                vcpu: t.vcpu,
                kvm_events: t.kvm_events,
                exits: t.exits,
                userspace_exits: t.userspace_exits,
                first_ts_ns: t.first_ts,
                last_ts_ns: t.last_ts,
            });
        }
        let mut userspace_exits: Vec<UserspaceExitRow> = self
            .userspace
            .sorted()
            .into_iter()
            .map(|((reason, errno), count)| UserspaceExitRow {
                reason,
                name: match errno {
                    Some(4) => "restart (EINTR)".into(),
                    Some(e) => format!("error (errno {e})"),
                    None => tables::userspace_exit_name(reason)
                        .map_or_else(|| format!("KVM_EXIT_{reason}"), str::to_string),
                },
                errno,
                count,
            })
            .collect();
        userspace_exits.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        OverviewReport {
            first_ts_ns: self.first_ts.unwrap_or(0),
            last_ts_ns: self.last_ts,
            duration_ns: self.duration_ns(),
            events: self.events,
            by_name,
            cpus: self
                .cpus_small
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(c, &n)| (c as u32, n))
                .chain(self.cpus.iter().map(|(&c, &n)| (c, n)))
                .collect(),
            vms: vms.into_values().collect(),
            userspace_exits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_trace::text::decode_sequential;

    #[test]
    fn arm64_threads_get_their_vcpu_index_from_kvm_get_timer_map() {
        let text = "qemu-system-aar-301 [000] ..... 5.000000: kvm_get_timer_map: VCPU: 1, dv: 27, dp: 30, ep: -1\n\
                    qemu-system-aar-301 [000] ..... 5.000010: kvm_exit: TRAP: HSR_EC: 0x0001 (WFx), PC: 0x0000ffff80001000\n\
                    qemu-system-aar-301 [000] d.... 5.000020: kvm_entry: PC: 0x0000ffff80001004\n";
        let mut o = Overview::default();
        decode_sequential(text.as_bytes(), |ev| {
            o.observe(ev);
        })
        .unwrap();
        let r = o.finish();
        assert_eq!(r.vms[0].vcpus[0].vcpu, Some(1), "{r:#?}");
        // No tgid column: the process is unknown, not named after its thread.
        assert_eq!((r.vms[0].pid, r.vms[0].comm.as_str()), (None, "?"));
    }
}
