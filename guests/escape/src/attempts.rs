//! The escape attempts, in the order they run.

use core::fmt::{self, Display};

use aarch64_cpu::registers::{CurrentEL, Readable};
use guest_common::console::Console;
use guest_common::exception::{catch_fault, expect_fault};
use guest_common::platform::RAM_BASE;
use guest_common::psci::{self, Conduit};
use guest_common::ram::{self, Pass};
use guest_common::{
    println, probe, probe_mrs, probe_msr, AddrRange, Boot, Checks, ExceptionClass, Fault,
};

/// The host's GIC distributor on QEMU virt. The VM's own (emulated) distributor is at the same
/// guest-physical address, so this is only the jump target: code cannot be fetched from it.
const HOST_GICD: usize = 0x0800_0000;
/// The host's GICv3 ITS on QEMU virt: not part of any VM's GIC.
const HOST_GITS: usize = 0x0808_0000;
/// The host's redistributor of its second CPU on QEMU virt: past the one redistributor frame
/// pair (128 KiB at 0x080a_0000) of this one-vCPU VM.
const HOST_GICR_CPU1: usize = 0x080c_0000;
/// The last of QEMU virt's virtio-mmio transports (0x0a00_0000 + 31 * 0x200).
const HOST_VIRTIO_MMIO: usize = 0x0a00_3e00;
/// QEMU virt's flash, where firmware lives.
const HOST_FLASH: usize = 0x0;
/// From the emulated PL011 to the 4 KiB page after it: the VM is given one page of UART, and on
/// boards with a larger UART window the next page is still the real device.
const UART_NEXT_PAGE_OFFSET: usize = 0x1000;
/// 1 GiB above guest RAM: where host RAM, and the hypervisor's image, could be.
const HOST_RAM: usize = RAM_BASE + (1 << 30);
/// Written by the write attempts; recognisable in a dump of wherever it lands.
const ESCAPE_WORD: u32 = 0xe5ca_9e00;
/// A SiP service call (owner 2, SMC32) that no firmware is asked for here: the hypervisor must
/// answer it itself, NOT_SUPPORTED, instead of forwarding it.
const UNKNOWN_SMC_FUNCTION: u32 = 0x8200_ffff;
/// Garbage in w0 (it happens to read as a fast SMC64 call to a vendor-specific hypervisor service).
const GARBAGE_HVC_FUNCTION: u32 = 0xdead_beef;
/// Where the last attempt jumps: the host's GIC distributor, unmapped in the VM.
const JUMP_TARGET: usize = HOST_GICD;
/// Bytes of free RAM written before the attempts and checked after them.
const SENTINEL_SIZE: usize = 4096;

type GuestChecks = Checks<'static, Console>;

/// The escape attempts.
pub fn main(boot: &'static Boot) -> ! {
    println!("escape: trying to get out of the VM; {}", boot.platform);
    let mut checks = Checks::new();

    let el = CurrentEL.read(CurrentEL::EL);
    let at_el1 = checks.check_that(
        "running at EL1",
        el == 1,
        format_args!("CurrentEL.EL = {el}"),
    );

    let sentinel = sentinel_range(boot);
    if let Some(range) = sentinel {
        // SAFETY: `sentinel_range` picks free RAM right after the image, clear of the DTB.
        unsafe { ram::write_pattern(range, Pass::Plain) };
    }

    let uart = boot.platform.uart_base;
    let ram_end = boot.platform.ram.end;
    let memory_attempts = [
        MemoryAttempt::read(ram_end, "just past the end of RAM"),
        MemoryAttempt::write(ram_end, "just past the end of RAM"),
        MemoryAttempt::read(HOST_GITS, "the host's GIC ITS"),
        MemoryAttempt::write(HOST_GITS, "the host's GIC ITS"),
        MemoryAttempt::read(HOST_GICR_CPU1, "the redistributor past the VM's own"),
        MemoryAttempt::read(HOST_VIRTIO_MMIO, "a host virtio-mmio slot"),
        MemoryAttempt::read(HOST_FLASH, "the host's flash"),
        MemoryAttempt::read(
            uart + UART_NEXT_PAGE_OFFSET,
            "the page after the emulated PL011",
        ),
        MemoryAttempt::read(HOST_RAM, "1 GiB above guest RAM"),
        MemoryAttempt::load_pair(
            uart,
            "the emulated PL011, with an ldp the hypervisor cannot decode",
        ),
    ];
    for attempt in memory_attempts {
        attempt.run(&mut checks);
    }

    register_attempts(&mut checks, at_el1);
    call_attempts(&mut checks);
    set_way_attempt(&mut checks);
    own_ram_check(&mut checks, sentinel);

    checks.summary();
    println!("escape: jumping to {JUMP_TARGET:#010x}");
    // SAFETY: this is the last attempt: nothing at the target is the guest's, and the hypervisor
    // is expected to stop the VM on the instruction fetch.
    unsafe { probe::jump_to(JUMP_TARGET) }
}

/// How an attempt completed when it should have been stopped.
enum Completed {
    Read(u32),
    ReadPair(u32, u32),
    Wrote,
    ReadRegister(u64),
    WroteRegister,
}

impl Display for Completed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Completed::Read(value) => write!(f, "the read completed, returning {value:#x}"),
            Completed::ReadPair(first, second) => {
                write!(f, "the ldp completed, returning {first:#x} and {second:#x}")
            }
            Completed::Wrote => f.write_str("the write completed"),
            Completed::ReadRegister(value) => write!(f, "the MRS completed, returning {value:#x}"),
            Completed::WroteRegister => f.write_str("the MSR completed"),
        }
    }
}

/// Reports an attempt that should have taken an exception of class `expected`.
fn report_contained(
    checks: &mut GuestChecks,
    name: impl Display,
    expected: ExceptionClass,
    outcome: Result<Completed, Fault>,
) -> bool {
    match outcome {
        Err(fault) if fault.is(expected) => checks.pass(name, fault),
        Err(fault) => checks.fail(
            name,
            format_args!("wrong exception, want EC {:#04x}: {fault}", expected as u8),
        ),
        Ok(completed) => checks.fail(name, completed),
    }
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
    LoadPair,
}

/// One access to guest-physical memory the VM was not given.
struct MemoryAttempt {
    access: Access,
    address: usize,
    target: &'static str,
}

impl MemoryAttempt {
    fn read(address: usize, target: &'static str) -> Self {
        Self {
            access: Access::Read,
            address,
            target,
        }
    }

    fn write(address: usize, target: &'static str) -> Self {
        Self {
            access: Access::Write,
            address,
            target,
        }
    }

    fn load_pair(address: usize, target: &'static str) -> Self {
        Self {
            access: Access::LoadPair,
            address,
            target,
        }
    }

    fn run(&self, checks: &mut GuestChecks) {
        let address = self.address;
        let verb = match self.access {
            Access::Read => "read",
            Access::Write => "write",
            Access::LoadPair => "ldp from",
        };
        // In every arm, `address` is outside the guest's RAM, so the access cannot disturb
        // anything the guest owns, and the fault it should take is caught. For the PL011, the
        // `ldp` reads UARTDR and UARTRSR, which at worst drops a received byte.
        let outcome = catch_fault(|| match self.access {
            Access::Read => {
                // SAFETY: see above.
                Completed::Read(unsafe { probe::read_u32(address) })
            }
            Access::Write => {
                // SAFETY: see above.
                unsafe { probe::write_u32(address, ESCAPE_WORD) };
                Completed::Wrote
            }
            Access::LoadPair => {
                // SAFETY: see above.
                let (first, second) = unsafe { probe::load_pair_u32(address) };
                Completed::ReadPair(first, second)
            }
        });
        report_contained(
            checks,
            format_args!("{verb} {address:#010x} ({}) is stopped", self.target),
            ExceptionClass::DataAbortCurrentEL,
            outcome,
        );
    }
}

/// System registers the guest must not reach: the hypervisor traps the physical timer, the PMU and
/// the debug registers and injects UNDEFINED; EL2's registers are UNDEFINED at EL1 by the
/// architecture.
fn register_attempts(checks: &mut GuestChecks, at_el1: bool) {
    let undefined = ExceptionClass::Unknown;

    let outcome = catch_fault(|| {
        // SAFETY: 0 disables the EL1 physical timer and masks nothing the guest uses (it takes no
        // interrupts).
        unsafe { probe_msr!("CNTP_CTL_EL0", 0) };
        Completed::WroteRegister
    });
    report_contained(
        checks,
        "write CNTP_CTL_EL0 (physical timer) is UNDEFINED",
        undefined,
        outcome,
    );

    pmu_attempt(checks);

    debug_register_attempt(checks);

    let name = "write HCR_EL2 from EL1 is UNDEFINED";
    if at_el1 {
        let outcome = catch_fault(|| {
            // SAFETY: the guest runs at EL1 (checked), where HCR_EL2 cannot be written: the MSR is
            // UNDEFINED (Arm ARM, HCR_EL2 accessibility), so the value is never used.
            unsafe { probe_msr!("HCR_EL2", 0) };
            Completed::WroteRegister
        });
        report_contained(checks, name, undefined, outcome);
    } else {
        checks.fail(name, "not attempted: the guest is not at EL1");
    }

    let outcome = catch_fault(|| Completed::ReadRegister(probe_mrs!("VTTBR_EL2")));
    report_contained(
        checks,
        "read VTTBR_EL2 from EL1 is UNDEFINED",
        undefined,
        outcome,
    );
}

/// PMU registers trapped by MDCR_EL2.TPM/TPMCR. Either containment passes: UNDEFINED, or
/// read-as-zero / write-ignored (what Bulkhead does for VMs without `pmu = true`, since Linux
/// writes PMUSERENR_EL0 at boot when the CPU has a PMU). What fails is reaching the real PMU:
/// the cycle counter counting after the guest enabled it.
fn pmu_attempt(checks: &mut GuestChecks) {
    let name = "PMU registers (PMCR_EL0.E, PMCNTENSET_EL0, PMCCNTR_EL0) are trapped: the VM cannot count";
    const PMCR_E: u64 = 1;
    const PMCNTEN_CYCLES: u64 = 1 << 31;
    let enable = catch_fault(|| {
        // SAFETY: enabling the cycle counter changes nothing but the counter itself.
        unsafe {
            probe_msr!("PMCR_EL0", PMCR_E);
            probe_msr!("PMCNTENSET_EL0", PMCNTEN_CYCLES);
        }
    });
    let first = catch_fault(|| probe_mrs!("PMCCNTR_EL0"));
    for _ in 0..10_000 {
        core::hint::spin_loop();
    }
    let second = catch_fault(|| probe_mrs!("PMCCNTR_EL0"));
    match (enable, first, second) {
        (_, Err(a), Err(_)) => checks.pass(name, format_args!("UNDEFINED: ESR_EL1={:#x}", a.esr)),
        (Ok(()), Ok(0), Ok(0)) => checks.pass(name, "read as zero, writes ignored: the counter never moves"),
        (_, a, b) => checks.fail(name, format_args!("PMCCNTR_EL0 read {a:?} then {b:?}")),
    };
}

/// Debug registers trapped by MDCR_EL2.TDA (DBGBVR0_EL1, MDCCSR_EL0) and TDOSA (OSLSR_EL1).
///
/// A hypervisor may contain them in either of two ways, and both pass: by injecting UNDEFINED,
/// or by emulating them as read-as-zero / write-ignored (what Bulkhead does, since Linux touches
/// the OS lock at boot). What fails is reaching the real ones: a value written to the breakpoint
/// value register DBGBVR0_EL1 reads back, or a register reads nonzero without trapping.
fn debug_register_attempt(checks: &mut GuestChecks) {
    let name =
        "debug registers (DBGBVR0_EL1 write and read-back, OSLSR_EL1, MDCCSR_EL0) are trapped";
    // An address in the guest's image, shaped like a breakpoint address (bits 1:0 clear).
    const BREAKPOINT_ADDRESS: u64 = RAM_BASE as u64 + 0x1000;

    let write = catch_fault(|| {
        // SAFETY: setting a breakpoint value arms nothing: DBGBCR0_EL1 is not enabled, and with
        // PSTATE.D set (see `_start`) breakpoints at EL1 could not fire anyway.
        unsafe { probe_msr!("DBGBVR0_EL1", BREAKPOINT_ADDRESS) }
    });
    let reads = [
        ("DBGBVR0_EL1", catch_fault(|| probe_mrs!("DBGBVR0_EL1"))),
        ("OSLSR_EL1", catch_fault(|| probe_mrs!("OSLSR_EL1"))),
        ("MDCCSR_EL0", catch_fault(|| probe_mrs!("MDCCSR_EL0"))),
    ];
    let stuck = matches!(reads[0].1, Ok(BREAKPOINT_ADDRESS));
    if stuck {
        // SAFETY: as above; this puts back the reset value.
        unsafe { probe_msr!("DBGBVR0_EL1", 0) };
    }

    struct Outcomes<'a>(
        &'a Result<(), Fault>,
        &'a [(&'static str, Result<u64, Fault>)],
    );
    impl Display for Outcomes<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Ok(()) => f.write_str("write DBGBVR0_EL1: completed")?,
                Err(fault) => write!(f, "write DBGBVR0_EL1: {fault}")?,
            }
            for (register, outcome) in self.1 {
                match outcome {
                    Ok(value) => write!(f, "; read {register}: {value:#x}")?,
                    Err(fault) => write!(f, "; read {register}: {fault}")?,
                }
            }
            Ok(())
        }
    }
    let outcomes = Outcomes(&write, &reads);

    let faults = core::iter::once(write.err()).chain(reads.iter().map(|(_, read)| read.err()));
    let mut faults = faults.flatten();
    let undefined_only = faults.all(|fault| fault.is(ExceptionClass::Unknown));
    let any_undefined = write.is_err() || reads.iter().any(|(_, read)| read.is_err());
    let all_reads_zero = reads.iter().all(|(_, read)| matches!(read, Ok(0)));

    if !undefined_only {
        checks.fail(
            name,
            format_args!("wrong exception, want EC 0x00: {outcomes}"),
        )
    } else if stuck {
        checks.fail(
            name,
            format_args!("the breakpoint register kept the value: {outcomes}"),
        )
    } else if any_undefined {
        checks.pass(name, format_args!("UNDEFINED: {outcomes}"))
    } else if all_reads_zero {
        checks.pass(
            name,
            format_args!("read as zero, write ignored: {outcomes}"),
        )
    } else {
        checks.fail(name, format_args!("read without trapping: {outcomes}"))
    };
}

/// Calls that, on bare metal, would reach firmware or the hypervisor's own services.
fn call_attempts(checks: &mut GuestChecks) {
    let name =
        format_args!("SMC {UNKNOWN_SMC_FUNCTION:#x} (unknown SiP call) returns NOT_SUPPORTED");
    report_call(
        checks,
        name,
        catch_fault(|| psci::call(Conduit::Smc, UNKNOWN_SMC_FUNCTION, [0; 3])),
    );

    let name = "SMC PSCI_VERSION is answered like HVC PSCI_VERSION";
    let over_hvc = catch_fault(|| psci::call(Conduit::Hvc, psci::PSCI_VERSION, [0; 3]));
    let over_smc = catch_fault(|| psci::call(Conduit::Smc, psci::PSCI_VERSION, [0; 3]));
    match (over_hvc, over_smc) {
        (Ok(hvc), Ok(smc)) if hvc == smc && hvc >= 0 => {
            checks.pass(name, format_args!("both {smc:#x}"))
        }
        (Ok(hvc), Ok(smc)) => checks.fail(name, format_args!("HVC {hvc:#x}, SMC {smc:#x}")),
        (Err(fault), _) => checks.fail(name, format_args!("the HVC took an exception: {fault}")),
        (_, Err(fault)) => checks.fail(name, format_args!("the SMC took an exception: {fault}")),
    };

    let name =
        format_args!("HVC {GARBAGE_HVC_FUNCTION:#x} (garbage function ID) returns NOT_SUPPORTED");
    report_call(
        checks,
        name,
        catch_fault(|| psci::call(Conduit::Hvc, GARBAGE_HVC_FUNCTION, [0; 3])),
    );
}

/// Reports a call that should have returned NOT_SUPPORTED (-1).
fn report_call(checks: &mut GuestChecks, name: impl Display, outcome: Result<i64, Fault>) -> bool {
    match outcome {
        Ok(-1) => checks.pass(name, "returned -1"),
        Ok(value) => checks.fail(name, format_args!("returned {value:#x}")),
        Err(fault) => checks.fail(name, format_args!("the call took an exception: {fault}")),
    }
}

/// Data cache maintenance by set/way, which HCR_EL2.TSW traps: the hypervisor does it safely (or
/// not at all) and the guest just carries on.
fn set_way_attempt(checks: &mut GuestChecks) {
    // Level 1 (field value 0), set 0, way 0.
    let set_way = 0;
    let fault = expect_fault(|| {
        // SAFETY: the guest's MMU, and so its data cache, is off: no line holds dirty data of the
        // guest's, so invalidating one loses nothing of it.
        unsafe { probe::dc_isw(set_way) };
        probe::dc_csw(set_way);
        probe::dc_cisw(set_way);
    });
    match fault {
        None => checks.pass("dc isw/csw/cisw by set/way return", ""),
        Some(fault) => checks.fail("dc isw/csw/cisw by set/way return", fault),
    };
}

/// The free RAM right after the image that the attempts must leave alone, clear of the DTB.
fn sentinel_range(boot: &Boot) -> Option<AddrRange> {
    let start = boot.layout.image.end.next_multiple_of(SENTINEL_SIZE);
    let range = AddrRange::from_size(start, SENTINEL_SIZE)?;
    let clear_of_dtb = boot
        .device_tree
        .as_ref()
        .map_or(true, |dt| !dt.blob().overlaps(&range));
    (boot.platform.ram.covers(&range) && clear_of_dtb).then_some(range)
}

/// After all that, the guest's own RAM still holds what it wrote before the attempts, and still
/// takes new writes.
fn own_ram_check(checks: &mut GuestChecks, sentinel: Option<AddrRange>) {
    let name = "own RAM is intact and still writable";
    let Some(range) = sentinel else {
        checks.fail(name, "no free page after the image");
        return;
    };
    // SAFETY: the sentinel range is free RAM that only this guest code uses.
    let kept = unsafe { ram::check_pattern(range, Pass::Plain) };
    if !kept.is_clean() {
        checks.fail(name, format_args!("changed during the attempts: {kept}"));
        return;
    }
    // SAFETY: as above.
    unsafe { ram::write_pattern(range, Pass::Inverted) };
    // SAFETY: as above.
    let rewritten = unsafe { ram::check_pattern(range, Pass::Inverted) };
    if rewritten.is_clean() {
        checks.pass(name, format_args!("{range}"));
    } else {
        checks.fail(name, format_args!("rewriting it: {rewritten}"));
    }
}
