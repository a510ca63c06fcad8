//! Which CPU is which: MPIDR_EL1 affinities, and the list of a VM's vCPUs.
//!
//! A VM's vCPUs are named in three places that must agree: the device tree (`/cpus/cpu@N`, whose
//! `reg` is the MPIDR_EL1 affinity, Linux binding `arm/cpus.yaml`), PSCI (CPU_ON and AFFINITY_INFO
//! take that same affinity as `target_cpu`, DEN0022 section 5.1.4) and the GIC (GICv3 routes SGIs
//! by affinity and finds a CPU's redistributor through GICR_TYPER.Affinity_Value). [`Mpidr`]
//! holds just the affinity fields (Arm ARM D19.2, MPIDR_EL1: Aff3 in bits 39:32, Aff2..Aff0 in
//! bits 23:0) so the three can be compared directly.
//!
//! The guests number the vCPUs they use with a small *logical index*: 0 is the vCPU that booted
//! (the primary), 1.. the others in device tree order. The index picks a secondary's stack
//! ([`crate::smp`]) and its slot in per-CPU tables; it is at most [`MAX_CPUS`] - 1.

use core::fmt;

/// The most vCPUs the guests handle: Bulkhead's limit per VM (`config`'s `MAX_VCPUS`).
pub const MAX_CPUS: usize = 8;

/// The affinity fields of an MPIDR_EL1 value (Aff3.Aff2.Aff1.Aff0); every other bit is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mpidr(u64);

/// Bits 23:0 (Aff2, Aff1, Aff0) and 39:32 (Aff3) of MPIDR_EL1.
const AFFINITY_MASK: u64 = 0xff_00ff_ffff;

impl Mpidr {
    /// The affinity `aff3.aff2.aff1.aff0`.
    pub const fn from_affinity(aff3: u8, aff2: u8, aff1: u8, aff0: u8) -> Self {
        Self(((aff3 as u64) << 32) | ((aff2 as u64) << 16) | ((aff1 as u64) << 8) | aff0 as u64)
    }

    /// The affinity fields of a raw MPIDR_EL1 value (U, MT and RES1 are dropped), or of a
    /// `/cpus/cpu` `reg` value, which holds them at the same positions.
    pub const fn from_register(raw: u64) -> Self {
        Self(raw & AFFINITY_MASK)
    }

    /// Affinity level 0 (in a Bulkhead VM: the vCPU number N of `cpu@N`).
    pub const fn aff0(self) -> u8 {
        self.0 as u8
    }

    /// Affinity level 1.
    pub const fn aff1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Affinity level 2.
    pub const fn aff2(self) -> u8 {
        (self.0 >> 16) as u8
    }

    /// Affinity level 3.
    pub const fn aff3(self) -> u8 {
        (self.0 >> 32) as u8
    }

    /// The value PSCI takes as `target_cpu` (DEN0022 section 5.1.4): the affinity fields at their
    /// MPIDR_EL1 positions.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The affinity packed as GICR_TYPER.Affinity_Value has it (GIC spec 12.11.37):
    /// Aff3 in bits 31:24, Aff2 in 23:16, Aff1 in 15:8, Aff0 in 7:0.
    pub const fn packed(self) -> u32 {
        ((self.aff3() as u32) << 24)
            | ((self.aff2() as u32) << 16)
            | ((self.aff1() as u32) << 8)
            | self.aff0() as u32
    }
}

impl fmt::Display for Mpidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Where a [`CpuList`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuSource {
    /// The `/cpus` node of the device tree.
    DeviceTree,
    /// PSCI AFFINITY_INFO, asked about Aff0 = 0, 1, ... (no usable device tree).
    PsciProbe,
}

impl fmt::Display for CpuSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DeviceTree => "from the DTB",
            Self::PsciProbe => "probed with PSCI AFFINITY_INFO",
        })
    }
}

/// A VM's vCPUs by logical index: the primary (the CPU that booted) first, then the others in the
/// order found, at most [`MAX_CPUS`] of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuList {
    mpidrs: [Mpidr; MAX_CPUS],
    len: usize,
    /// How many CPUs the source described, including any beyond [`MAX_CPUS`].
    pub described: usize,
    /// Whether the primary was among them (it always is in a consistent tree).
    pub primary_described: bool,
    /// Where the list came from.
    pub source: CpuSource,
}

impl CpuList {
    /// The list for a guest running on `primary`, from the CPUs a source describes.
    pub fn new(
        primary: Mpidr,
        described: impl IntoIterator<Item = Mpidr>,
        source: CpuSource,
    ) -> Self {
        let mut list = Self {
            mpidrs: [primary; MAX_CPUS],
            len: 1,
            described: 0,
            primary_described: false,
            source,
        };
        for mpidr in described {
            list.described += 1;
            if mpidr == primary {
                list.primary_described = true;
            } else if list.len < MAX_CPUS && !list.as_slice().contains(&mpidr) {
                list.mpidrs[list.len] = mpidr;
                list.len += 1;
            }
        }
        list
    }

    /// The vCPUs, primary first.
    pub fn as_slice(&self) -> &[Mpidr] {
        &self.mpidrs[..self.len]
    }

    /// How many vCPUs the list holds (at least 1: the primary).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: the primary is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The affinity of logical CPU `index`.
    pub fn get(&self, index: usize) -> Option<Mpidr> {
        self.as_slice().get(index).copied()
    }

    /// The logical index of `mpidr`.
    pub fn index_of(&self, mpidr: Mpidr) -> Option<usize> {
        self.as_slice().iter().position(|&m| m == mpidr)
    }

    /// The secondaries: logical indices 1.. with their affinities.
    pub fn secondaries(&self) -> impl Iterator<Item = (usize, Mpidr)> + '_ {
        self.as_slice().iter().copied().enumerate().skip(1)
    }
}

/// The affinity of the CPU running this code.
#[cfg(target_os = "none")]
pub fn current_mpidr() -> Mpidr {
    use aarch64_cpu::registers::{Readable, MPIDR_EL1};
    Mpidr::from_register(MPIDR_EL1.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_affinity_fields() {
        // U=0, MT=0, RES1 (bit 31) set, as a CPU reports it.
        let mpidr = Mpidr::from_register(0x8000_0003);
        assert_eq!(mpidr, Mpidr::from_affinity(0, 0, 0, 3));
        assert_eq!(mpidr.value(), 3);
        let deep = Mpidr::from_register(0x0000_0012_c103_0201);
        assert_eq!(
            (deep.aff3(), deep.aff2(), deep.aff1(), deep.aff0()),
            (0x12, 0x03, 0x02, 0x01)
        );
        assert_eq!(deep.value(), 0x12_0003_0201);
        assert_eq!(deep.packed(), 0x1203_0201);
        assert_eq!(std::format!("{deep}"), "0x1200030201");
    }

    #[test]
    fn puts_the_primary_first() {
        let cpus = (0..4).map(|n| Mpidr::from_affinity(0, 0, 0, n));
        let list = CpuList::new(
            Mpidr::from_affinity(0, 0, 0, 2),
            cpus,
            CpuSource::DeviceTree,
        );
        let aff0: std::vec::Vec<u8> = list.as_slice().iter().map(|m| m.aff0()).collect();
        assert_eq!(aff0, [2, 0, 1, 3]);
        assert_eq!(list.len(), 4);
        assert!(list.primary_described);
        assert_eq!(list.index_of(Mpidr::from_affinity(0, 0, 0, 3)), Some(3));
        assert_eq!(
            list.secondaries()
                .map(|(i, _)| i)
                .collect::<std::vec::Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn caps_the_list_and_drops_duplicates() {
        let cpus = (0..12).chain([5]).map(|n| Mpidr::from_affinity(0, 0, 0, n));
        let list = CpuList::new(
            Mpidr::from_affinity(0, 0, 0, 0),
            cpus,
            CpuSource::DeviceTree,
        );
        assert_eq!(list.len(), MAX_CPUS);
        assert_eq!(list.described, 13);
        let lonely = CpuList::new(Mpidr::from_affinity(0, 0, 0, 0), [], CpuSource::PsciProbe);
        assert_eq!(lonely.len(), 1);
        assert!(!lonely.primary_described);
    }
}
