//! The architecture seam. Everything that executes an AArch64 instruction by hand (`asm!`, system
//! registers, exception vectors, cache and TLB maintenance) lives under `aarch64/`; the portable core
//! calls the small API re-exported here. On the host (`cargo test`) this module is absent and only
//! the portable core is compiled.

pub mod aarch64;
pub use aarch64::*;
