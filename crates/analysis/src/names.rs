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
pub struct NameTable(kvmscope_trace::names::NameTable<Class>);

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
        self.0
            .intern(ev.system, ev.name, |system, _| Class::of(system))
    }

    pub fn get(&self, id: NameId) -> Name<'_> {
        let (system, name, class) = self.0.get(id);
        Name {
            system,
            name,
            class,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
}
