//! Userspace device emulation: port IO and MMIO that exit all the way to the VMM.

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;

use crate::facts::{access, Facts};
use crate::finding::{Confidence, Finding, Fix};
use crate::rules::UserspaceIo;

/// Exits to the VMM for device emulation per second per vCPU for a warning. Each is a return
/// from KVM_RUN, the VMM's emulation, and a re-entry (about 47 us here, 5-20 us on bare-metal
/// VMX): 1,000/s per vCPU is 1-5% of a CPU, and virtio with ioeventfd needs none per request.
pub const WARN_PER_VCPU_S: f64 = 1_000.0;
/// Critical: 10,000/s per vCPU is a half to a whole CPU in exit round trips (the lab's pio
/// loop: 21,500/s here).
pub const CRIT_PER_VCPU_S: f64 = 10_000.0;
/// Share of vCPU time in port IO and MMIO exits that went to the VMM and back, for a warning:
/// a tenth of the guest's time waiting for device emulation (on bare-metal VMX at 5-20 us per
/// round trip, 5,000-20,000 exits/s).
pub const WARN_SHARE_PCT: f64 = 10.0;
/// Critical: 40% of it (the lab's pio and mmio loops: 20-75% on emulated SVM, depending on
/// how much of the capture is the guest's start).
pub const CRIT_SHARE_PCT: f64 = 40.0;

pub fn check(f: &Facts, report: &Report, _system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let io = f.userspace_exits(2);
    let mmio = f.userspace_exits(6);
    let total = io + mmio;
    let Some(grade) = UserspaceIo::grade(f, total, f.userspace_io_share(total)) else {
        return Vec::new();
    };
    let mut evidence = grade.evidence("IO/MMIO exits to the VMM and back");
    if io > 0 {
        evidence.push(f.rate("KVM_EXIT_IO (port IO emulated by the VMM)", io));
        let ports = report.accesses.pio.iter().map(|r| {
            let dir = if r.write { "out" } else { "in" };
            (
                format!("{dir} port {:#x}{}", r.port, port_name(r.port)),
                r.count,
            )
        });
        evidence.push(f.top_evidence("ports", ports.collect(), 5));
    }
    if mmio > 0 {
        evidence.push(f.rate("KVM_EXIT_MMIO (MMIO emulated by the VMM)", mmio));
        let addrs = report.accesses.mmio.iter();
        let addrs = addrs.map(|r| (format!("{} {:#x}", access(r.write), r.gpa), r.count));
        evidence.push(f.top_evidence("MMIO addresses", addrs.collect(), 5));
    }
    evidence.extend(f.share_of_exits("of all VM exits", total));
    let mut finding = grade.finding(UserspaceIo::ID, "Userspace device emulation");
    finding.confidence = Confidence::High;
    finding.evidence = evidence;
    finding.mechanism = "An IN/OUT or an access to guest-physical memory with no memory slot that no in-kernel \
        device claims (kvm_io_bus_write/read finds no ioeventfd or in-kernel device) is completed in userspace: \
        KVM fills kvm_run (KVM_EXIT_IO from emulator_pio_in_out, KVM_EXIT_MMIO from vcpu_mmio_write/read via \
        the emulator or the EPT-misconfig/MMIO-SPTE fast path) and returns from the KVM_RUN ioctl; the VMM \
        emulates the device and calls KVM_RUN again. Each access is a round trip through the host scheduler, \
        the VMM thread and two privilege switches."
        .into();
    let serial = report
        .accesses
        .pio
        .iter()
        .any(|r| (0x3f8..=0x3ff).contains(&r.port) || (0x2f8..=0x2ff).contains(&r.port));
    finding.fix = vec![
        Fix::cmd(
            "use virtio devices with ioeventfd, so a queue notification is an eventfd signal handled by an I/O thread or vhost, not a VMM exit",
            "qemu ... -device virtio-net-pci,netdev=n0,ioeventfd=on -netdev tap,id=n0,vhost=on; -device virtio-blk-pci,ioeventfd=on,iothread=io0",
        ),
        Fix::new(
            "for a VMM of your own: register the doorbell ports/addresses with KVM_IOEVENTFD, batch \
             write-only MMIO with KVM_REGISTER_COALESCED_MMIO, keep the interrupt controller and PIT in the \
             kernel (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2)",
        ),
    ];
    if serial {
        finding.fix.insert(0, Fix::cmd(
            "the top port is a 16550 UART: a guest printing to a serial console exits once per byte; use virtio-console (hvc0) or print less",
            "guest cmdline: console=hvc0 loglevel=3 quiet   # qemu ... -device virtio-serial -device virtconsole,chardev=c0",
        ));
    }
    finding.references = vec![
        "Documentation/virt/kvm/api.rst (KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_IOEVENTFD, KVM_REGISTER_COALESCED_MMIO)".into(),
        "arch/x86/kvm/x86.c emulator_pio_in_out, vcpu_mmio_write; virt/kvm/eventfd.c ioeventfd".into(),
        "docs/lab.md (pio/mmio: ~47 us per exit on this machine)".into(),
    ];
    vec![finding]
}

fn port_name(port: u32) -> &'static str {
    match port {
        0x3f8..=0x3ff => " (COM1 UART)",
        0x2f8..=0x2ff => " (COM2 UART)",
        0x70 | 0x71 => " (RTC/CMOS)",
        0x40..=0x43 => " (PIT)",
        0x20 | 0x21 | 0xa0 | 0xa1 => " (PIC)",
        0xcf8..=0xcff => " (PCI config)",
        0x60 | 0x64 => " (i8042 keyboard controller)",
        0x80 => " (POST/delay port)",
        0xb000..=0xb03f | 0x600..=0x63f => " (ACPI PM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fires, fixture, only, quiet, says};

    #[test]
    fn fires_on_lab_pio_and_names_the_uart() {
        let f = fires(&UserspaceIo, &fixture("pio.txt"), None);
        says(&f, "0x3f8 (COM1 UART)");
    }

    #[test]
    fn fires_on_lab_mmio_with_the_address() {
        let f = only(&UserspaceIo, &fixture("mmio.txt"), None);
        says(&f, "0xd0000000");
    }

    #[test]
    fn stays_quiet_on_healthy_captures() {
        quiet(
            &UserspaceIo,
            &["idle.txt", "compute.txt", "timer-storm.txt", "ipi.txt"],
        );
    }
}
