//! One SPI at the (virtual) distributor: the part of the GIC that the driver in `driver.rs`, which
//! serves SGIs and PPIs only, leaves alone (guests/rtc's passthrough RTC, guests/bench's disk).
//!
//! Setting up an SPI (GICv3, IHI 0069 section 12.9; GICv2, IHI 0048B section 4.3), in this order,
//! with the interrupt disabled throughout: clear a stale pending state (GICD_ICPENDR); its
//! priority (GICD_IPRIORITYR, guest-common's [`DEFAULT_PRIORITY`]); level-sensitive
//! (GICD_ICFGR Int_config[1] = 0); on GICv3, Group 1 (GICD_IGROUPR: the group guest-common's CPU
//! interface enables, ICC_IGRPEN1_EL1) and, since affinity routing is on, GICD_IROUTER = this
//! CPU's affinity with IRM = 0; on GICv2, the group stays 0 (as guest-common leaves its SGIs and
//! PPIs: GICC_CTLR.Enable signals it as an IRQ) and GICD_ITARGETSR's byte names this CPU's
//! interface. Then GICD_ISENABLER. Each write is read back, so a distributor that ignores one
//! is reported rather than waited on.
//!
//! The register frames here overlay guest-common's distributor (the same MMIO, other registers):
//! [`SpiRegisters`] covers its first 4 KiB, [`RouterRegisters`] GICv3's GICD_IROUTER<n> at
//! 0x6000. Every access is 32 bits wide (64 for GICD_IROUTER), as both architectures require
//! them to work.

use core::fmt;

use super::regs::{IPRIORITYR, ITARGETSR};
use super::{intid_bit, CpuInterface, Gic, GicVersion, DEFAULT_PRIORITY};
use crate::addr::AddrRange;
use crate::cpu::{current_mpidr, Mpidr};
use tock_registers::fields::Field;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! {u32,
    /// Interrupt Controller Type Register (GICv3 12.9.38, GICv2 4.3.2).
    pub GICD_TYPER [
        /// GICv2: the number of CPU interfaces, minus 1.
        CPUNumber OFFSET(5) NUMBITS(3) [],
        /// The largest implemented INTID is 32 * (ITLinesNumber + 1) - 1.
        ITLinesNumber OFFSET(0) NUMBITS(5) [],
    ],
}

register_bitfields! {u64,
    /// Interrupt Routing Register (GICv3 12.9.22), for SPIs when affinity routing is on.
    pub GICD_IROUTER [
        /// Affinity level 3 of the target.
        Aff3 OFFSET(32) NUMBITS(8) [],
        /// Interrupt Routing Mode.
        IRM OFFSET(31) NUMBITS(1) [
            /// To the PE named by Aff3.Aff2.Aff1.Aff0.
            Targeted = 0,
            /// To any one participating PE.
            AnyPe = 1,
        ],
        /// Affinity level 2 of the target.
        Aff2 OFFSET(16) NUMBITS(8) [],
        /// Affinity level 1 of the target.
        Aff1 OFFSET(8) NUMBITS(8) [],
        /// Affinity level 0 of the target.
        Aff0 OFFSET(0) NUMBITS(8) [],
    ],
}

register_structs! {
    /// The distributor's first 4 KiB, as far as SPIs use it (GICv3 Table 12-25, GICv2
    /// Table 4-1). Registers with a bit per INTID are `u32` bitmaps ([`intid_bit`]); GICD_ICFGR
    /// has two bits per INTID ([`icfgr_edge_bit`]).
    pub SpiRegisters {
        (0x0000 => _ctlr),
        (0x0004 => pub typer: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => _reserved0),
        (0x0080 => pub igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => pub ispendr: [ReadWrite<u32>; 32]),
        (0x0280 => pub icpendr: [ReadWrite<u32>; 32]),
        (0x0300 => pub isactiver: [ReadWrite<u32>; 32]),
        (0x0380 => _icactiver),
        (0x0400 => pub ipriorityr: [ReadWrite<u32, IPRIORITYR::Register>; 255]),
        (0x07fc => _reserved1),
        (0x0800 => pub itargetsr: [ReadWrite<u32, ITARGETSR::Register>; 255]),
        (0x0bfc => _reserved2),
        (0x0c00 => pub icfgr: [ReadWrite<u32>; 64]),
        (0x0d00 => _reserved3),
        (0x1000 => @END),
    }
}

register_structs! {
    /// GICv3's GICD_IROUTER<n>, indexed by INTID (0-31 are reserved), from distributor offset
    /// [`ROUTER_OFFSET`].
    pub RouterRegisters {
        (0x0000 => pub irouter: [ReadWrite<u64, GICD_IROUTER::Register>; 1020]),
        (0x1fe0 => _reserved),
        (0x2000 => @END),
    }
}

/// Where GICD_IROUTER<0> would be (GICv3 Table 12-25).
pub const ROUTER_OFFSET: usize = 0x6000;
/// INTID of the first SPI.
const FIRST_SPI: u32 = 32;

/// Register `intid / 16` of GICD_ICFGR and its Int_config[1] bit for `intid`: set for
/// edge-triggered, clear for level-sensitive (GICv3 12.9.7; GICv2 4.3.13).
pub const fn icfgr_edge_bit(intid: u32) -> (usize, u32) {
    ((intid / 16) as usize, 1 << (2 * (intid % 16) + 1))
}

/// The priority field of `intid` in its GICD_IPRIORITYR.
fn priority_field(intid: u32) -> Field<u32, IPRIORITYR::Register> {
    match intid % 4 {
        0 => IPRIORITYR::Priority0,
        1 => IPRIORITYR::Priority1,
        2 => IPRIORITYR::Priority2,
        _ => IPRIORITYR::Priority3,
    }
}

/// The CPU targets field of `intid` in its GICD_ITARGETSR.
fn targets_field(intid: u32) -> Field<u32, ITARGETSR::Register> {
    match intid % 4 {
        0 => ITARGETSR::CPUTargets0,
        1 => ITARGETSR::CPUTargets1,
        2 => ITARGETSR::CPUTargets2,
        _ => ITARGETSR::CPUTargets3,
    }
}

/// Where the SPI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// GICv3: GICD_IROUTER names this affinity.
    Affinity(Mpidr),
    /// GICv2: GICD_ITARGETSR holds this CPU interface bit (or reads as zero on a uniprocessor
    /// GIC, where it is RAZ/WI and every SPI goes to the one CPU).
    Interface {
        /// The bit written.
        bit: u8,
        /// What reads back.
        read: u8,
    },
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Affinity(mpidr) => write!(
                f,
                "GICD_IROUTER = affinity {}.{}.{}.{}",
                mpidr.aff3(),
                mpidr.aff2(),
                mpidr.aff1(),
                mpidr.aff0()
            ),
            Self::Interface { bit, read } if bit == read => {
                write!(f, "GICD_ITARGETSR = {bit:#04x}")
            }
            Self::Interface { bit, read } => write!(
                f,
                "GICD_ITARGETSR = {bit:#04x} (reads {read:#04x}: a uniprocessor GIC)"
            ),
        }
    }
}

/// How [`Spi::configure`] left the SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// The GIC's version.
    pub version: GicVersion,
    /// The INTID.
    pub intid: u32,
    /// Its group.
    pub group: u8,
    /// Its priority.
    pub priority: u8,
    /// Its route.
    pub route: Route,
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: INTID {} Group {}, priority {:#04x}, level-sensitive, {}, enabled",
            self.version, self.intid, self.group, self.priority, self.route
        )
    }
}

/// What went wrong setting up the SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpiError {
    /// The distributor implements fewer INTIDs (GICD_TYPER.ITLinesNumber).
    NotImplemented {
        /// The INTID.
        intid: u32,
        /// The largest one implemented.
        largest: u32,
    },
    /// The GICv3 distributor frame does not reach GICD_IROUTER.
    NoRouterFrame(AddrRange),
    /// guest-common's driver reports a CPU interface of the other GIC version.
    WrongInterface,
    /// A register did not keep what was written.
    Ignored {
        /// Which register.
        register: &'static str,
        /// What was written (the field's value).
        wrote: u64,
        /// What reads back.
        read: u64,
    },
}

impl fmt::Display for SpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotImplemented { intid, largest } => write!(
                f,
                "INTID {intid} is beyond the distributor's largest, {largest} (GICD_TYPER)"
            ),
            Self::NoRouterFrame(frame) => {
                write!(
                    f,
                    "the distributor frame {frame} does not reach GICD_IROUTER"
                )
            }
            Self::WrongInterface => f.write_str("the CPU interface is not the GIC's version"),
            Self::Ignored {
                register,
                wrote,
                read,
            } => write!(f, "{register} reads {read:#x} after writing {wrote:#x}"),
        }
    }
}

/// One SPI of the GIC that guest-common's driver set up.
pub struct Spi {
    gic: &'static Gic,
    intid: u32,
}

impl Spi {
    /// SPI `intid` (32..=1019), checked against what the distributor implements.
    pub fn new(gic: &'static Gic, intid: u32) -> Result<Self, SpiError> {
        let spi = Self { gic, intid };
        let lines = spi.registers().typer.read(GICD_TYPER::ITLinesNumber);
        let largest = 32 * (lines + 1) - 1;
        if !(FIRST_SPI..=largest).contains(&intid) {
            return Err(SpiError::NotImplemented { intid, largest });
        }
        if gic.version() == GicVersion::V3 {
            let frame = gic.layout().distributor();
            if frame.size() < ROUTER_OFFSET + size_of::<RouterRegisters>() {
                return Err(SpiError::NoRouterFrame(frame));
            }
        }
        Ok(spi)
    }

    fn registers(&self) -> &SpiRegisters {
        // SAFETY: `gic::init` checked that the distributor frame lies outside RAM and holds at
        // least guest-common's `GicdRegisters`, 4 KiB like `SpiRegisters`; it is the GIC
        // distributor, whose registers are only ever accessed volatilely (tock-registers), here
        // and in guest-common's driver, which touches none of the SPI bits this does.
        unsafe { &*(self.gic.layout().distributor().start as *const SpiRegisters) }
    }

    fn routers(&self) -> &RouterRegisters {
        let base = self.gic.layout().distributor().start + ROUTER_OFFSET;
        // SAFETY: `new` checked that the distributor frame (outside RAM, as above) reaches past
        // the end of `RouterRegisters` at `ROUTER_OFFSET`; only GICv3 paths call this.
        unsafe { &*(base as *const RouterRegisters) }
    }

    /// Sets the SPI up and enables it (see the module documentation), routed to the calling
    /// CPU, whose interface guest-common's `Gic::init_cpu` reported as `cpu`.
    pub fn configure(&self, cpu: CpuInterface) -> Result<Setup, SpiError> {
        let gicd = self.registers();
        let intid = self.intid;
        let (word, bit) = intid_bit(intid);
        gicd.icenabler[word].set(bit);
        gicd.icpendr[word].set(bit);

        let index = (intid / 4) as usize;
        gicd.ipriorityr[index].modify(priority_field(intid).val(u32::from(DEFAULT_PRIORITY)));
        let priority = gicd.ipriorityr[index].read(priority_field(intid)) as u8;
        if priority != DEFAULT_PRIORITY {
            return Err(SpiError::Ignored {
                register: "GICD_IPRIORITYR",
                wrote: u64::from(DEFAULT_PRIORITY),
                read: u64::from(priority),
            });
        }

        let (config, edge) = icfgr_edge_bit(intid);
        let level = gicd.icfgr[config].get() & !edge;
        gicd.icfgr[config].set(level);
        if gicd.icfgr[config].get() & edge != 0 {
            return Err(SpiError::Ignored {
                register: "GICD_ICFGR",
                wrote: u64::from(level),
                read: u64::from(gicd.icfgr[config].get()),
            });
        }

        let version = self.gic.version();
        let (group, route) = match (version, cpu) {
            (GicVersion::V3, CpuInterface::V3 { .. }) => {
                gicd.igroupr[word].set(gicd.igroupr[word].get() | bit);
                if gicd.igroupr[word].get() & bit == 0 {
                    return Err(SpiError::Ignored {
                        register: "GICD_IGROUPR",
                        wrote: u64::from(bit),
                        read: 0,
                    });
                }
                let mpidr = current_mpidr();
                let target = GICD_IROUTER::Aff3.val(u64::from(mpidr.aff3()))
                    + GICD_IROUTER::IRM::Targeted
                    + GICD_IROUTER::Aff2.val(u64::from(mpidr.aff2()))
                    + GICD_IROUTER::Aff1.val(u64::from(mpidr.aff1()))
                    + GICD_IROUTER::Aff0.val(u64::from(mpidr.aff0()));
                let router = &self.routers().irouter[intid as usize];
                router.write(target);
                if router.get() != target.value {
                    return Err(SpiError::Ignored {
                        register: "GICD_IROUTER",
                        wrote: target.value,
                        read: router.get(),
                    });
                }
                (1, Route::Affinity(mpidr))
            }
            (GicVersion::V2, CpuInterface::V2 { interface_bit }) => {
                let targets = &gicd.itargetsr[index];
                targets.modify(targets_field(intid).val(u32::from(interface_bit)));
                let read = targets.read(targets_field(intid)) as u8;
                let uniprocessor = gicd.typer.read(GICD_TYPER::CPUNumber) == 0;
                if read != interface_bit && !(uniprocessor && read == 0) {
                    return Err(SpiError::Ignored {
                        register: "GICD_ITARGETSR",
                        wrote: u64::from(interface_bit),
                        read: u64::from(read),
                    });
                }
                (
                    0,
                    Route::Interface {
                        bit: interface_bit,
                        read,
                    },
                )
            }
            _ => return Err(SpiError::WrongInterface),
        };

        gicd.isenabler[word].set(bit);
        if !self.is_enabled() {
            return Err(SpiError::Ignored {
                register: "GICD_ISENABLER",
                wrote: u64::from(bit),
                read: u64::from(gicd.isenabler[word].get()),
            });
        }
        Ok(Setup {
            version,
            intid,
            group,
            priority,
            route,
        })
    }

    /// Disables the SPI (GICD_ICENABLER).
    pub fn disable(&self) {
        let (word, bit) = intid_bit(self.intid);
        self.registers().icenabler[word].set(bit);
    }

    /// What the distributor says of the SPI: enabled, pending, active.
    pub fn state(&self) -> State {
        let gicd = self.registers();
        let (word, bit) = intid_bit(self.intid);
        State {
            enabled: gicd.isenabler[word].get() & bit != 0,
            pending: gicd.ispendr[word].get() & bit != 0,
            active: gicd.isactiver[word].get() & bit != 0,
        }
    }

    fn is_enabled(&self) -> bool {
        self.state().enabled
    }
}

/// The distributor's view of an SPI (GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Enabled.
    pub enabled: bool,
    /// Pending.
    pub pending: bool,
    /// Active.
    pub active: bool,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GICD_ISENABLER {}, ISPENDR {}, ISACTIVER {}",
            u8::from(self.enabled),
            u8::from(self.pending),
            u8::from(self.active)
        )
    }
}
