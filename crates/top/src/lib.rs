//! `kvmscope top`: live counts of KVM (or guest-side) trace events, kvm_stat done better.
