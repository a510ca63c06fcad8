#!/usr/bin/env python3
"""Writes a gzip-compressed newc cpio archive, the format the kernel unpacks as an initramfs
(Documentation/driver-api/early-userspace/buffer-format.rst), without root and without the
cpio tool.

    cpio.py OUT.cpio.gz ENTRY...

Each ENTRY is one of
    dir:PATH:MODE              a directory
    file:PATH:MODE:SOURCE      a regular file with SOURCE's contents
    char:PATH:MODE:MAJOR:MINOR a character device node
with PATH absolute in the archive and MODE octal. Entries are written in the order given: the
kernel does not create missing parent directories, so list a directory before what is in it.
Owners are root and timestamps 0, so the same inputs give the same bytes.
"""

import gzip
import os
import stat
import sys

MAGIC = b"070701"


def pad4(data):
    return data + b"\0" * (-len(data) % 4)


def entry(ino, name, mode, data=b"", rdev=(0, 0)):
    name = name.lstrip("/").encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name), 0]
    header = MAGIC + b"".join(b"%08X" % f for f in fields)
    return pad4(header + name) + pad4(data)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, specs = sys.argv[1], sys.argv[2:]
    parts = []
    for ino, spec in enumerate(specs, start=1):
        kind, path, mode, *rest = spec.split(":")
        mode = int(mode, 8)
        if kind == "dir":
            parts.append(entry(ino, path, stat.S_IFDIR | mode))
        elif kind == "file":
            with open(rest[0], "rb") as f:
                parts.append(entry(ino, path, stat.S_IFREG | mode, f.read()))
        elif kind == "char":
            parts.append(entry(ino, path, stat.S_IFCHR | mode, rdev=(int(rest[0]), int(rest[1]))))
        else:
            sys.exit(f"cpio.py: unknown entry kind in {spec!r}")
    parts.append(entry(0, "TRAILER!!!", 0))
    archive = b"".join(parts)
    with open(out, "wb") as f:
        f.write(gzip.compress(archive, compresslevel=9, mtime=0))


if __name__ == "__main__":
    main()
