#!/usr/bin/env python3
"""Where Bulkhead's EL2 instructions go on one exit path, by function (docs/bench.md).

    scripts/profile_exits.py TRACE ELF GUEST_PC [--skip N] [--lines SYMBOL]
    scripts/profile_exits.py TRACE ELF end:GUEST_PC ...

TRACE is a QEMU log of a bench guest run made with
`-icount shift=0,sleep=off -d exec,nochain,in_asm -D TRACE -dfilter 0x40000000..0x40400000`;
ELF is the bulkhead.elf of that build. With GUEST_PC (the guest instruction that traps, from
`aarch64-linux-gnu-objdump -d target/guests/bench`), every stretch of EL2 code between the
guest translation block holding it and the next guest block is one occurrence; with
end:GUEST_PC, every stretch that ends in the block holding GUEST_PC (an interrupt handler's
entry, for the timer). The instructions of each executed EL2 block (counted from its IN:
listing) are summed by the symbol that holds it (memcpy/memset are charged to their caller) and
averaged over the occurrences after the first N (default 4: warm-up). --lines SYMBOL also
breaks that symbol down by source line (addr2line).
"""
import argparse
import bisect
import collections
import re
import subprocess

# TB flags QEMU prints for code at EL1 (the guest); everything else in the filter range is EL2.
GUEST_FLAGS = 0x21
TRACE = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/([0-9a-f]+)/")


def symbols(elf):
    table = []
    out = subprocess.run(["aarch64-linux-gnu-nm", "-n", "-C", elf], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            table.append((int(parts[0], 16), parts[2]))
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("elf")
    ap.add_argument("guest_pc")
    ap.add_argument("--skip", type=int, default=4)
    ap.add_argument("--lines")
    args = ap.parse_args()
    end_mode = args.guest_pc.startswith("end:")
    gpc = int(args.guest_pc[4:] if end_mode else args.guest_pc, 16)
    table = symbols(args.elf)
    addrs = [a for a, _ in table]

    def sym(pc):
        i = bisect.bisect_right(addrs, pc) - 1
        return table[i][1] if i >= 0 else "?"

    sizes, events, pending = {}, [], None
    with open(args.trace) as f:
        for line in f:
            if line.startswith("IN:"):
                pending = 0
            elif pending is not None and line.startswith("0x"):
                pending += 1
            elif m := TRACE.match(line):
                key = (int(m.group(1), 16), int(m.group(2), 16))
                if pending is not None:
                    sizes[key], pending = pending, None
                events.append(key)

    occurrences, current, caller, per_pc = [], None, "?", collections.Counter()
    for pc, flags in events:
        if flags == GUEST_FLAGS:
            hit = pc <= gpc < pc + 4 * sizes.get((pc, flags), 1)
            if end_mode:
                if current is not None and hit and sum(current[0].values()):
                    occurrences.append(current)
                current = (collections.Counter(), collections.Counter())
            else:
                if current is not None:
                    occurrences.append(current)
                current = (collections.Counter(), collections.Counter()) if hit else None
            continue
        if current is None:
            continue
        name, count = sym(pc), sizes.get((pc, flags), 0)
        if name in ("memcpy", "memset"):
            name = f"{name} <- {caller}"
        else:
            caller = name
        current[0][name] += count
        if args.lines and args.lines in name:
            current[1][pc] += count
    occurrences = occurrences[args.skip:]
    n = max(len(occurrences), 1)
    print(f"{len(occurrences)} occurrences; EL2 instructions each: {sorted({sum(c.values()) for c, _ in occurrences})[:8]}")
    total, lines = collections.Counter(), collections.Counter()
    for by_symbol, by_pc in occurrences:
        total.update(by_symbol)
        lines.update(by_pc)
    for name, count in total.most_common(40):
        print(f"{count / n:8.1f}  {name[:140]}")
    if args.lines and lines:
        pcs = sorted(lines)
        out = subprocess.run(["aarch64-linux-gnu-addr2line", "-e", args.elf, *map(hex, pcs)],
                             capture_output=True, text=True).stdout.splitlines()
        print(f"\n{args.lines} by source line:")
        for pc, where in zip(pcs, out):
            print(f"{lines[pc] / n:8.1f}  {pc:#x}  {where}")


if __name__ == "__main__":
    main()
