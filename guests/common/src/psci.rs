//! PSCI and SMCCC calls: function IDs, return values, versions, and the HVC/SMC instructions.
//!
//! References: Arm Power State Coordination Interface (DEN0022), section 5 "PSCI functions";
//! Arm SMC Calling Convention (DEN0028), section 2 "SMC and HVC calling conventions" and section 7
//! "Arm Architecture Calls" for SMCCC_VERSION. Bulkhead implements SMCCC 1.1 and PSCI 1.1 over
//! HVC, and answers an SMC the same way (it traps SMC and never forwards it to firmware).

use core::fmt;

/// SMCCC_VERSION (DEN0028 section 7.2): returns the SMCCC version, major in bits 30:16.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// PSCI_VERSION (DEN0022 section 5.1.1): returns the PSCI version, major in bits 31:16.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// SYSTEM_OFF (DEN0022 section 5.10): powers the system off; does not return on success.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET (DEN0022 section 5.11): resets the system; does not return on success.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES (DEN0022 section 5.15): 0 (or feature flags) if the function given in x1 is
/// implemented, NOT_SUPPORTED otherwise.
pub const PSCI_FEATURES: u32 = 0x8400_000A;

/// CPU_SUSPEND, SMC64 (DEN0022 section 5.4): suspends the calling CPU; a standby state
/// (power_state 0) returns when an interrupt wakes it, as WFI would.
pub const CPU_SUSPEND: u32 = 0xC400_0001;
/// CPU_OFF (DEN0022 section 5.5): powers the calling CPU off; does not return on success.
pub const CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON, SMC64 (DEN0022 section 5.6): starts `target_cpu` at `entry_point_address` in the
/// caller's exception level, MMU off, with `context_id` in x0.
pub const CPU_ON: u32 = 0xC400_0003;
/// AFFINITY_INFO, SMC64 (DEN0022 section 5.7): whether `target_affinity` is on, off or coming on.
pub const AFFINITY_INFO: u32 = 0xC400_0004;

/// The power_state of CPU_SUSPEND for standby at the CPU's own power level: StateType 0
/// (standby, which keeps context and returns like WFI), StateID 0, in both the original and the
/// extended power_state formats (DEN0022 section 5.4.2).
pub const POWER_STATE_STANDBY: u32 = 0;

/// Bit 30 of a function ID: set for the SMC64/HVC64 convention, clear for SMC32/HVC32
/// (DEN0028 section 2.5, "Function Identifiers").
const FUNCTION_ID_SMC64: u32 = 1 << 30;

/// The instruction that makes the call: which one the platform wants is /psci `method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0`: handled by the hypervisor (Bulkhead's conduit).
    Hvc,
    /// `smc #0`: handled by the secure monitor, or trapped by the hypervisor.
    Smc,
}

impl Conduit {
    /// The conduit a /psci `method` property names, if it is a known one.
    pub fn from_method(method: &str) -> Option<Self> {
        match method {
            "hvc" => Some(Self::Hvc),
            "smc" => Some(Self::Smc),
            _ => None,
        }
    }
}

impl fmt::Display for Conduit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hvc => "hvc",
            Self::Smc => "smc",
        })
    }
}

/// The value a call returned in x0, read with the width of the function's convention: for a
/// 32-bit function only w0 is defined (DEN0028 section 2.6), so it is sign-extended from w0.
pub fn return_value(function: u32, x0: u64) -> i64 {
    if function & FUNCTION_ID_SMC64 != 0 {
        x0 as i64
    } else {
        i64::from(x0 as u32 as i32)
    }
}

/// Error codes shared by PSCI (DEN0022 section 5.2.2) and SMCCC (NOT_SUPPORTED, DEN0028
/// section 2.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnCode {
    /// -1: the function is not implemented.
    NotSupported,
    /// -2.
    InvalidParameters,
    /// -3.
    Denied,
    /// -4.
    AlreadyOn,
    /// -5.
    OnPending,
    /// -6.
    InternalFailure,
    /// -7.
    NotPresent,
    /// -8.
    Disabled,
    /// -9.
    InvalidAddress,
    /// Any other negative value.
    Other(i64),
}

impl ReturnCode {
    /// The code a negative return value stands for.
    pub fn from_value(value: i64) -> Self {
        match value {
            -1 => Self::NotSupported,
            -2 => Self::InvalidParameters,
            -3 => Self::Denied,
            -4 => Self::AlreadyOn,
            -5 => Self::OnPending,
            -6 => Self::InternalFailure,
            -7 => Self::NotPresent,
            -8 => Self::Disabled,
            -9 => Self::InvalidAddress,
            other => Self::Other(other),
        }
    }
}

impl ReturnCode {
    /// The return value that stands for this code.
    pub fn value(self) -> i64 {
        match self {
            Self::NotSupported => -1,
            Self::InvalidParameters => -2,
            Self::Denied => -3,
            Self::AlreadyOn => -4,
            Self::OnPending => -5,
            Self::InternalFailure => -6,
            Self::NotPresent => -7,
            Self::Disabled => -8,
            Self::InvalidAddress => -9,
            Self::Other(value) => value,
        }
    }
}

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSupported => f.write_str("NOT_SUPPORTED (-1)"),
            Self::InvalidParameters => f.write_str("INVALID_PARAMETERS (-2)"),
            Self::Denied => f.write_str("DENIED (-3)"),
            Self::AlreadyOn => f.write_str("ALREADY_ON (-4)"),
            Self::OnPending => f.write_str("ON_PENDING (-5)"),
            Self::InternalFailure => f.write_str("INTERNAL_FAILURE (-6)"),
            Self::NotPresent => f.write_str("NOT_PRESENT (-7)"),
            Self::Disabled => f.write_str("DISABLED (-8)"),
            Self::InvalidAddress => f.write_str("INVALID_ADDRESS (-9)"),
            Self::Other(value) => write!(f, "error {value}"),
        }
    }
}

/// The result of a PSCI call that returns SUCCESS (0) or an error code.
pub fn status(value: i64) -> Result<(), ReturnCode> {
    match value {
        0 => Ok(()),
        other => Err(ReturnCode::from_value(other)),
    }
}

/// What AFFINITY_INFO says of a CPU (DEN0022 section 5.7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityState {
    /// 0: ON.
    On,
    /// 1: OFF.
    Off,
    /// 2: ON_PENDING: a CPU_ON is under way.
    OnPending,
}

impl AffinityState {
    /// Decodes AFFINITY_INFO's return value: a state, or an error code.
    pub fn from_return(value: i64) -> Result<Self, ReturnCode> {
        match value {
            0 => Ok(Self::On),
            1 => Ok(Self::Off),
            2 => Ok(Self::OnPending),
            other => Err(ReturnCode::from_value(other)),
        }
    }
}

impl fmt::Display for AffinityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "ON",
            Self::Off => "OFF",
            Self::OnPending => "ON_PENDING",
        })
    }
}

/// A version as PSCI_VERSION and SMCCC_VERSION return it: major in bits 31:16 (SMCCC: 30:16,
/// bit 31 is always clear in a valid answer), minor in bits 15:0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}

impl Version {
    /// Builds a version from its parts.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Decodes a version call's return value: a negative value is an error code.
    pub fn from_return(value: i64) -> Result<Self, ReturnCode> {
        match u32::try_from(value) {
            Ok(raw) => Ok(Self {
                major: (raw >> 16) as u16,
                minor: raw as u16,
            }),
            Err(_) => Err(ReturnCode::from_value(value)),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(target_os = "none")]
pub use self::calls::*;

#[cfg(target_os = "none")]
mod calls {
    use core::arch::asm;

    use spin::Once;

    use super::{
        return_value, status, AffinityState, Conduit, ReturnCode, AFFINITY_INFO, CPU_OFF, CPU_ON,
        CPU_SUSPEND, SYSTEM_OFF,
    };

    /// The conduit [`system_off`] uses: /psci `method` from the device tree, set once at boot.
    static CONDUIT: Once<Conduit> = Once::new();

    /// Sets the conduit of [`system_off`]; the first call wins.
    pub(crate) fn set_conduit(conduit: Conduit) {
        CONDUIT.call_once(|| conduit);
    }

    /// The conduit the platform asked for (HVC until the device tree says otherwise).
    pub fn conduit() -> Conduit {
        CONDUIT.get().copied().unwrap_or(Conduit::Hvc)
    }

    /// Makes an SMCCC call with `function` in w0 and `args` in x1..x3 and returns x0 as the
    /// function's convention defines it (see [`super::return_value`]).
    ///
    /// Safe: a PSCI or SMCCC call cannot touch this guest's memory except through functions that
    /// take an address (CPU_ON's entry point, MEM_PROTECT), and the call is to the hypervisor,
    /// which validates everything. If the instruction is UNDEFINED (no EL2, or no EL3 for SMC) the
    /// guest takes an exception: wrap the call in [`crate::exception::catch_fault`] when that can
    /// happen.
    pub fn call(conduit: Conduit, function: u32, args: [u64; 3]) -> i64 {
        let x0: u64;
        // SAFETY: HVC/SMC pass control to EL2/EL3, which return to the next instruction with
        // results in x0..x3; SMCCC 1.1 lets the callee clobber x4..x17 too (DEN0028 section 2.6),
        // so all of x0..x17 are declared clobbered. No memory is passed. The asm is not `nomem`
        // so the compiler keeps it in order with the fault bookkeeping around it.
        unsafe {
            match conduit {
                Conduit::Hvc => asm!(
                    "hvc #0",
                    inlateout("x0") u64::from(function) => x0,
                    inlateout("x1") args[0] => _,
                    inlateout("x2") args[1] => _,
                    inlateout("x3") args[2] => _,
                    out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                    out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                    out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                    out("x16") _, out("x17") _,
                    options(nostack),
                ),
                Conduit::Smc => asm!(
                    "smc #0",
                    inlateout("x0") u64::from(function) => x0,
                    inlateout("x1") args[0] => _,
                    inlateout("x2") args[1] => _,
                    inlateout("x3") args[2] => _,
                    out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                    out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                    out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                    out("x16") _, out("x17") _,
                    options(nostack),
                ),
            }
        }
        return_value(function, x0)
    }

    /// CPU_ON: starts the CPU with affinity `target` at `entry` (a guest-physical address: the
    /// MMU is off there) in EL1h with x0 = `context_id`. Prefer [`crate::smp::start_cpu`], which
    /// gives the new CPU a stack and runs a Rust function.
    pub fn cpu_on(target: u64, entry: usize, context_id: u64) -> Result<(), ReturnCode> {
        status(call(conduit(), CPU_ON, [target, entry as u64, context_id]))
    }

    /// CPU_OFF: powers the calling CPU off. Returns only if that failed, with the error.
    pub fn cpu_off() -> ReturnCode {
        ReturnCode::from_value(call(conduit(), CPU_OFF, [0; 3]))
    }

    /// AFFINITY_INFO for the CPU with affinity `target` (lowest affinity level 0: that CPU alone).
    pub fn affinity_info(target: u64) -> Result<AffinityState, ReturnCode> {
        AffinityState::from_return(call(conduit(), AFFINITY_INFO, [target, 0, 0]))
    }

    /// CPU_SUSPEND into `power_state` (see [`super::POWER_STATE_STANDBY`]); a standby state
    /// returns here once an interrupt is pending, whether or not PSTATE masks it. The entry
    /// point and context ID only matter to powerdown states, which this guest runtime does not
    /// use: they are 0.
    pub fn cpu_suspend(power_state: u32) -> Result<(), ReturnCode> {
        status(call(conduit(), CPU_SUSPEND, [u64::from(power_state), 0, 0]))
    }

    /// PSCI SYSTEM_OFF over the platform's conduit. Should the call return (it must not), waits
    /// for events forever.
    pub fn system_off() -> ! {
        call(conduit(), SYSTEM_OFF, [0; 3]);
        loop {
            aarch64_cpu::asm::wfe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_32_bit_results_from_w0() {
        // NOT_SUPPORTED from a 32-bit function: only w0 counts, whatever the upper half holds.
        assert_eq!(return_value(PSCI_VERSION, 0x0000_0000_ffff_ffff), -1);
        assert_eq!(return_value(PSCI_VERSION, 0xffff_ffff_ffff_ffff), -1);
        assert_eq!(return_value(PSCI_VERSION, 0x1234_5678_0001_0001), 0x1_0001);
    }

    #[test]
    fn reads_64_bit_results_from_x0() {
        let cpu_on_64 = 0xC400_0003;
        assert_eq!(return_value(cpu_on_64, u64::MAX), -1);
        assert_eq!(return_value(cpu_on_64, 0x0000_0000_ffff_ffff), 0xffff_ffff);
    }

    #[test]
    fn decodes_versions_and_errors() {
        assert_eq!(Version::from_return(0x1_0001), Ok(Version::new(1, 1)));
        assert_eq!(Version::from_return(0x2), Ok(Version::new(0, 2)));
        assert_eq!(Version::from_return(-1), Err(ReturnCode::NotSupported));
        assert!(Version::new(1, 1) >= Version::new(1, 0));
        assert!(Version::new(0, 2) < Version::new(1, 0));
        assert_eq!(std::format!("{}", Version::new(1, 1)), "1.1");
        assert_eq!(
            std::format!("{}", ReturnCode::from_value(-1)),
            "NOT_SUPPORTED (-1)"
        );
        assert_eq!(ReturnCode::from_value(-42), ReturnCode::Other(-42));
        for value in -10..0 {
            assert_eq!(ReturnCode::from_value(value).value(), value);
        }
    }

    #[test]
    fn decodes_affinity_states_and_status() {
        assert_eq!(AffinityState::from_return(0), Ok(AffinityState::On));
        assert_eq!(AffinityState::from_return(1), Ok(AffinityState::Off));
        assert_eq!(AffinityState::from_return(2), Ok(AffinityState::OnPending));
        assert_eq!(
            AffinityState::from_return(-2),
            Err(ReturnCode::InvalidParameters)
        );
        assert_eq!(std::format!("{}", AffinityState::OnPending), "ON_PENDING");
        assert_eq!(status(0), Ok(()));
        assert_eq!(status(-4), Err(ReturnCode::AlreadyOn));
        assert_eq!(status(3), Err(ReturnCode::Other(3)));
        // The 64-bit functions read all of x0, CPU_OFF only w0.
        assert_eq!(return_value(CPU_ON, 0xffff_ffff_ffff_fffc), -4);
        assert_eq!(return_value(CPU_OFF, 0x0000_0000_ffff_fffd), -3);
    }

    #[test]
    fn parses_the_psci_method() {
        assert_eq!(Conduit::from_method("hvc"), Some(Conduit::Hvc));
        assert_eq!(Conduit::from_method("smc"), Some(Conduit::Smc));
        assert_eq!(Conduit::from_method("magic"), None);
    }
}
