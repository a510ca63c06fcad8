//! The firmware interface a VM sees through HVC (and trapped SMC): SMCCC 1.1 (Arm DEN 0028) and
//! PSCI 1.1 (Arm DEN 0022). The decoding here is pure; what a call does to the VM (power off,
//! reset, start a vCPU) is up to the caller, which gets a [`FirmwareCall`].

/// SMCCC return value for an unknown function (DEN 0028, section 7.1).
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
/// PSCI return codes (DEN 0022, section 5.2.2).
pub const PSCI_SUCCESS: u64 = 0;
/// PSCI INVALID_PARAMETERS.
pub const PSCI_INVALID_PARAMETERS: u64 = -2i64 as u64;
/// PSCI ALREADY_ON.
pub const PSCI_ALREADY_ON: u64 = -4i64 as u64;
/// PSCI ON_PENDING.
pub const PSCI_ON_PENDING: u64 = -5i64 as u64;
/// PSCI INVALID_ADDRESS.
pub const PSCI_INVALID_ADDRESS: u64 = -9i64 as u64;
/// AFFINITY_INFO results (DEN 0022, 5.1.5): the affinity instance is ON, OFF, or ON_PENDING.
pub const AFFINITY_ON: u64 = 0;
/// See [`AFFINITY_ON`].
pub const AFFINITY_OFF: u64 = 1;
/// See [`AFFINITY_ON`].
pub const AFFINITY_ON_PENDING: u64 = 2;

/// SMCCC version 1.1 (major in 30:16, minor in 15:0).
pub const SMCCC_VERSION_1_1: u64 = 0x1_0001;
/// PSCI version 1.1.
pub const PSCI_VERSION_1_1: u64 = 0x1_0001;
/// MIGRATE_INFO_TYPE: "Trusted OS is not present or does not require migration" (DEN 0022, 5.9).
pub const MIGRATE_INFO_TYPE_NOT_PRESENT: u64 = 2;

/// Function IDs (DEN 0028 section 2.5: bit 31 fast call, bit 30 SMC64, bits 29:24 owner).
pub mod function {
    /// SMCCC_VERSION.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND (SMC32 and SMC64).
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    /// CPU_SUSPEND, SMC64.
    pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON, SMC32.
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// CPU_ON, SMC64.
    pub const CPU_ON_64: u32 = 0xc400_0003;
    /// AFFINITY_INFO, SMC32.
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    /// AFFINITY_INFO, SMC64.
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
}

/// A decoded firmware call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareCall {
    /// The call is answered in x0 and the vCPU continues.
    Return(u64),
    /// SYSTEM_OFF: this VM powers off.
    SystemOff,
    /// SYSTEM_RESET: this VM restarts.
    SystemReset,
    /// CPU_OFF: the calling vCPU stops.
    CpuOff,
    /// CPU_ON for the vCPU with MPIDR `target`.
    CpuOn {
        /// Target MPIDR (Aff fields).
        target: u64,
        /// Entry point (guest-physical).
        entry: u64,
        /// Context ID, handed to the new vCPU in x0.
        context_id: u64,
    },
    /// AFFINITY_INFO for `target`.
    AffinityInfo {
        /// Target MPIDR.
        target: u64,
    },
    /// CPU_SUSPEND: treated as a WFI (a valid implementation of standby power states).
    CpuSuspend,
}

/// Whether Bulkhead implements PSCI/SMCCC function `id`.
fn implemented(id: u32) -> bool {
    use function::*;
    matches!(
        id,
        SMCCC_VERSION
            | PSCI_VERSION
            | CPU_SUSPEND_32
            | CPU_SUSPEND_64
            | CPU_OFF
            | CPU_ON_32
            | CPU_ON_64
            | AFFINITY_INFO_32
            | AFFINITY_INFO_64
            | MIGRATE_INFO_TYPE
            | SYSTEM_OFF
            | SYSTEM_RESET
            | PSCI_FEATURES
    )
}

/// Decodes the call in x0-x3 (SMCCC: function ID in w0, arguments in x1-x3). SMC32 function
/// arguments are 32-bit: their upper halves are ignored (DEN 0028, 2.6).
pub fn decode(x: &[u64; 4]) -> FirmwareCall {
    use function::*;
    let id = x[0] as u32;
    let smc32 = id & (1 << 30) == 0;
    let arg = |n: usize| if smc32 { x[n] & 0xffff_ffff } else { x[n] };
    match id {
        SMCCC_VERSION => FirmwareCall::Return(SMCCC_VERSION_1_1),
        // No architectural workarounds (SMCCC_ARCH_WORKAROUND_*) are offered; nor is
        // SMCCC_ARCH_FEATURES itself listed as implemented except through this answer.
        SMCCC_ARCH_FEATURES => FirmwareCall::Return(NOT_SUPPORTED),
        PSCI_VERSION => FirmwareCall::Return(PSCI_VERSION_1_1),
        PSCI_FEATURES => {
            let queried = arg(1) as u32;
            FirmwareCall::Return(if implemented(queried) { PSCI_SUCCESS } else { NOT_SUPPORTED })
        }
        MIGRATE_INFO_TYPE => FirmwareCall::Return(MIGRATE_INFO_TYPE_NOT_PRESENT),
        SYSTEM_OFF => FirmwareCall::SystemOff,
        SYSTEM_RESET => FirmwareCall::SystemReset,
        CPU_OFF => FirmwareCall::CpuOff,
        CPU_SUSPEND_32 | CPU_SUSPEND_64 => FirmwareCall::CpuSuspend,
        CPU_ON_32 | CPU_ON_64 => FirmwareCall::CpuOn { target: arg(1), entry: arg(2), context_id: arg(3) },
        AFFINITY_INFO_32 | AFFINITY_INFO_64 => FirmwareCall::AffinityInfo { target: arg(1) },
        _ => FirmwareCall::Return(NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(decode(&[0x8400_0000, 0, 0, 0]), FirmwareCall::Return(0x1_0001));
        assert_eq!(decode(&[0x8000_0000, 0, 0, 0]), FirmwareCall::Return(0x1_0001));
        // Upper bits of x0 are not part of the function ID (w0).
        assert_eq!(decode(&[0xdead_0000_8400_0000, 0, 0, 0]), FirmwareCall::Return(0x1_0001));
    }

    #[test]
    fn features() {
        assert_eq!(decode(&[0x8400_000a, 0x8400_0008, 0, 0]), FirmwareCall::Return(0));
        assert_eq!(decode(&[0x8400_000a, 0x8400_0012, 0, 0]), FirmwareCall::Return(NOT_SUPPORTED));
    }

    #[test]
    fn power_calls() {
        assert_eq!(decode(&[0x8400_0008, 0, 0, 0]), FirmwareCall::SystemOff);
        assert_eq!(decode(&[0x8400_0009, 0, 0, 0]), FirmwareCall::SystemReset);
        assert_eq!(
            decode(&[0xc400_0003, 1, 0x4000_1000, 0x1234_5678_9abc]),
            FirmwareCall::CpuOn { target: 1, entry: 0x4000_1000, context_id: 0x1234_5678_9abc }
        );
        // SMC32 CPU_ON truncates its arguments to 32 bits.
        assert_eq!(
            decode(&[0x8400_0003, 0x1_0000_0001, 0x1_4000_1000, 0]),
            FirmwareCall::CpuOn { target: 1, entry: 0x4000_1000, context_id: 0 }
        );
    }

    #[test]
    fn unknown_is_not_supported() {
        assert_eq!(decode(&[0xc200_0000, 0, 0, 0]), FirmwareCall::Return(NOT_SUPPORTED));
        assert_eq!(decode(&[0x1234, 0, 0, 0]), FirmwareCall::Return(NOT_SUPPORTED));
        assert_eq!(decode(&[0x8000_0001, 0x8000_8000, 0, 0]), FirmwareCall::Return(NOT_SUPPORTED));
    }
}
