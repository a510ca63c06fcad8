//! Memory management: translation tables and the frames they and the VMs use.

pub mod pagetable;
pub mod frame;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod tables;
