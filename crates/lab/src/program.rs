//! Guest programs: assembled at run time with iced-x86's code assembler at [`CODE_BASE`].
//!
//! Every program gets the same frame: an `iretq` stub that drops a vCPU to CPL3, a `done`
//! routine (OUT to [`DONE_PORT`], the vCPU's "I finished" signal to the VMM) and one stub per
//! CPU exception (0-31) that reports the vector, error code and RIP through [`FAULT_PORT`] so
//! a guest bug becomes a clear error instead of a triple fault.

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

use crate::layout::CODE_BASE;
use crate::layout::CODE_MAX;
use crate::LabError;

/// Port a guest writes when it is done (its vCPU thread then stops).
pub const DONE_PORT: u16 = 0x501;
/// Port the exception stubs write; the VMM then reads the exception frame from the stack.
pub const FAULT_PORT: u16 = 0x502;

/// Exceptions that push an error code.
const HAS_ERROR_CODE: [u8; 8] = [8, 10, 11, 12, 13, 14, 17, 21];

impl From<IcedError> for LabError {
    fn from(e: IcedError) -> Self {
        LabError::Assemble(e.to_string())
    }
}

/// A program under construction.
pub(crate) struct Program {
    pub a: CodeAssembler,
    gates: Vec<(u8, CodeLabel)>,
    entries: Vec<CodeLabel>,
    /// Jump here to finish this vCPU (OUT DONE_PORT).
    pub done: CodeLabel,
    iret_stub: CodeLabel,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("instructions", &self.a.instructions().len())
            .finish()
    }
}

/// An assembled program: its bytes and the addresses the VMM needs.
#[derive(Debug)]
pub(crate) struct Assembled {
    pub code: Vec<u8>,
    pub gates: Vec<(u8, u64)>,
    pub entries: Vec<u64>,
    pub iret_stub: u64,
}

impl Program {
    pub(crate) fn new() -> Result<Self, LabError> {
        let mut a = CodeAssembler::new(64)?;
        let done = a.create_label();
        let iret_stub = a.create_label();
        Ok(Program {
            a,
            gates: Vec::new(),
            entries: Vec::new(),
            done,
            iret_stub,
        })
    }

    /// Declares a new entry point (entries are numbered in declaration order) and binds it to
    /// the next instruction; returns its label, e.g. to loop back to.
    pub(crate) fn entry_here(&mut self) -> Result<CodeLabel, LabError> {
        let mut l = self.a.create_label();
        self.a.set_label(&mut l)?;
        self.entries.push(l);
        Ok(l)
    }

    /// Binds an interrupt `vector` to the next instruction.
    pub(crate) fn handler_here(&mut self, vector: u8) -> Result<(), LabError> {
        let mut l = self.a.create_label();
        self.a.set_label(&mut l)?;
        self.gates.push((vector, l));
        Ok(())
    }

    /// x2APIC EOI: WRMSR 0x80b with edx:eax = 0. Clobbers eax, ecx, edx.
    pub(crate) fn eoi(&mut self) -> Result<(), LabError> {
        self.a.mov(ecx, 0x80bu32)?;
        self.a.xor(eax, eax)?;
        self.a.xor(edx, edx)?;
        self.a.wrmsr()?;
        Ok(())
    }

    /// Arms the LAPIC TSC-deadline timer `r13d` TSC ticks from now:
    /// RDTSC; ADD EAX, R13D; ADC EDX, 0; MOV ECX, 0x6e0; WRMSR. Clobbers eax, ecx, edx.
    pub(crate) fn arm_tsc_deadline(&mut self) -> Result<(), LabError> {
        self.a.rdtsc()?;
        self.a.add(eax, r13d)?;
        self.a.adc(edx, 0)?;
        self.a.mov(ecx, 0x6e0u32)?;
        self.a.wrmsr()?;
        Ok(())
    }

    /// Sends a fixed IPI with `vector` to x2APIC id `dest` through the ICR (MSR 0x830).
    /// Clobbers eax, ecx, edx.
    pub(crate) fn send_ipi(&mut self, dest: u32, vector: u8) -> Result<(), LabError> {
        self.a.mov(ecx, 0x830u32)?;
        self.a.mov(edx, dest)?;
        self.a.mov(eax, u32::from(vector))?;
        self.a.wrmsr()?;
        Ok(())
    }

    /// Appends the shared frame and assembles everything at [`CODE_BASE`].
    pub(crate) fn assemble(mut self) -> Result<Assembled, LabError> {
        let a = &mut self.a;
        // done: OUT DONE_PORT, then halt forever (the VMM stops the vCPU at the OUT).
        a.set_label(&mut self.done)?;
        a.mov(dx, u32::from(DONE_PORT))?;
        a.out(dx, al)?;
        let mut spin = a.create_label();
        a.set_label(&mut spin)?;
        a.hlt()?;
        a.jmp(spin)?;
        // iret_stub: the VMM puts an IRET frame on the kernel stack and starts here.
        a.set_label(&mut self.iret_stub)?;
        a.iretq()?;
        // Exception stubs: [push 0 if no error code]; push vector; jmp common.
        let mut common = a.create_label();
        let mut stubs = Vec::new();
        for v in 0u8..32 {
            let mut l = a.create_label();
            a.set_label(&mut l)?;
            if !HAS_ERROR_CODE.contains(&v) {
                a.push(0)?;
            }
            a.push(i32::from(v))?;
            a.jmp(common)?;
            stubs.push((v, l));
        }
        // common: OUT FAULT_PORT (the VMM reads [rsp] = vector, error code, rip, cs, ...).
        a.set_label(&mut common)?;
        a.mov(dx, u32::from(FAULT_PORT))?;
        a.out(dx, al)?;
        let mut spin2 = a.create_label();
        a.set_label(&mut spin2)?;
        a.hlt()?;
        a.jmp(spin2)?;

        let result = a.assemble_options(
            CODE_BASE,
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )?;
        let mut gates = Vec::new();
        for (v, l) in stubs.iter().chain(self.gates.iter()) {
            gates.push((*v, result.label_ip(l)?));
        }
        let entries = self
            .entries
            .iter()
            .map(|l| result.label_ip(l))
            .collect::<Result<Vec<_>, _>>()?;
        let iret_stub = result.label_ip(&self.iret_stub)?;
        let code = result.inner.code_buffer;
        if code.len() > CODE_MAX {
            return Err(LabError::Assemble(format!(
                "guest program is {} bytes, more than the {CODE_MAX} reserved",
                code.len()
            )));
        }
        Ok(Assembled {
            code,
            gates,
            entries,
            iret_stub,
        })
    }
}
