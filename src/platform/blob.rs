//! Validation of the raw flattened device tree before the `fdt` crate sees it.
//!
//! `fdt` 0.1.5 assumes a well-formed blob: on a truncated or corrupted one it slices out of bounds,
//! `unwrap`s and `assert!`s (for example in `skip_current_node` and `NodeProperty::parse`), and at
//! EL2 a panic ends the hypervisor. So [`validate`] checks every byte `fdt` will read, against the
//! layout in the devicetree specification v0.4 chapter 5:
//!
//! - the header (§5.2): magic, version 17, and each block inside `totalsize`;
//! - the memory reservation block (§5.3): 16-byte entries ending in a zero entry inside the blob;
//! - the structure block (§5.4): every token in bounds, node names NUL-terminated UTF-8, property
//!   values in bounds and property names at valid offsets of NUL-terminated UTF-8 strings, nesting
//!   balanced and no deeper than [`MAX_DEPTH`], and `FDT_END` after the root node.
//!
//! It is deliberately stricter than the specification in one way: `FDT_NOP` is accepted only
//! before the root node, after it, and directly before an `FDT_END_NODE`, because `fdt`'s node
//! skipping panics on a NOP between properties or between child nodes. dtc and libfdt's delete
//! operations never leave NOPs elsewhere, but `fdt_nop_property`/`fdt_nop_node` do, and QEMU's
//! `raspi4b` uses the latter: it hands over the `-dtb` it was given with the nodes of the devices
//! it does not model (PCIe, GENET, the RNG, the thermal sensor) overwritten by NOPs, so between
//! child nodes of `/soc` and `/scb`. [`without_nops`] turns such a blob into one without NOPs,
//! which [`validate`] then checks as usual.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::error::{DtError, MAX_DEPTH};
use crate::addr::{AddrRange, PhysAddr};

/// Size of the flattened device tree header (devicetree specification v0.4 §5.2).
pub const HEADER_SIZE: usize = 40;

/// The header's `magic` field.
pub const FDT_MAGIC: u32 = 0xd00d_feed;

/// Largest DTB accepted: the arm64 boot protocol (Linux `Documentation/arch/arm64/booting.rst`,
/// "Setup the device tree") requires the blob not to exceed 2 MiB.
pub const MAX_DTB_SIZE: usize = 2 * 1024 * 1024;

/// The only layout version this parser reads (the one with `size_dt_struct`).
const FDT_VERSION: u32 = 17;

/// Structure block tokens (devicetree specification v0.4 §5.4.1).
const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_END_NODE: u32 = 0x2;
const FDT_PROP: u32 = 0x3;
const FDT_NOP: u32 = 0x4;
const FDT_END: u32 = 0x9;

/// Byte offsets of the header fields used here.
mod field {
    pub const MAGIC: usize = 0;
    pub const TOTALSIZE: usize = 4;
    pub const OFF_DT_STRUCT: usize = 8;
    pub const OFF_DT_STRINGS: usize = 12;
    pub const OFF_MEM_RSVMAP: usize = 16;
    pub const VERSION: usize = 20;
    pub const LAST_COMP_VERSION: usize = 24;
    pub const SIZE_DT_STRINGS: usize = 32;
    pub const SIZE_DT_STRUCT: usize = 36;
}

/// Reads the big-endian `u32` at `offset`, if it is in bounds.
fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

/// Reads the big-endian `u64` at `offset`, if it is in bounds.
fn be_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let high = be_u32(bytes, offset)?;
    let low = be_u32(bytes, offset.checked_add(4)?)?;
    Some(u64::from(high) << 32 | u64::from(low))
}

/// Reads header field `offset` from a buffer known to hold at least [`HEADER_SIZE`] bytes.
fn header_field(header: &[u8], offset: usize) -> u32 {
    // Every caller has checked `header.len() >= HEADER_SIZE` and every field lies below it.
    be_u32(header, offset).unwrap_or(0)
}

/// Reads a header field that holds a size or an offset.
fn header_size(header: &[u8], offset: usize) -> usize {
    header_field(header, offset) as usize
}

fn bad_header(why: &'static str) -> DtError<'static> {
    DtError::InvalidHeader { why }
}

/// The DTB's total size in bytes, read from its header (`totalsize`) after checking the magic.
///
/// `header` needs to hold only the first [`HEADER_SIZE`] bytes, so boot code can read those from
/// the address in x0, learn how long the blob is, and only then build a slice over all of it. The
/// size is at least [`HEADER_SIZE`] and at most [`MAX_DTB_SIZE`].
///
/// # Errors
///
/// [`DtError::InvalidHeader`] if `header` is shorter than [`HEADER_SIZE`], the magic is not
/// [`FDT_MAGIC`], or `totalsize` is outside those bounds.
pub fn dtb_total_size(header: &[u8]) -> Result<usize, DtError<'static>> {
    if header.len() < HEADER_SIZE {
        return Err(bad_header("shorter than the 40-byte header"));
    }
    if header_field(header, field::MAGIC) != FDT_MAGIC {
        return Err(bad_header("bad magic (expected 0xd00dfeed)"));
    }
    let total = header_size(header, field::TOTALSIZE);
    if total < HEADER_SIZE {
        return Err(bad_header("totalsize is smaller than the header"));
    }
    if total > MAX_DTB_SIZE {
        return Err(bad_header(
            "totalsize exceeds the arm64 boot protocol's 2 MiB limit",
        ));
    }
    Ok(total)
}

/// What [`validate`] learned about a well-formed blob.
pub(super) struct Validated<'a> {
    /// The blob cut to `totalsize`: the slice to hand to `fdt`.
    pub blob: &'a [u8],
    /// The `/memreserve/` entries, in blob order.
    pub reservations: Vec<AddrRange<PhysAddr>>,
}

/// Checks everything `fdt` will read (see the module documentation).
pub(super) fn validate(dtb: &[u8]) -> Result<Validated<'_>, DtError<'static>> {
    let total = dtb_total_size(dtb)?;
    let blob = dtb
        .get(..total)
        .ok_or(bad_header("totalsize exceeds the buffer"))?;

    if header_field(blob, field::VERSION) < FDT_VERSION {
        return Err(bad_header("version is older than 17"));
    }
    if header_field(blob, field::LAST_COMP_VERSION) > FDT_VERSION {
        return Err(bad_header("last_comp_version is newer than 17"));
    }

    let struct_start = header_size(blob, field::OFF_DT_STRUCT);
    let struct_size = header_size(blob, field::SIZE_DT_STRUCT);
    let strings_start = header_size(blob, field::OFF_DT_STRINGS);
    let strings_size = header_size(blob, field::SIZE_DT_STRINGS);
    let rsvmap_start = header_size(blob, field::OFF_MEM_RSVMAP);

    if !struct_start.is_multiple_of(4) {
        return Err(bad_header("structure block is not 4-byte aligned"));
    }
    if !rsvmap_start.is_multiple_of(8) {
        return Err(bad_header("memory reservation block is not 8-byte aligned"));
    }
    let structure = block(blob, struct_start, struct_size)
        .ok_or(bad_header("structure block extends past totalsize"))?;
    let strings = block(blob, strings_start, strings_size)
        .ok_or(bad_header("strings block extends past totalsize"))?;
    if rsvmap_start < HEADER_SIZE || rsvmap_start >= total {
        return Err(bad_header("memory reservation block is outside the blob"));
    }

    let reservations = reservations(blob, rsvmap_start)?;
    StructureCheck {
        structure,
        strings,
        base: struct_start,
        pos: 0,
    }
    .run()?;
    Ok(Validated { blob, reservations })
}

/// `dtb` without its `FDT_NOP` tokens: `dtb` itself when it has none, else a compact copy (header,
/// memory reservation block, structure block without NOPs, strings block, in that order and with
/// no free space) that [`parse`](super::parse) can read.
///
/// Only what the copy needs is checked here (the header's blocks lie inside `totalsize`, the
/// reservation block ends, every token and property value lies inside the structure block); the
/// copy is then validated in full like any other blob.
///
/// # Errors
///
/// [`DtError::InvalidHeader`] or [`DtError::Malformed`] if the blob cannot be walked token by
/// token.
pub fn without_nops(dtb: &[u8]) -> Result<Cow<'_, [u8]>, DtError<'static>> {
    let total = dtb_total_size(dtb)?;
    let blob = dtb
        .get(..total)
        .ok_or(bad_header("totalsize exceeds the buffer"))?;
    let struct_start = header_size(blob, field::OFF_DT_STRUCT);
    let strings_start = header_size(blob, field::OFF_DT_STRINGS);
    let rsvmap_start = header_size(blob, field::OFF_MEM_RSVMAP);
    if !struct_start.is_multiple_of(4) {
        return Err(bad_header("structure block is not 4-byte aligned"));
    }
    if rsvmap_start < HEADER_SIZE || !rsvmap_start.is_multiple_of(8) {
        return Err(bad_header("memory reservation block is outside the blob"));
    }
    let structure = block(blob, struct_start, header_size(blob, field::SIZE_DT_STRUCT))
        .ok_or(bad_header("structure block extends past totalsize"))?;
    let strings = block(blob, strings_start, header_size(blob, field::SIZE_DT_STRINGS))
        .ok_or(bad_header("strings block extends past totalsize"))?;

    // Offsets (within the structure block) of the runs of tokens to keep, NOPs cut out.
    let mut keep: Vec<core::ops::Range<usize>> = Vec::new();
    let mut pos = 0;
    let mut run_start = 0;
    let mut nops = false;
    let malformed = |at: usize, why| DtError::Malformed {
        offset: struct_start + at,
        why,
    };
    loop {
        let token = be_u32(structure, pos).ok_or(malformed(pos, "structure block has no FDT_END"))?;
        let next = match token {
            FDT_BEGIN_NODE => {
                let name = structure.get(pos + 4..).unwrap_or_default();
                let len = name
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(malformed(pos, "node name is not NUL-terminated"))?;
                pos + 4 + ((len + 1 + 3) & !3)
            }
            FDT_PROP => {
                let len = be_u32(structure, pos + 4)
                    .ok_or(malformed(pos, "structure block ends mid-property"))?;
                pos.checked_add(12)
                    .and_then(|p| p.checked_add((len as usize).checked_add(3)? & !3))
                    .ok_or(malformed(pos, "property value runs past the structure block"))?
            }
            FDT_END_NODE | FDT_END => pos + 4,
            FDT_NOP => {
                nops = true;
                if run_start < pos {
                    keep.push(run_start..pos);
                }
                run_start = pos + 4;
                pos + 4
            }
            _ => return Err(malformed(pos, "unknown structure block token")),
        };
        if next > structure.len() {
            return Err(malformed(pos, "token runs past the structure block"));
        }
        pos = next;
        if token == FDT_END {
            break;
        }
    }
    if !nops {
        return Ok(Cow::Borrowed(dtb));
    }
    if run_start < pos {
        keep.push(run_start..pos);
    }

    let rsvmap_len = (reservations(blob, rsvmap_start)?.len() + 1) * 16;
    let rsvmap = &blob[rsvmap_start..rsvmap_start + rsvmap_len];
    let struct_len: usize = keep.iter().map(|run| run.len()).sum();
    let new_rsvmap = HEADER_SIZE; // 40: 8-byte aligned
    let new_struct = new_rsvmap + rsvmap_len;
    let new_strings = new_struct + struct_len;
    let new_total = new_strings + strings.len();

    let mut out = Vec::with_capacity(new_total);
    out.extend_from_slice(&blob[..HEADER_SIZE]);
    out.extend_from_slice(rsvmap);
    for run in keep {
        out.extend_from_slice(&structure[run]);
    }
    out.extend_from_slice(strings);
    let mut set = |offset: usize, value: usize| {
        out[offset..offset + 4].copy_from_slice(&(value as u32).to_be_bytes());
    };
    set(field::TOTALSIZE, new_total);
    set(field::OFF_DT_STRUCT, new_struct);
    set(field::OFF_DT_STRINGS, new_strings);
    set(field::OFF_MEM_RSVMAP, new_rsvmap);
    set(field::SIZE_DT_STRUCT, struct_len);
    Ok(Cow::Owned(out))
}

/// `blob[start..start + size]`, if it lies inside the blob.
fn block(blob: &[u8], start: usize, size: usize) -> Option<&[u8]> {
    blob.get(start..start.checked_add(size)?)
}

/// Reads the memory reservation block at `start`: (address, size) pairs of big-endian `u64`s up to
/// the all-zero terminator (devicetree specification v0.4 §5.3).
fn reservations(blob: &[u8], start: usize) -> Result<Vec<AddrRange<PhysAddr>>, DtError<'static>> {
    let mut entries = Vec::new();
    let mut offset = start;
    loop {
        let malformed = |why| DtError::Malformed { offset, why };
        let (Some(address), Some(size)) = (be_u64(blob, offset), be_u64(blob, offset + 8)) else {
            return Err(malformed(
                "memory reservation block has no terminating entry",
            ));
        };
        if address == 0 && size == 0 {
            return Ok(entries);
        }
        let range = AddrRange::<PhysAddr>::from_start_size(PhysAddr::new(address), size).ok_or(
            malformed("/memreserve/ entry wraps past the end of the address space"),
        )?;
        if size != 0 {
            entries.push(range);
        }
        offset += 16;
    }
}

/// Where the structure walk is inside the current node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Still among the node's properties.
    Properties,
    /// Past at least one child node: only more children, NOPs or the end may follow.
    Children,
    /// Past an `FDT_NOP`: only more NOPs or the node's end may follow.
    Nops,
}

/// A cursor over the structure block that checks every read.
struct StructureCheck<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
    /// Offset of the structure block in the blob, for error offsets.
    base: usize,
    /// Offset of the next token within the structure block.
    pos: usize,
}

impl StructureCheck<'_> {
    fn error(&self, at: usize, why: &'static str) -> DtError<'static> {
        DtError::Malformed {
            offset: self.base + at,
            why,
        }
    }

    /// The next big-endian word, advancing past it.
    fn word(&mut self) -> Result<u32, DtError<'static>> {
        let word = be_u32(self.structure, self.pos)
            .ok_or(self.error(self.pos, "structure block ends mid-node"))?;
        self.pos += 4;
        Ok(word)
    }

    /// Skips `len` bytes and the padding that realigns the cursor to 4 bytes.
    fn skip_padded(&mut self, len: usize, why: &'static str) -> Result<(), DtError<'static>> {
        let end = len
            .checked_add(3)
            .map(|n| n & !3)
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.structure.len())
            .ok_or(self.error(self.pos, why))?;
        self.pos = end;
        Ok(())
    }

    /// Checks a node's NUL-terminated UTF-8 unit name at the cursor and skips it; returns whether
    /// the name is empty.
    fn node_name(&mut self) -> Result<bool, DtError<'static>> {
        let at = self.pos;
        let rest = self.structure.get(at..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(self.error(at, "node name is not NUL-terminated"))?;
        if core::str::from_utf8(&rest[..len]).is_err() {
            return Err(self.error(at, "node name is not UTF-8"));
        }
        self.skip_padded(len + 1, "node name runs past the structure block")?;
        Ok(len == 0)
    }

    /// Checks an `FDT_PROP` body (length, name offset, value) at the cursor and skips it.
    fn property(&mut self) -> Result<(), DtError<'static>> {
        let at = self.pos;
        let len = self.word()? as usize;
        let name_offset = self.word()? as usize;
        let name = self
            .strings
            .get(name_offset..)
            .filter(|s| !s.is_empty())
            .ok_or(self.error(at, "property name offset is outside the strings block"))?;
        let name_len = name.iter().position(|&b| b == 0).ok_or(self.error(
            at,
            "property name is not NUL-terminated in the strings block",
        ))?;
        if core::str::from_utf8(&name[..name_len]).is_err() {
            return Err(self.error(at, "property name is not UTF-8"));
        }
        self.skip_padded(len, "property value runs past the structure block")
    }

    /// Skips any `FDT_NOP`s at the cursor.
    fn skip_nops(&mut self) {
        while be_u32(self.structure, self.pos) == Some(FDT_NOP) {
            self.pos += 4;
        }
    }

    /// Walks the whole structure block.
    fn run(mut self) -> Result<(), DtError<'static>> {
        self.skip_nops();
        let at = self.pos;
        if self.word()? != FDT_BEGIN_NODE {
            return Err(self.error(at, "structure block does not start with a node"));
        }
        if !self.node_name()? {
            return Err(self.error(at, "root node has a name"));
        }

        // Nodes open, counting the root.
        let mut depth = 1;
        let mut body = Body::Properties;
        while depth > 0 {
            let at = self.pos;
            match self.word()? {
                FDT_PROP if body == Body::Properties => self.property()?,
                FDT_PROP => return Err(self.error(at, "property after a child node or FDT_NOP")),
                FDT_BEGIN_NODE if body == Body::Nops => {
                    return Err(self.error(at, "FDT_NOP before a child node"))
                }
                FDT_BEGIN_NODE => {
                    if depth > MAX_DEPTH {
                        return Err(self.error(at, "nodes nested more than 16 deep"));
                    }
                    if self.node_name()? {
                        return Err(self.error(at, "node below the root has an empty name"));
                    }
                    depth += 1;
                    body = Body::Properties;
                }
                FDT_NOP => body = Body::Nops,
                FDT_END_NODE => {
                    depth -= 1;
                    body = Body::Children;
                }
                FDT_END => return Err(self.error(at, "FDT_END inside a node")),
                _ => return Err(self.error(at, "unknown structure block token")),
            }
        }

        self.skip_nops();
        let at = self.pos;
        if self.word()? != FDT_END {
            return Err(self.error(at, "no FDT_END after the root node"));
        }
        Ok(())
    }
}
