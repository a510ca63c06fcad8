#!/usr/bin/env bash
# Measures what Bulkhead costs its guests: prints a table of figures with their native baseline
# and the issue's targets, and writes target/bench.json (docs/bench.md explains the method).
#
#   scripts/bench.sh
#
# It builds Bulkhead three times with scripts/build.sh (tests/configs/bench.toml: the bench
# guest alone on cpu0; tests/configs/bench-switch.toml: the same with two vCPUs on cpu0; the
# default demo, for the footprint), then boots, under QEMU TCG with `-icount shift=0,sleep=off`
# on a 1-CPU virt board, the bench guest in a Bulkhead VM, the bench guest natively (QEMU starts
# it at EL2; it drops to EL1 over a minimal EL2 of its own), and the two-vCPU VM; and boots the
# default demo (without icount) for the hypervisor's memory line. Every console log is kept in
# target/bench/. Performance is measured here, not in scripts/test.sh; the `bench` scenario only
# checks that the guest's paths still work.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    "") ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
esac
# shellcheck source=env.sh
. "$ROOT/scripts/env.sh"
cd "$ROOT"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"

# build CONFIG NAME: builds Bulkhead with CONFIG and keeps its image and ELF as $OUT/NAME.{img,elf}
# (the next build overwrites target/qemu-virt/).
build() {
    local image
    image="$(bash "$ROOT/scripts/build.sh" --config "$1" | tail -n 1)"
    cp "$image" "$OUT/$2.img"
    cp "$(dirname "$image")/bulkhead.elf" "$OUT/$2.elf"
}
build tests/configs/bench.toml bench
build tests/configs/bench-switch.toml switch
build platform/qemu-virt/vms.toml demo
cp target/guests/bench "$OUT/native.elf"

python3 - "$ROOT" "$OUT" <<'PYTHON'
"""Boots the images bench.sh built, reads the figures, prints the table, writes bench.json."""
import json
import os
import re
import selectors
import subprocess
import sys
import time
import tomllib

ROOT, OUT = sys.argv[1], sys.argv[2]
BOARD = ["-M", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a72", "-m", "1G"]
# 1 ns of QEMU's virtual clock per instruction, and no time jumps while the CPU works: the
# PMU's INST_RETIRED exists, and every count is exact and repeatable.
ICOUNT = ["-icount", "shift=0,sleep=off"]
TIMEOUT = 300
BENCH = re.compile(r"^(?:\[[a-z0-9_-]+\] )?BENCH (\S+)((?: \S+=\S+)*)\s*$")
SUMMARY = re.compile(r"SUMMARY: (\d+) passed, (\d+) failed")


def boot(name, args, until=None, timeout=TIMEOUT):
    """Runs QEMU with `args` until it exits (or prints `until`), keeps the log, returns it."""
    cmd = ["qemu-system-aarch64", *args, "-nographic", "-nic", "none"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    output = b""
    while time.monotonic() - start < timeout:
        if not sel.select(timeout=1.0):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        output += chunk
        if until and until.encode() in output and output.endswith(b"\n"):
            break
    else:
        print(f"bench: {name}: timed out after {timeout} s", file=sys.stderr)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    text = output.decode("utf-8", "replace").replace("\r\n", "\n")
    with open(os.path.join(OUT, f"{name}.log"), "w") as f:
        f.write(text)
    print(f"bench: {name}: {time.monotonic() - start:.1f} s, log in target/bench/{name}.log",
          file=sys.stderr)
    return text


def figures(name, text):
    """The BENCH lines of a run, by figure name; complains about failed checks."""
    found = {}
    for line in text.splitlines():
        m = BENCH.match(line.strip())
        if m:
            found[m.group(1)] = {k: (int(v) if v.isdigit() else v)
                                 for k, v in (kv.split("=", 1) for kv in m.group(2).split())}
    summaries = SUMMARY.findall(text)
    if not summaries or summaries[-1][1] != "0":
        print(f"bench: {name}: the guest did not finish cleanly (see target/bench/{name}.log)",
              file=sys.stderr)
    return found


def sections(elf):
    """Section sizes of an ELF, from `aarch64-linux-gnu-size -A`."""
    out = subprocess.run(["aarch64-linux-gnu-size", "-A", elf], check=True,
                         capture_output=True, text=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def embedded_image_bytes(config):
    """Bytes of the VM images a config compiles into .rodata (ELFs are flattened, as objcopy
    -O binary does)."""
    with open(config, "rb") as f:
        vms = tomllib.load(f).get("vm", [])
    total = 0
    for vm in vms:
        image = os.path.normpath(os.path.join(os.path.dirname(config), vm["image"]))
        with open(image, "rb") as f:
            is_elf = f.read(4) == b"\x7fELF"
        if is_elf:
            flat = os.path.join(OUT, "flat.bin")
            subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", image, flat], check=True)
            total += os.path.getsize(flat)
            os.remove(flat)
        else:
            total += os.path.getsize(image)
    return total


vm = figures("vm", boot("vm", [*BOARD, "-smp", "1", *ICOUNT, "-kernel", f"{OUT}/bench.img"]))
native = figures("native", boot("native", [*BOARD, "-smp", "1", *ICOUNT,
                                           "-kernel", f"{OUT}/native.elf"]))
switch = figures("switch", boot("switch", [*BOARD, "-smp", "1", *ICOUNT,
                                           "-kernel", f"{OUT}/switch.img"]))
demo = boot("demo", [*BOARD, "-smp", "2", "-kernel", f"{OUT}/demo.img"], until="hypervisor memory:",
            timeout=120)
memory = re.search(r"hypervisor memory: (\d+) bytes \(image (\d+), heap in use (\d+)\)", demo)
size = sections(f"{OUT}/demo.elf")
images = embedded_image_bytes(os.path.join(ROOT, "platform/qemu-virt/vms.toml"))

# name, unit, where it comes from
MEASURED = [
    ("null_hvc", "instructions", vm),
    ("psci_version", "instructions", vm),
    ("mmio_read_gicd", "instructions", vm),
    ("mmio_write_gicd", "instructions", vm),
    ("mmio_read_virtio", "instructions", None),
    ("gicd_isenabler_write", "instructions", vm),
    ("self_sgi_to_handler", "instructions", vm),
    ("self_sgi_to_return", "instructions", vm),
    ("vtimer_latency", "ns", vm),
    ("vcpu_switch", "instructions", switch),
    ("blk_read_4k", "instructions", None),
    ("blk_seq_64k", "KiB per million instructions", None),
    ("linux_boot_ratio", "ratio", None),
]
MISSING = {
    "mmio_read_virtio": "needs a virtio-mmio device in VMs (the virtio issue: not wired into src/vm yet)",
    "blk_read_4k": "needs a virtio-blk disk in VMs and a driver in the bench guest (the virtio issue)",
    "blk_seq_64k": "needs a virtio-blk disk in VMs and a driver in the bench guest (the virtio issue)",
    "linux_boot_ratio": "needs a Linux guest with an init marker (the Linux guest issue)",
}
NOTES = {
    "vtimer_latency": "CNTVCT_EL0 in the handler minus CNTV_CVAL_EL0, in ns (= instructions under "
                      "icount shift=0; 16 ns resolution: one 62.5 MHz tick)",
    "vcpu_switch": "half an SGI round trip between two vCPUs on one CPU; no native equivalent",
    "first_guest_instruction": "CNTPCT_EL0 at the guest's first instruction, in ns of the "
                               "virtual clock (= instructions since power-on under icount)",
    "rodata_bytes": f".rodata less the {images} bytes of VM images the demo config compiles in",
    "text_bytes": ".text of the default demo build, padded to 4 KiB by the linker script",
    "hyp_memory_bytes": "default demo: image (with its .bss, stacks and 256 KiB early heap) "
                        "+ heap in use after the VMs are built",
}
# The issue's targets: (bound, which field it bounds).
TARGETS = {
    "null_hvc": (100, "bulkhead_el2"),
    "mmio_read_gicd": (150, "bulkhead_el2"),
    "gicd_isenabler_write": (300, "bulkhead_el2"),
    "self_sgi_to_handler": (400, "bulkhead_el2"),
    "vtimer_latency": (150, "total"),
    "linux_boot_ratio": (1.10, "total"),
    "text_bytes": (128 * 1024, "total"),
}

rows = []
for name, unit, source in MEASURED:
    row = {"name": name, "bulkhead_el2": None, "total": None, "native": None, "unit": unit}
    if source is None:
        row["note"] = MISSING[name]
    elif name in source:
        got = source[name]
        row["total"] = got.get("total")
        row["bulkhead_el2"] = got.get("el2")
        row["repeatable"] = got.get("min") == got.get("max")
        if name in native:
            row["native"] = native[name].get("total")
    else:
        row["note"] = "not measured: see target/bench/ for the run's log"
    rows.append(row)

text, rodata = size.get(".text"), size.get(".rodata")
footprint = [
    ("text_bytes", text),
    ("rodata_bytes", rodata - images if rodata is not None else None),
    ("data_bytes", size.get(".data")),
    ("bss_bytes", size.get(".bss")),
    ("hyp_memory_bytes", int(memory.group(1)) if memory else None),
]
for name, value in footprint:
    rows.append({"name": name, "bulkhead_el2": None, "total": value, "native": None,
                 "unit": "bytes"})
first = {"name": "first_guest_instruction", "bulkhead_el2": None,
         "total": vm.get("first_guest_instruction", {}).get("total"),
         "native": native.get("first_guest_instruction", {}).get("total"),
         "unit": "instructions"}
rows.append(first)

for row in rows:
    name = row["name"]
    if name in NOTES and "note" not in row:
        row["note"] = NOTES[name]
    if name in TARGETS:
        bound, field = TARGETS[name]
        row["target"] = bound
        row["target_of"] = field
        if row[field] is not None:
            row["meets_target"] = row[field] <= bound

with open(os.path.join(ROOT, "target", "bench.json"), "w") as f:
    json.dump(rows, f, indent=2)
    f.write("\n")


def cell(value):
    return "-" if value is None else f"{value}"


def target_cell(row):
    if "target" not in row:
        return ""
    which = "EL2" if row["target_of"] == "bulkhead_el2" else "total"
    verdict = {True: " ok", False: " MISSED"}.get(row.get("meets_target"), "")
    return f"<= {row['target']} {which}{verdict}"


header = ("figure", "Bulkhead EL2", "total", "native", "unit", "target")
table = [header] + [(r["name"] + ("" if r.get("repeatable", True) else " ~"),
                     cell(r["bulkhead_el2"]), cell(r["total"]), cell(r["native"]), r["unit"],
                     target_cell(r)) for r in rows]
widths = [max(len(line[i]) for line in table) for i in range(len(header))]
print()
print("Bulkhead benchmarks: QEMU TCG -icount shift=0,sleep=off, cortex-a72, 1 vCPU, GICv3")
print("(EL2 = instructions Bulkhead executed; total = what the guest observed; native = the")
print(" same code on bare QEMU at EL1 over a minimal EL2; ~ = runs differed)")
for i, line in enumerate(table):
    print("  ".join(c.rjust(w) if 0 < k < 4 else c.ljust(w)
                    for k, (c, w) in enumerate(zip(line, widths))).rstrip())
    if i == 0:
        print("  ".join("-" * w for w in widths))
for row in rows:
    if row["total"] is None and "note" in row:
        print(f"{row['name']}: {row['note']}")
print("wrote target/bench.json")
PYTHON
