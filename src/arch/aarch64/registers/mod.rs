//! System registers that aarch64-cpu lacks or describes incompletely, in aarch64-cpu's own shape.

pub mod cptr_el2;
pub mod pmcr_el0;
pub use cptr_el2::CPTR_EL2;
pub use pmcr_el0::PMCR_EL0;
