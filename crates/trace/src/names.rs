//! Interning of event names: `(system, name)` → a small id and a value computed once per name
//! (which payload decoder a name takes, which analyses it feeds), so that per-event work keyed
//! by name is one hash of a short string and one comparison, not a chain of comparisons.

/// Index of an interned `(system, name)`, dense from 0 in first-seen order.
pub type NameId = u32;

/// The decoder's own id for an event's name, handed to consumers with the event so that they
/// can map it to theirs by index instead of hashing the name again: `id` is dense in the
/// decoder's table `table`, a number no other table of the process has. [`NameRef::NONE`]
/// from sources that do not intern.
///
/// A hint, not part of what the event says: two events compare equal whatever their
/// `NameRef`s, and it prints as `_`.
#[derive(Clone, Copy, Default)]
pub struct NameRef {
    table: u32,
    id: NameId,
}

impl NameRef {
    pub const NONE: NameRef = NameRef { table: 0, id: 0 };

    /// `id` of table `table` (a number from [`new_table`]).
    #[inline]
    pub fn new(table: u32, id: NameId) -> NameRef {
        NameRef { table, id }
    }

    /// `Some((table, id))`, or `None` for [`NameRef::NONE`].
    #[inline]
    pub fn get(self) -> Option<(u32, NameId)> {
        (self.table != 0).then_some((self.table, self.id))
    }
}

impl PartialEq for NameRef {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for NameRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("_")
    }
}

/// A table number for [`NameRef`]s no other table of this process has had (never 0).
pub fn new_table() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    loop {
        let t = NEXT.fetch_add(1, Ordering::Relaxed);
        if t != 0 {
            return t;
        }
    }
}

/// Open addressing over slots that hold the key itself for names up to 24 bytes and systems up
/// to 8 (every tracepoint kvmscope knows): a lookup is one hash and a few word compares in one
/// slot, no pointer chased; longer keys compare against the stored strings.
#[derive(Debug)]
pub struct NameTable<V> {
    entries: Vec<Entry<V>>,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Entry<V> {
    system: Box<str>,
    name: Box<str>,
    value: V,
}

/// A key as words: the name's length and three words covering up to 24 bytes (overlapping
/// for shorter names), the system's length and first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Key {
    name: [u64; 3],
    system: u64,
    /// name length | system length << 32
    lens: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: Key,
    id: NameId,
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

/// The first eight bytes of `b`, zero-padded: built from overlapping loads, not by copying
/// into a stack word (a variable-length copy is a call, and the wide load after it stalls).
#[inline]
fn padded(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 8 {
        return load(b, 0);
    }
    if n >= 4 {
        let lo = load4(b, 0);
        let hi = load4(b, n - 4);
        // The overlap holds the same bytes in both words.
        return lo | hi << (8 * (n - 4));
    }
    if n == 0 {
        return 0;
    }
    u64::from(b[0]) | u64::from(b[n / 2]) << (8 * (n / 2)) | u64::from(b[n - 1]) << (8 * (n - 1))
}

#[inline]
fn load4(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
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

impl Key {
    #[inline]
    fn of(system: &str, name: &str) -> Key {
        let (n, s) = (name.as_bytes(), system.as_bytes());
        let words = match n.len() {
            0..=7 => [padded(n), 0, 0],
            8..=16 => [load(n, 0), load(n, n.len() - 8), 0],
            _ => [load(n, 0), load(n, 8), load(n, n.len() - 8)],
        };
        Key {
            name: words,
            system: padded(s),
            lens: n.len() as u64 | (s.len() as u64) << 32,
        }
    }

    /// `==` word by word, in registers: the derived comparison copied the slot to the stack
    /// and loaded the key's words there in pairs, where they had been stored one by one (a
    /// store-forwarding stall the profile showed as the parser's hottest instruction).
    #[inline(always)]
    fn same(&self, other: &Key) -> bool {
        ((self.name[0] ^ other.name[0])
            | (self.name[1] ^ other.name[1])
            | (self.name[2] ^ other.name[2])
            | (self.system ^ other.system)
            | (self.lens ^ other.lens))
            == 0
    }

    /// The words hold the whole key.
    #[inline]
    fn complete(&self) -> bool {
        (self.lens & 0xffff_ffff) <= 24 && (self.lens >> 32) <= 8
    }

    #[inline]
    fn hash(&self) -> u64 {
        // Folded multiply: every input bit reaches the low bits the table index takes.
        let x = self.name[0]
            ^ self.name[1].rotate_left(21)
            ^ self.name[2].rotate_left(42)
            ^ self.system.rotate_left(11)
            ^ self.lens.rotate_left(53);
        let m = u128::from(x ^ 0x2545_f491_4f6c_dd1d) * 0x9e37_79b9_7f4a_7c15;
        (m as u64) ^ ((m >> 64) as u64)
    }
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
        let key = Key::of(system, name);
        if !self.slots.is_empty() {
            let mask = self.slots.len() - 1;
            let mut i = key.hash() as usize & mask;
            loop {
                let slot = &self.slots[i];
                if slot.id == EMPTY {
                    break;
                }
                if slot.key.same(&key) {
                    let e = &self.entries[slot.id as usize];
                    if key.complete()
                        || (short_eq(e.name.as_bytes(), name.as_bytes())
                            && short_eq(e.system.as_bytes(), system.as_bytes()))
                    {
                        return (slot.id, e.value);
                    }
                }
                i = (i + 1) & mask;
            }
        }
        let value = make(system, name);
        (self.insert(key, system, name, value), value)
    }

    #[cold]
    fn insert(&mut self, key: Key, system: &str, name: &str, value: V) -> NameId {
        let id = self.entries.len() as NameId;
        self.entries.push(Entry {
            system: system.into(),
            name: name.into(),
            value,
        });
        if self.entries.len() * 2 > self.slots.len() {
            let size = (self.slots.len() * 2).max(64);
            self.slots = vec![
                Slot {
                    key: Key::default(),
                    id: EMPTY,
                };
                size
            ];
            for id in 0..self.entries.len() {
                let e = &self.entries[id];
                let key = Key::of(&e.system, &e.name);
                self.place(key, id as NameId);
            }
        } else {
            self.place(key, id);
        }
        id
    }

    fn place(&mut self, key: Key, id: NameId) {
        let mask = self.slots.len() - 1;
        let mut i = key.hash() as usize & mask;
        while self.slots[i].id != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { key, id };
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
    fn padded_is_the_zero_padded_prefix() {
        let text = b"abcdefghijk";
        for start in 0..text.len() {
            for end in start..=text.len() {
                let b = &text[start..end];
                let mut w = [0u8; 8];
                let n = b.len().min(8);
                w[..n].copy_from_slice(&b[..n]);
                assert_eq!(padded(b), u64::from_le_bytes(w), "{b:?}");
            }
        }
    }

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
    fn keys_of_every_length_stay_apart() {
        // Names and systems that differ in one byte anywhere, at every length up to 40 (past
        // the 24 bytes a slot holds) and systems past 8 bytes.
        let mut t = NameTable::default();
        let mut seen = Vec::new();
        for len in 0..40 {
            for pos in 0..len.max(1) {
                let mut n = vec![b'a'; len];
                if len > 0 {
                    n[pos] = b'b';
                }
                let n = String::from_utf8(n).unwrap();
                for sys in ["", "kvm", "kvmmmu", "irq_vectors", "irq_vectorz"] {
                    seen.push((sys.to_string(), n.clone()));
                }
            }
        }
        seen.sort();
        seen.dedup();
        let ids: Vec<NameId> = seen
            .iter()
            .map(|(s, n)| t.intern(s, n, |_, _| ()).0)
            .collect();
        assert_eq!(t.len(), seen.len());
        for ((s, n), id) in seen.iter().zip(ids) {
            assert_eq!(t.intern(s, n, |_, _| unreachable!()).0, id);
            assert_eq!((t.get(id).0, t.get(id).1), (s.as_str(), n.as_str()));
        }
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
