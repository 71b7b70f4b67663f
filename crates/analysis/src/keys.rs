//! Owned keys for what analyses group by, and their display names from the knowledge tables.

use kvmscope_trace::{tables, ArmExitKind, ExitReason, Isa};
use serde::Serialize;

/// An exit reason that outlives the input buffer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonKey {
    Vmx(u32),
    Svm(u64),
    Arm64(ArmExitKind, u32),
    Code(u64),
    Named(Box<str>),
}

impl ReasonKey {
    pub fn from_reason(r: &ExitReason<'_>) -> Self {
        match *r {
            ExitReason::Vmx(c) => Self::Vmx(c),
            ExitReason::Svm(c) => Self::Svm(c),
            ExitReason::Arm64 { kind, ec } => Self::Arm64(kind, ec),
            ExitReason::Code(c) => Self::Code(c),
            ExitReason::Named(n) => Self::Named(n.into()),
        }
    }

    pub fn isa(&self) -> Isa {
        match self {
            Self::Vmx(_) => Isa::Vmx,
            Self::Svm(_) => Isa::Svm,
            Self::Arm64(..) => Isa::Arm64,
            Self::Code(_) | Self::Named(_) => Isa::Unknown,
        }
    }

    pub fn code(&self) -> Option<u64> {
        match self {
            Self::Vmx(c) => Some(u64::from(*c)),
            Self::Svm(c) | Self::Code(c) => Some(*c),
            Self::Arm64(_, ec) => Some(u64::from(*ec)),
            Self::Named(_) => None,
        }
    }

    /// The name users know: the kernel's own spelling (`EPT_VIOLATION`, `npf`, `WFx`); an
    /// unknown code stays visible as its number.
    pub fn name(&self) -> String {
        match self {
            Self::Vmx(c) => {
                tables::vmx_exit_name(*c).map_or_else(|| format!("{c:#x}"), str::to_string)
            }
            Self::Svm(c) => {
                tables::svm_exit_name(*c).map_or_else(|| format!("{c:#x}"), str::to_string)
            }
            Self::Arm64(ArmExitKind::Trap, ec) => {
                tables::arm64_ec_name(*ec).map_or_else(|| format!("EC {ec:#x}"), str::to_string)
            }
            Self::Arm64(ArmExitKind::Irq, _) => "IRQ".into(),
            Self::Arm64(ArmExitKind::Serror, _) => "SERROR".into(),
            Self::Arm64(ArmExitKind::Il, _) => "ILLEGAL".into(),
            Self::Arm64(ArmExitKind::Other, ec) => format!("OTHER {ec:#x}"),
            Self::Code(c) => format!("{c:#x}"),
            Self::Named(n) => n.to_string(),
        }
    }
}

/// An MSR with its name, for reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MsrLabel {
    pub msr: u32,
    pub name: Option<&'static str>,
}

impl MsrLabel {
    pub fn new(msr: u32) -> Self {
        Self {
            msr,
            name: tables::msr_name(msr),
        }
    }
}

/// A fast, non-cryptographic hasher for the integer keys on the hot path (thread ids).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub type IdMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Values per thread id, for the per-event lookups every analysis makes: the values in a
/// vector, the thread ids in an index, and the last thread looked up remembered, since
/// consecutive events mostly come from the same vCPU thread (its exit, what KVM did, its
/// entry), so the usual lookup is one comparison, not a hash probe. Iterates in first-seen
/// order.
#[derive(Debug, Clone)]
pub struct ThreadSlots<V> {
    index: IdMap<u32, u32>,
    tids: Vec<u32>,
    values: Vec<V>,
    /// The last `(tid, slot)` looked up.
    last: (u32, u32),
}

impl<V> Default for ThreadSlots<V> {
    fn default() -> Self {
        ThreadSlots {
            index: IdMap::default(),
            tids: Vec::new(),
            values: Vec::new(),
            last: (0, u32::MAX),
        }
    }
}

impl<V> ThreadSlots<V> {
    #[inline]
    fn find(&mut self, tid: u32) -> Option<usize> {
        if self.last.0 == tid && self.last.1 != u32::MAX {
            return Some(self.last.1 as usize);
        }
        let slot = *self.index.get(&tid)?;
        self.last = (tid, slot);
        Some(slot as usize)
    }

    /// The value of `tid`, made by `make` the first time.
    #[inline]
    pub fn get_or_insert_with(&mut self, tid: u32, make: impl FnOnce() -> V) -> &mut V {
        let slot = match self.find(tid) {
            Some(slot) => slot,
            None => self.insert_new(tid, make()),
        };
        &mut self.values[slot]
    }

    #[cold]
    fn insert_new(&mut self, tid: u32, value: V) -> usize {
        let slot = self.values.len();
        self.values.push(value);
        self.tids.push(tid);
        self.index.insert(tid, slot as u32);
        self.last = (tid, slot as u32);
        slot
    }

    /// Sets the value of `tid`; returns the one it had, as `HashMap::insert` does.
    #[inline]
    pub fn insert(&mut self, tid: u32, value: V) -> Option<V> {
        match self.find(tid) {
            Some(slot) => Some(std::mem::replace(&mut self.values[slot], value)),
            None => {
                self.insert_new(tid, value);
                None
            }
        }
    }

    #[inline]
    pub fn get_mut(&mut self, tid: u32) -> Option<&mut V> {
        let slot = self.find(tid)?;
        Some(&mut self.values[slot])
    }

    /// `(tid, value)` in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        self.tids.iter().copied().zip(&self.values)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.values.iter()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl<V: Default> ThreadSlots<V> {
    /// The value of `tid`, default the first time.
    #[inline]
    pub fn slot(&mut self, tid: u32) -> &mut V {
        self.get_or_insert_with(tid, V::default)
    }
}

#[cfg(test)]
mod thread_slots_tests {
    use super::ThreadSlots;

    #[test]
    fn each_thread_its_own_value_whatever_the_order() {
        let mut t: ThreadSlots<u64> = ThreadSlots::default();
        for (i, tid) in [5u32, 5, 0, 7, 5, 0, 7, 7, u32::MAX]
            .into_iter()
            .enumerate()
        {
            *t.slot(tid) += i as u64;
        }
        let all: Vec<_> = t.iter().map(|(tid, &v)| (tid, v)).collect();
        assert_eq!(all, vec![(5, 5), (0, 7), (7, 16), (u32::MAX, 8)]);
        assert_eq!(t.get_mut(7), Some(&mut 16));
        assert_eq!(t.get_mut(1), None);
        assert_eq!(t.get_mut(0), Some(&mut 7));
        assert_eq!(t.insert(0, 9), Some(7));
        assert_eq!(t.insert(3, 1), None);
        assert_eq!(t.get_mut(3), Some(&mut 1));
        assert_eq!(t.len(), 5);
    }
}

/// Strings by small id, for analyses that group by a string of each event (a timer's
/// function, an IPI's callback): looking one up allocates only the first time it is seen.
#[derive(Debug, Default, Clone)]
pub struct Strings {
    ids: std::collections::HashMap<Box<str>, u32, foldhash::fast::FixedState>,
    all: Vec<Box<str>>,
    /// The id found last: events repeat a string (one timer's callback, start after start),
    /// and comparing it costs less than hashing it.
    last: u32,
}

impl Strings {
    /// The id of `s`.
    #[inline]
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(l) = self.all.get(self.last as usize) {
            if **l == *s {
                return self.last;
            }
        }
        let id = match self.ids.get(s) {
            Some(&id) => id,
            None => self.insert(s),
        };
        self.last = id;
        id
    }

    #[cold]
    fn insert(&mut self, s: &str) -> u32 {
        let id = self.all.len() as u32;
        self.all.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// The string of `id` (from [`Strings::id`] of this table).
    pub fn get(&self, id: u32) -> &str {
        &self.all[id as usize]
    }
}

#[cfg(test)]
mod strings_tests {
    use super::Strings;

    #[test]
    fn one_id_per_string() {
        let mut s = Strings::default();
        let a = s.id("tick_nohz_handler");
        let b = s.id("hrtimer_wakeup");
        assert_ne!(a, b);
        assert_eq!(s.id("tick_nohz_handler"), a);
        assert_eq!(
            (s.get(a), s.get(b)),
            ("tick_nohz_handler", "hrtimer_wakeup")
        );
    }
}

/// Values by a small key, each key given a dense id when first seen: the last key found is
/// tried first and the first [`KeyMap::LINEAR`] keys are searched in order, which costs less
/// than hashing when a stream repeats a few keys (most do: one MSR, one port, a handful of
/// vectors); further keys are hashed.
#[derive(Debug, Clone)]
pub struct KeyMap<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
    /// Ids of the keys past the first [`KeyMap::LINEAR`].
    more: std::collections::HashMap<K, u32, foldhash::fast::FixedState>,
    /// The id found last.
    last: usize,
}

impl<K, V> Default for KeyMap<K, V> {
    fn default() -> Self {
        KeyMap {
            keys: Vec::new(),
            values: Vec::new(),
            more: Default::default(),
            last: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Default> KeyMap<K, V> {
    /// Keys searched in order before the hash map.
    pub const LINEAR: usize = 8;

    /// The id of `k` and its value, a default one if `k` is new.
    #[inline]
    pub fn entry(&mut self, k: K) -> (u32, &mut V) {
        let id = match self.keys.get(self.last) {
            Some(l) if *l == k => self.last,
            _ => self.find_or_insert(k),
        };
        self.last = id;
        (id as u32, &mut self.values[id])
    }

    fn find_or_insert(&mut self, k: K) -> usize {
        let linear = self.keys.len().min(Self::LINEAR);
        if let Some(i) = self.keys[..linear].iter().position(|x| *x == k) {
            return i;
        }
        if let Some(&i) = self.more.get(&k) {
            return i as usize;
        }
        let id = self.keys.len();
        if id >= Self::LINEAR {
            self.more.insert(k.clone(), id as u32);
        }
        self.keys.push(k);
        self.values.push(V::default());
        id
    }

    /// The value of an id [`KeyMap::entry`] gave.
    #[inline]
    pub fn by_id(&mut self, id: u32) -> Option<&mut V> {
        self.values.get_mut(id as usize)
    }

    /// Every key with its value, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.keys.iter().zip(&self.values)
    }

    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Event counts by a small key, read back in key order.
#[derive(Debug, Clone)]
pub struct Tally<K> {
    counts: KeyMap<K, u64>,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Tally {
            counts: KeyMap::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Ord + Copy> Tally<K> {
    /// One more of `k`.
    #[inline]
    pub fn bump(&mut self, k: K) {
        *self.counts.entry(k).1 += 1;
    }

    /// `(key, count)` sorted by key.
    pub fn sorted(&self) -> Vec<(K, u64)> {
        let mut v: Vec<(K, u64)> = self.counts.iter().map(|(&k, &n)| (k, n)).collect();
        v.sort_unstable_by_key(|&(k, _)| k);
        v
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tally_tests {
    #[test]
    fn counts_come_back_in_key_order() {
        let mut c = super::Tally::default();
        for k in [5u32, 1, 5, 9, 1, 5] {
            c.bump(k);
        }
        assert_eq!(c.sorted(), vec![(1, 2), (5, 3), (9, 1)]);
        assert!(!c.is_empty());
    }

    #[test]
    fn key_map_ids_hold_past_the_linear_keys() {
        // Keys in and beyond the linear part, new and repeated, against a plain map.
        let mut m = super::KeyMap::<u32, u64>::default();
        let mut want = std::collections::BTreeMap::new();
        let mut ids = std::collections::BTreeMap::new();
        for i in 0..400u32 {
            let k = (i * 7919) % 23 + (i % 3) * 1000;
            let (id, v) = m.entry(k);
            *v += 1;
            *want.entry(k).or_insert(0u64) += 1;
            assert_eq!(*ids.entry(k).or_insert(id), id, "key {k} changed id");
            assert_eq!(*m.by_id(id).unwrap(), want[&k]);
        }
        assert!(m.keys().len() > super::KeyMap::<u32, u64>::LINEAR);
        let got: std::collections::BTreeMap<u32, u64> = m.iter().map(|(&k, &v)| (k, v)).collect();
        assert_eq!(got, want);
    }
}
