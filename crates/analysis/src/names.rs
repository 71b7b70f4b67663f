//! Event names interned once per report: `(system, name)` → a small [`NameId`], so that what
//! analyses keep per event name (counts by name, pacing slots) is an index into a vector and
//! the system is classified once per name, not compared per event and per analysis.

pub use kvmscope_trace::names::NameId;
use kvmscope_trace::Event;

/// Which analyses an event's system feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `kvm`
    Kvm,
    /// `kvmmmu`
    KvmMmu,
    /// The traced kernel's own events the guest analyses read (msr, timer, ipi, csd,
    /// irq_vectors, tlb).
    Guest,
    Other,
}

impl Class {
    fn of(system: &str) -> Class {
        match system {
            "kvm" => Class::Kvm,
            "kvmmmu" => Class::KvmMmu,
            "msr" | "timer" | "ipi" | "csd" | "irq_vectors" | "tlb" => Class::Guest,
            _ => Class::Other,
        }
    }
}

/// The report's names: each `(system, name)` with its [`Class`].
#[derive(Debug, Default)]
pub struct NameTable {
    names: kvmscope_trace::names::NameTable<Class>,
    /// The decoder's table the events now come from ([`NameRef`]), and its ids mapped to
    /// ours: a name is hashed once per decoder, then found by index.
    ///
    /// [`NameRef`]: kvmscope_trace::names::NameRef
    source: u32,
    from_source: Vec<Option<(NameId, Class)>>,
}

/// A decoder id past this is hashed, not mapped (a malformed trace.dat's id space is not
/// allocated).
const MAX_SOURCE_ID: u32 = 1 << 16;

/// One interned name.
#[derive(Debug, Clone, Copy)]
pub struct Name<'a> {
    pub system: &'a str,
    pub name: &'a str,
    pub class: Class,
}

impl NameTable {
    /// The id of the event's `(system, name)`, and its class.
    #[inline]
    pub fn intern(&mut self, ev: &Event<'_>) -> (NameId, Class) {
        let Some((table, id)) = ev.name_ref.get().filter(|r| r.1 < MAX_SOURCE_ID) else {
            return self.hash(ev);
        };
        if table == self.source {
            if let Some(Some(hit)) = self.from_source.get(id as usize) {
                return *hit;
            }
        } else {
            self.source = table;
            self.from_source.clear();
        }
        let ours = self.hash(ev);
        if self.from_source.len() <= id as usize {
            self.from_source.resize(id as usize + 1, None);
        }
        self.from_source[id as usize] = Some(ours);
        ours
    }

    #[inline]
    fn hash(&mut self, ev: &Event<'_>) -> (NameId, Class) {
        self.names
            .intern(ev.system, ev.name, |system, _| Class::of(system))
    }

    pub fn get(&self, id: NameId) -> Name<'_> {
        let (system, name, class) = self.names.get(id);
        Name {
            system,
            name,
            class,
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_trace::EventKind;

    fn ev<'a>(system: &'a str, name: &'a str) -> Event<'a> {
        Event {
            ts_ns: 0,
            cpu: 0,
            tid: 1,
            tgid: None,
            comm: "x",
            system,
            name,
            payload: "",
            kind: EventKind::Other,
            name_ref: Default::default(),
        }
    }

    #[test]
    fn same_name_same_id_across_growth() {
        let mut t = NameTable::default();
        let names: Vec<String> = (0..500).map(|i| format!("ev{i}")).collect();
        let ids: Vec<NameId> = names.iter().map(|n| t.intern(&ev("kvm", n)).0).collect();
        for (n, id) in names.iter().zip(&ids) {
            assert_eq!(t.intern(&ev("kvm", n)).0, *id);
            assert_eq!(t.get(*id).name, n.as_str());
        }
        // The system is part of the key.
        let (a, ca) = t.intern(&ev("kvm", "x"));
        let (b, cb) = t.intern(&ev("", "x"));
        assert_ne!(a, b);
        assert_eq!((ca, cb), (Class::Kvm, Class::Other));
        assert_eq!(t.len(), 502);
    }

    #[test]
    fn decoder_ids_map_per_decoder_table() {
        use kvmscope_trace::names::{new_table, NameRef};
        let mut t = NameTable::default();
        let (a, b) = (new_table(), new_table());
        let with = |e: Event<'static>, table, id| Event {
            name_ref: NameRef::new(table, id),
            ..e
        };
        let exit = t.intern(&with(ev("kvm", "kvm_exit"), a, 0));
        // Id 0 of another decoder is another name; the first decoder's id 0 is still its own.
        let switch = t.intern(&with(ev("sched", "sched_switch"), b, 0));
        assert_ne!(exit.0, switch.0);
        assert_eq!(t.get(switch.0).name, "sched_switch");
        assert_eq!(t.intern(&with(ev("kvm", "kvm_exit"), a, 0)), exit);
        assert_eq!(t.intern(&with(ev("kvm", "kvm_exit"), a, 7)), exit);
        assert_eq!(t.intern(&ev("kvm", "kvm_exit")), exit);
    }
}
