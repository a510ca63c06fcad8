//! Drivers for the host devices Bulkhead itself uses.

pub mod pl011;
