//! AArch64 at EL2: boot entry, exception vectors, MMU, virtualization controls, firmware calls.

pub mod boot;
pub mod cpu;
pub mod exception;
pub mod firmware;
pub mod fp;
pub mod mmu;
pub mod registers;
pub mod timer;
pub mod virt;

pub use cpu::{cpu_index, halt, MAX_CPUS};
pub mod gic;
