//! System registers that aarch64-cpu describes incompletely, in aarch64-cpu's own shape.

pub mod cptr_el2;
pub use cptr_el2::CPTR_EL2;
