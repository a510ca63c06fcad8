//! Why a host device tree was rejected: [`DtError`], and [`NodePath`], the allocation-free node path
//! that errors name.

use core::fmt;

/// Deepest node nesting Bulkhead accepts below the root (`/soc/bus/device` is depth 3).
///
/// Real device trees nest a handful of levels; the bound keeps the tree walk's recursion small.
pub const MAX_DEPTH: usize = 16;

/// How many innermost components a [`NodePath`] keeps. Four name every node Bulkhead reads on the
/// boards it knows exactly, and keep [`DtError`] small enough to return by value cheaply.
const PATH_TAIL: usize = 4;

/// The path of a node in the blob, such as `/cpus/cpu@1`, without allocation: the innermost unit
/// names (borrowed from the DTB) and the node's depth. A path deeper than four components shows
/// its outer part as `/...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NodePath<'a> {
    /// The innermost components, outermost first; `tail[..depth.min(PATH_TAIL)]` is in use.
    tail: [&'a str; PATH_TAIL],
    /// The node's depth below the root (0 for the root itself).
    depth: usize,
}

impl<'a> NodePath<'a> {
    /// The root node's path, `/`.
    pub const ROOT: Self = Self {
        tail: [""; PATH_TAIL],
        depth: 0,
    };

    /// Builds a path from its components listed innermost first (the node's own name, then its
    /// parent's, up to the root's child).
    pub(super) fn from_innermost(components: impl IntoIterator<Item = &'a str>) -> Self {
        let mut path = Self::ROOT;
        for component in components {
            if path.depth < PATH_TAIL {
                path.tail[PATH_TAIL - 1 - path.depth] = component;
            }
            path.depth += 1;
        }
        // Move the used slots to the front, outermost first.
        let kept = path.depth.min(PATH_TAIL);
        path.tail.rotate_left(PATH_TAIL - kept);
        path
    }

    /// The node's depth below the root (0 for the root).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The innermost components kept (all of them when `depth() <= 4`), outermost first.
    pub fn tail(&self) -> &[&'a str] {
        &self.tail[..self.depth.min(PATH_TAIL)]
    }

    /// The node's own unit name (`cpu@1`), or `""` for the root.
    pub fn name(&self) -> &'a str {
        self.tail().last().copied().unwrap_or("")
    }
}

/// Compares with a written path such as `"/cpus/cpu@1"` (exact unit names, no alias); a path
/// deeper than four components equals nothing.
impl PartialEq<&str> for NodePath<'_> {
    fn eq(&self, other: &&str) -> bool {
        if self.depth > PATH_TAIL {
            return false;
        }
        match other.strip_prefix('/') {
            Some("") => self.depth == 0,
            Some(rest) => rest.split('/').eq(self.tail().iter().copied()),
            None => false,
        }
    }
}

impl fmt::Display for NodePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.depth == 0 {
            return f.write_str("/");
        }
        if self.depth > PATH_TAIL {
            f.write_str("/...")?;
        }
        for component in self.tail() {
            write!(f, "/{component}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Why the host device tree could not be turned into a [`Platform`](super::Platform).
///
/// Every variant names what was wrong without allocating: fixed reasons are `&'static str`, node
/// paths borrow their names from the DTB (hence the lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError<'a> {
    /// The 40-byte header is short, has the wrong magic, or describes blocks that do not fit.
    InvalidHeader {
        /// What is wrong with it.
        why: &'static str,
    },
    /// The structure block, strings block or memory reservation block is malformed (or uses a
    /// form, such as `FDT_NOP` between properties, that this parser does not accept).
    Malformed {
        /// Byte offset from the start of the blob where the problem was found.
        offset: usize,
        /// What is wrong there.
        why: &'static str,
    },
    /// A node that the platform needs is absent (for example `/psci` when CPUs use PSCI).
    Missing {
        /// The node, as a path or a description.
        node: &'static str,
    },
    /// A property is missing, has the wrong size, or holds a value Bulkhead does not support.
    BadProperty {
        /// The node holding (or lacking) the property.
        node: NodePath<'a>,
        /// The property's name.
        property: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `reg` address cannot be translated to a CPU physical address through the parent buses'
    /// `ranges` (devicetree specification v0.4 §2.3.8).
    Untranslatable {
        /// The node whose `reg` it is.
        node: NodePath<'a>,
        /// The address in the node's parent bus's address space.
        address: u64,
        /// Why translation failed.
        why: &'static str,
    },
    /// No enabled memory node with a non-empty `reg`.
    NoMemory,
    /// No RAM, and a memory node whose `reg` entries all have size 0: the placeholder a Raspberry
    /// Pi DTB carries (`reg = <0 0 0>`) for the firmware to fill in with the board's RAM. The blob
    /// was not passed through the firmware (or QEMU `-dtb`, which does the same).
    UnfilledMemory {
        /// The memory node.
        node: NodePath<'a>,
    },
    /// No enabled GIC the hypervisor can drive.
    NoGic,
    /// No enabled PL011 UART, neither at `stdout-path` nor anywhere else.
    NoConsole,
}

impl fmt::Display for DtError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidHeader { why } => write!(f, "invalid DTB header: {why}"),
            Self::Malformed { offset, why } => {
                write!(f, "malformed DTB at offset {offset:#x}: {why}")
            }
            Self::Missing { node } => write!(f, "missing node {node}"),
            Self::BadProperty {
                node,
                property,
                why,
            } => {
                write!(f, "{node}: bad property {property}: {why}")
            }
            Self::Untranslatable { node, address, why } => {
                write!(
                    f,
                    "{node}: reg address {address:#x} is not translatable: {why}"
                )
            }
            Self::NoMemory => {
                f.write_str("no memory (no enabled memory node with a non-empty reg)")
            }
            Self::UnfilledMemory { node } => write!(
                f,
                "no memory: {node} has only zero-size reg entries, a placeholder that the \
                 firmware fills in with the board's RAM (this DTB did not come through the \
                 firmware or QEMU -dtb)"
            ),
            Self::NoGic => f.write_str(
                "no GIC (interrupt-controller with arm,gic-v3 or arm,cortex-a15-gic/arm,gic-400)",
            ),
            Self::NoConsole => {
                f.write_str("no console (no enabled arm,pl011 at stdout-path or anywhere else)")
            }
        }
    }
}
