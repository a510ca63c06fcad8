//! The Bulkhead image. Everything is in the library; the boot assembly in
//! `arch::aarch64::boot` is the entry point (`_start`, kept by the linker script).

#![no_std]
#![no_main]

extern crate bulkhead;
