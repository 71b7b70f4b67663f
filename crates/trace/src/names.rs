//! Interning of event names: `(system, name)` → a small id and a value computed once per name
//! (which payload decoder a name takes, which analyses it feeds), so that per-event work keyed
//! by name is one hash of a short string and one comparison, not a chain of comparisons.

/// Index of an interned `(system, name)`, dense from 0 in first-seen order.
pub type NameId = u32;

/// Open addressing over `(hash, id)` slots; strings are compared only on a hash match, with an
/// inline comparison (these are short: a libc `memcmp` call costs more than the compare).
#[derive(Debug)]
pub struct NameTable<V> {
    entries: Vec<Entry<V>>,
    slots: Vec<(u64, NameId)>,
}

#[derive(Debug)]
struct Entry<V> {
    system: Box<str>,
    name: Box<str>,
    value: V,
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            slots: Vec::new(),
        }
    }
}

const EMPTY: NameId = NameId::MAX;

#[inline]
fn load(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Equality of two short byte strings without a call.
#[inline]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut i = 0;
    while i + 8 <= n {
        if load(a, i) != load(b, i) {
            return false;
        }
        i += 8;
    }
    // The last, overlapping, word.
    i == n || load(a, n - 8) == load(b, n - 8)
}

/// The first and last eight bytes and the length: enough to tell event names apart (they share
/// prefixes such as `kvm_` and `hrtimer_`, rarely both ends); equal hashes are compared anyway.
#[inline]
fn ends(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 8 {
        load(b, 0) ^ load(b, n - 8).rotate_left(31) ^ ((n as u64) << 56)
    } else {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(b);
        u64::from_le_bytes(w) ^ ((n as u64) << 56)
    }
}

#[inline]
fn hash(system: &str, name: &str) -> u64 {
    let h = (ends(name.as_bytes()) ^ ends(system.as_bytes()).rotate_left(17))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 32)
}

impl<V: Copy> NameTable<V> {
    /// The id and value of `(system, name)`; `make` computes the value the first time.
    #[inline]
    pub fn intern(
        &mut self,
        system: &str,
        name: &str,
        make: impl FnOnce(&str, &str) -> V,
    ) -> (NameId, V) {
        let h = hash(system, name);
        if !self.slots.is_empty() {
            let mask = self.slots.len() - 1;
            let mut i = h as usize & mask;
            loop {
                let (sh, id) = self.slots[i];
                if id == EMPTY {
                    break;
                }
                if sh == h {
                    let e = &self.entries[id as usize];
                    if short_eq(e.name.as_bytes(), name.as_bytes())
                        && short_eq(e.system.as_bytes(), system.as_bytes())
                    {
                        return (id, e.value);
                    }
                }
                i = (i + 1) & mask;
            }
        }
        let value = make(system, name);
        (self.insert(h, system, name, value), value)
    }

    #[cold]
    fn insert(&mut self, h: u64, system: &str, name: &str, value: V) -> NameId {
        let id = self.entries.len() as NameId;
        self.entries.push(Entry {
            system: system.into(),
            name: name.into(),
            value,
        });
        if self.entries.len() * 2 > self.slots.len() {
            let size = (self.slots.len() * 2).max(64);
            self.slots = vec![(0, EMPTY); size];
            for id in 0..self.entries.len() {
                let e = &self.entries[id];
                let h = hash(&e.system, &e.name);
                self.place(h, id as NameId);
            }
        } else {
            self.place(h, id);
        }
        id
    }

    fn place(&mut self, h: u64, id: NameId) {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        while self.slots[i].1 != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = (h, id);
    }

    /// `(system, name, value)` of an id this table gave.
    pub fn get(&self, id: NameId) -> (&str, &str, V) {
        let e = &self.entries[id as usize];
        (&e.system, &e.name, e.value)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_id_across_growth() {
        let mut t = NameTable::default();
        let names: Vec<String> = (0..500).map(|i| format!("event_number_{i}")).collect();
        let ids: Vec<NameId> = names
            .iter()
            .map(|n| t.intern("kvm", n, |_, n| n.len()).0)
            .collect();
        for (n, id) in names.iter().zip(&ids) {
            assert_eq!(t.intern("kvm", n, |_, _| unreachable!()).0, *id);
            assert_eq!(t.get(*id), ("kvm", n.as_str(), n.len()));
        }
        // The system is part of the key.
        let (a, _) = t.intern("kvm", "x", |_, _| 1);
        let (b, _) = t.intern("", "x", |_, _| 2);
        assert_ne!(a, b);
        assert_eq!(t.len(), 502);
    }

    #[test]
    fn short_eq_is_eq() {
        let words = [
            "",
            "a",
            "kvm",
            "kvm_exit",
            "kvm_entry",
            "kvm_exiu",
            "hrtimer_expire_entry",
            "hrtimer_expire_entrz",
            "12345678",
            "12345679",
        ];
        for a in words {
            for b in words {
                assert_eq!(short_eq(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
        }
    }
}
