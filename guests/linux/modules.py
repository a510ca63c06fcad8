#!/usr/bin/env python3
"""Copies kernel modules and everything they need into a directory, in load order.

    modules.py MODULE_DIR OUT_DIR NAME...

MODULE_DIR is an extracted /lib/modules/<version> (Debian's package ships no modules.dep: its
postinst runs depmod). For each NAME the module and, before it, what it needs are written to
OUT_DIR as uncompressed <name>.ko (busybox insmod reads neither .ko.xz nor .ko.zst), and
OUT_DIR/modules.load lists the file names in an order that insmod can follow line by line.

"What it needs" is read from each module's .modinfo section, as modprobe would: `depends=`
(which modpost writes from the same symbol resolution depmod does) and the `softdep=pre:`
modules (ext4 and jbd2 ask for "crypto-crc32c", an alias of crc32c_generic). Needs met by
built-in code (modules.builtin) are dropped. Only the Python standard library is used.
"""

import fnmatch
import gzip
import lzma
import os
import struct
import sys

SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def canonical(name):
    """Module names treat '-' and '_' alike; the kernel uses '_'."""
    return name.replace("-", "_")


def module_name(path):
    base = os.path.basename(path)
    for suffix in SUFFIXES:
        if base.endswith(suffix):
            return canonical(base[: -len(suffix)])
    return None


def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        sys.exit(f"modules.py: {path}: zstd modules need the zstd tool; not supported")
    return data


def modinfo(elf):
    """The key=value strings of an ELF64 little-endian module's .modinfo section."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names = sections[shstrndx][4]
    for sh_name, _type, _flags, _addr, offset, size, *_ in sections:
        start = names + sh_name
        if elf[start : elf.index(b"\0", start)] == b".modinfo":
            raw = elf[offset : offset + size].split(b"\0")
            return [item.decode("utf-8", "replace") for item in raw if b"=" in item]
    return []


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    module_dir, out_dir, wanted = sys.argv[1], sys.argv[2], [canonical(n) for n in sys.argv[3:]]

    files = {}
    for top, _dirs, names in os.walk(os.path.join(module_dir, "kernel")):
        for file in names:
            name = module_name(file)
            if name:
                files[name] = os.path.join(top, file)
    builtin = set()
    builtin_list = os.path.join(module_dir, "modules.builtin")
    if os.path.exists(builtin_list):
        with open(builtin_list) as f:
            builtin = {module_name(line.strip()) for line in f if line.strip()}

    cache = {}

    def load(name):
        if name not in cache:
            elf = read_module(files[name])
            cache[name] = (elf, modinfo(elf))
        return cache[name]

    def by_alias(alias):
        """The module providing `alias` (a name or an alias= pattern), None if built in."""
        alias = canonical(alias)
        if alias in files:
            return alias
        if alias in builtin:
            return None
        for name in sorted(files):
            if any(
                fnmatch.fnmatchcase(alias, canonical(item[len("alias=") :]))
                for item in load(name)[1]
                if item.startswith("alias=")
            ):
                return name
        sys.exit(f"modules.py: nothing in {module_dir} provides {alias!r}")

    order, visiting = [], set()

    def visit(name):
        if name in order:
            return
        if name in visiting:
            sys.exit(f"modules.py: dependency cycle through {name}")
        visiting.add(name)
        info = load(name)[1]
        needs = []
        for item in info:
            key, _, value = item.partition("=")
            if key == "depends":
                needs += [canonical(dep) for dep in value.split(",") if dep]
            elif key == "softdep":
                # "pre: a b post: c": only the pre modules must be there first.
                section = None
                for word in value.split():
                    if word.endswith(":"):
                        section = word[:-1]
                    elif section == "pre":
                        provider = by_alias(word)
                        if provider:
                            needs.append(provider)
        for dep in needs:
            if dep not in builtin:
                if dep not in files:
                    sys.exit(f"modules.py: {name} needs {dep}, which {module_dir} lacks")
                visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        if name in builtin:
            continue
        if name not in files:
            sys.exit(f"modules.py: no module {name} in {module_dir}")
        visit(name)

    os.makedirs(out_dir, exist_ok=True)
    for name in order:
        with open(os.path.join(out_dir, name + ".ko"), "wb") as f:
            f.write(load(name)[0])
    with open(os.path.join(out_dir, "modules.load"), "w") as f:
        f.writelines(name + ".ko\n" for name in order)


if __name__ == "__main__":
    main()
