//! Bringing up the secondary CPUs: PSCI CPU_ON, or the spin table, as each CPU's DT node says.
//! Each reports itself online at EL2; one that does not within a second is left out.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::aarch64::{boot as entry, cpu, firmware, MAX_CPUS};
use crate::platform::{EnableMethod, Platform};

static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// How long a CPU has to report itself online.
const ONLINE_TIMEOUT_MS: u64 = 1000;

/// Marks this CPU online.
pub fn mark_online(index: usize) {
    ONLINE[index].store(true, Ordering::Release);
    cpu::send_event();
}

/// Whether CPU `index` came up.
pub fn is_online(index: usize) -> bool {
    index < MAX_CPUS && ONLINE[index].load(Ordering::Acquire)
}

/// Number of CPUs online.
pub fn online_count() -> usize {
    ONLINE.iter().filter(|c| c.load(Ordering::Acquire)).count()
}

/// Starts every secondary CPU the DT lists and waits for each to come online.
pub fn start_secondaries(platform: &Platform<'_>) {
    if platform.cpus.len() > MAX_CPUS {
        log::warn!("smp: the DT lists {} CPUs; Bulkhead drives the first {MAX_CPUS}", platform.cpus.len());
    }
    for (index, cpu) in platform.cpus.iter().enumerate().take(MAX_CPUS) {
        cpu::set_secondary_mpidr(index, cpu.mpidr);
    }
    cpu::publish_secondary_boot();
    let boot_mpidr = cpu::mpidr_affinity();
    for (index, node) in platform.cpus.iter().enumerate().take(MAX_CPUS) {
        if node.mpidr == boot_mpidr {
            continue;
        }
        match node.enable_method {
            Some(EnableMethod::Psci) => {
                let Some(conduit) = platform.psci else {
                    log::warn!("smp: cpu{index} (MPIDR {:#x}) uses PSCI but the DT has no /psci", node.mpidr);
                    continue;
                };
                let status = firmware::cpu_on(conduit, node.mpidr, entry::secondary_entry_address(), index as u64);
                if status != 0 {
                    log::warn!("smp: cpu{index} (MPIDR {:#x}): PSCI CPU_ON failed ({status})", node.mpidr);
                    continue;
                }
            }
            Some(EnableMethod::SpinTable { release_addr }) => {
                let slot = release_addr.to_identity_virt().as_mut_ptr::<u64>();
                // SAFETY: the DT names this 8-byte location as the CPU's release address; it is
                // RAM the frame allocator does not hand out (it is below the image or reserved).
                unsafe { core::ptr::write_volatile(slot, entry::spin_table_entry_address()) };
                cpu::clean_dcache_range(slot as usize, 8);
                cpu::send_event();
            }
            None => {
                log::warn!("smp: cpu{index} (MPIDR {:#x}) has no enable-method: not started", node.mpidr);
                continue;
            }
        }
        let deadline = cpu::counter() + ONLINE_TIMEOUT_MS * cpu::counter_frequency() / 1000;
        while !is_online(index) && cpu::counter() < deadline {
            core::hint::spin_loop();
        }
        if !is_online(index) {
            log::warn!("smp: cpu{index} (MPIDR {:#x}) did not come online", node.mpidr);
        }
    }
}
