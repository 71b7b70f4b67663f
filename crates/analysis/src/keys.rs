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
