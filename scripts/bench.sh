#!/usr/bin/env bash
# Measures what Bulkhead costs its guests: prints a table of figures with their native baseline
# and the issue's targets, and writes target/bench.json (docs/bench.md explains the method).
#
#   scripts/bench.sh
#
# It builds Bulkhead with scripts/build.sh for tests/configs/bench.toml (the bench guest alone on
# cpu0), tests/configs/bench-switch.toml (the same with two vCPUs on cpu0), guests/linux/vm.toml
# and the default demo (for the footprint), then boots under QEMU TCG with
# `-icount shift=0,sleep=off` on a 1-CPU virt board: the bench guest in a Bulkhead VM, the bench
# guest natively (QEMU starts it at EL2; it drops to EL1 over a minimal EL2 of its own), each 3
# times with a fresh QEMU virtio-blk disk (the VM's is a partition of it that Bulkhead drives),
# and the two-vCPU VM; then, on the wall clock, Linux to its init marker under Bulkhead and
# directly on QEMU, and the default demo up to the hypervisor's memory line. Console logs: in
# target/bench/. Performance is measured here, not in scripts/test.sh (the `bench` scenario).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    "") ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
esac
# shellcheck source=env.sh
. "$ROOT/scripts/env.sh"
cd "$ROOT"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"

# build CONFIG NAME: builds Bulkhead with CONFIG and keeps its image and ELF as $OUT/NAME.{img,elf}
# (the next build overwrites target/qemu-virt/). A failed build leaves neither: its figures are
# then reported as not measured.
build() {
    local image
    rm -f "$OUT/$2.img" "$OUT/$2.elf"
    if image="$(bash "$ROOT/scripts/build.sh" --config "$1" | tail -n 1)"; then
        cp "$image" "$OUT/$2.img"
        cp "$(dirname "$image")/bulkhead.elf" "$OUT/$2.elf"
    else
        echo "bench: building with $1 failed: its figures are not measured" >&2
    fi
}
build tests/configs/bench.toml bench
[ -f "$OUT/bench.img" ] || { echo "bench: the bench guest's build failed" >&2; exit 1; }
build tests/configs/bench-switch.toml switch
build guests/linux/vm.toml linux
build platform/qemu-virt/vms.toml demo
cp target/guests/bench "$OUT/native.elf"

python3 - "$ROOT" "$OUT" <<'PYTHON'
"""Boots what bench.sh built, reads the figures, prints the table, writes target/bench.json."""
import json
import os
import re
import selectors
import statistics
import subprocess
import sys
import time
import tomllib

ROOT, OUT = sys.argv[1], sys.argv[2]
BOARD = ["-M", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a72"]
# One nanosecond of QEMU's virtual clock per instruction, and no jumps while a CPU works: the
# PMU's INST_RETIRED exists, and every count is exact and repeatable.
ICOUNT = ["-icount", "shift=0,sleep=off"]
TIMEOUT = 300
BENCH = re.compile(r"^(?:\[[a-z0-9_-]+\] )?BENCH (\S+)((?: \S+=\S+)*)\s*$")
SUMMARY = re.compile(r"SUMMARY: (\d+) passed, (\d+) failed")
LINUX_MARKER = "LINUX-INIT: reached init"
LINUX_PAIRS = 3
# Boots of the bench guest in a VM and natively: QEMU completes virtio-blk requests in its I/O
# thread and main loop, so a disk figure can differ from boot to boot; each is the median of the
# boots' medians.
BLK_BOOTS = 3
# The physical virtio-blk disk: tests/configs/bench.toml gives the VM 4 MiB of it from sector
# 2048; natively the guest has all of it. A fresh image of zeros for every boot, in target/bench/
# (tmpfs, cache=unsafe and aio=io_uring were tried: the medians did not move, docs/bench.md).
DISK_BYTES = 8 << 20
DISK_IMAGE = os.path.join(OUT, "disk.img")
DISK = ["-global", "virtio-mmio.force-legacy=false",
        "-drive", f"if=none,id=d0,file={DISK_IMAGE},format=raw,cache=unsafe",
        "-device", "virtio-blk-device,drive=d0"]
# The disk figures: their unit in the table, and the figure the guest prints for each (the
# issue's blk_seq_64k is the sequential 64 KiB read throughput, blk_seq_read_64k).
BLK_FIGURES = {
    "blk_read_4k": "blk_read_4k",
    "blk_seq_64k": "blk_seq_read_64k",
    "blk_seq_read_4k": "blk_seq_read_4k",
    "blk_seq_write_4k": "blk_seq_write_4k",
    "blk_seq_read_64k": "blk_seq_read_64k",
    "blk_seq_write_64k": "blk_seq_write_64k",
    "blk_rand_read_4k": "blk_rand_read_4k",
}
THROUGHPUT = "KiB per million instructions"


def log(message):
    print(f"bench: {message}", file=sys.stderr)


def boot(name, args, until=None, timeout=TIMEOUT):
    """Runs QEMU with `args` until it exits (or prints `until`); keeps the log. Returns the
    console text and the wall-clock seconds until `until` appeared (None if it did not)."""
    cmd = ["qemu-system-aarch64", *args, "-nographic", "-nic", "none"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    output, seen = b"", None
    while time.monotonic() - start < timeout:
        if not sel.select(timeout=1.0):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        output += chunk
        if until and seen is None and until.encode() in output:
            seen = time.monotonic() - start
        if seen is not None and b"\n" in output[output.index(until.encode()):]:
            break  # the rest of the marker's line is in
    else:
        log(f"{name}: timed out after {timeout} s")
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    text = output.decode("utf-8", "replace").replace("\r\n", "\n")
    with open(os.path.join(OUT, f"{name}.log"), "w") as f:
        f.write(text)
    log(f"{name}: {time.monotonic() - start:.1f} s, console in target/bench/{name}.log")
    return text, seen


def figures(name, text):
    """The BENCH lines of a run, by figure name; says so when the guest's checks failed."""
    found = {}
    for line in text.splitlines():
        m = BENCH.match(line.strip())
        if m:
            found[m.group(1)] = {k: int(v) if v.isdigit() else v
                                 for k, v in (kv.split("=", 1) for kv in m.group(2).split())}
    summaries = SUMMARY.findall(text)
    if not summaries or summaries[-1][1] != "0":
        log(f"{name}: the guest did not finish cleanly (see target/bench/{name}.log)")
    return found


def exists(name):
    return os.path.exists(os.path.join(OUT, name))


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


def bundled_bytes(config):
    """Bytes of the files a VM config compiles into the image's .rodata: each VM's image (an
    ELF flattened, as objcopy -O binary does), initrd and image disks."""
    with open(config, "rb") as f:
        vms = tomllib.load(f).get("vm", [])
    here = os.path.dirname(config)
    files = []
    for vm in vms:
        files.append(vm["image"])
        files += [vm["initrd"]] if "initrd" in vm else []
        files += [d["image"] for d in vm.get("disks", []) if d.get("source") == "image"]
    total = 0
    for file in files:
        path = os.path.normpath(os.path.join(here, file))
        with open(path, "rb") as f:
            is_elf = f.read(4) == b"\x7fELF"
        if is_elf:
            flat = os.path.join(OUT, "flat.bin")
            subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", path, flat], check=True)
            total += os.path.getsize(flat)
            os.remove(flat)
        else:
            total += os.path.getsize(path)
    return total


def fresh_disk():
    with open(DISK_IMAGE, "wb") as f:
        f.truncate(DISK_BYTES)


def bench_boots(name, kernel):
    """Boots the bench guest BLK_BOOTS times, each on a fresh disk: the figures of the first
    boot, the disk figures as the median of every boot's medians (min and max over all runs)."""
    runs = []
    for n in range(BLK_BOOTS):
        fresh_disk()
        label = name if n == 0 else f"{name}-{n}"
        runs.append(figures(label, boot(label, [*BOARD, "-smp", "1", "-m", "1G", *ICOUNT,
                                                "-kernel", kernel, *DISK])[0]))
    merged = dict(runs[0])
    for figure in set(BLK_FIGURES.values()):
        got = [r[figure] for r in runs if figure in r]
        if not got:
            continue
        merged[figure] = {
            "total": statistics.median_low([g["total"] for g in got]),
            "min": min(g["min"] for g in got),
            "max": max(g["max"] for g in got),
            "boots": len(got),
        }
        if all("el2" in g for g in got):
            merged[figure]["el2"] = statistics.median_low([g["el2"] for g in got])
    return merged


# --- the bench guest: in a VM, natively, and with two vCPUs on one CPU (all under icount) ----------
vm = bench_boots("vm", f"{OUT}/bench.img")
native = bench_boots("native", f"{OUT}/native.elf")
switch = {}
if exists("switch.img"):
    switch = figures("switch", boot("switch", [*BOARD, "-smp", "1", "-m", "1G", *ICOUNT,
                                               "-kernel", f"{OUT}/switch.img"])[0])

# --- Linux to its init marker, under Bulkhead and directly on QEMU, alternately (wall clock) ------
linux_config = os.path.join(ROOT, "guests/linux/vm.toml")
kernel = os.path.join(ROOT, "target/linux/Image")
initrd = os.path.join(ROOT, "target/linux/initramfs.cpio.gz")
linux = None
if exists("linux.img") and os.path.exists(kernel) and os.path.exists(initrd):
    with open(linux_config, "rb") as f:
        linux_vm = tomllib.load(f)["vm"][0]
    smp = str(len(linux_vm.get("cpus", [0])))
    under, direct = [], []
    for n in range(LINUX_PAIRS):
        _, seconds = boot(f"linux-bulkhead-{n}", [*BOARD, "-smp", smp, "-m", "1G",
                                                  "-kernel", f"{OUT}/linux.img"], until=LINUX_MARKER)
        under.append(seconds)
        _, seconds = boot(f"linux-native-{n}", [
            "-M", "virt,gic-version=3", "-cpu", "cortex-a72", "-smp", smp,
            "-m", linux_vm["memory"], "-kernel", kernel, "-initrd", initrd,
            "-append", linux_vm.get("bootargs", "")], until=LINUX_MARKER)
        direct.append(seconds)
    if None not in under and None not in direct:
        linux = (statistics.median(under), statistics.median(direct))

# --- the default demo: footprint, and the hypervisor's memory once its VMs are built -------------
demo_config = os.path.join(ROOT, "platform/qemu-virt/vms.toml")
memory, size, bundled = None, {}, 0
if exists("demo.img"):
    # The physical virtio-blk disk the demo's Linux takes a partition of (as scripts/run.sh).
    disk = os.path.join(OUT, "demo-disk.img")
    if not os.path.exists(disk):
        with open(disk, "wb") as f:
            f.truncate(32 << 20)
    text, _ = boot("demo", [*BOARD, "-smp", "2", "-m", "1G", "-kernel", f"{OUT}/demo.img",
                            "-global", "virtio-mmio.force-legacy=false",
                            "-drive", f"if=none,id=d0,file={disk},format=raw",
                            "-device", "virtio-blk-device,drive=d0"],
                   until="hypervisor memory:", timeout=120)
    memory = re.search(r"hypervisor memory: (\d+) bytes", text)
    size = sections(f"{OUT}/demo.elf")
    bundled = bundled_bytes(demo_config)

# --- the table ------------------------------------------------------------------------------------
MEASURED = [  # name, unit, the run it comes from
    ("null_hvc", "instructions", vm),
    ("psci_version", "instructions", vm),
    ("mmio_read_gicd", "instructions", vm),
    ("mmio_write_gicd", "instructions", vm),
    ("mmio_read_virtio", "instructions", vm),
    ("gicd_isenabler_write", "instructions", vm),
    ("self_sgi_to_handler", "instructions", vm),
    ("self_sgi_to_return", "instructions", vm),
    ("vtimer_latency", "ns", vm),
    ("vcpu_switch", "instructions", switch),
    ("blk_read_4k", "instructions", vm),
    ("blk_seq_64k", THROUGHPUT, vm),
    ("blk_seq_read_4k", THROUGHPUT, vm),
    ("blk_seq_write_4k", THROUGHPUT, vm),
    ("blk_seq_read_64k", THROUGHPUT, vm),
    ("blk_seq_write_64k", THROUGHPUT, vm),
    ("blk_rand_read_4k", THROUGHPUT, vm),
]
NOTES = {
    "vtimer_latency": "CNTVCT_EL0 in the handler minus CNTV_CVAL_EL0, in ns (= instructions under "
                      "icount shift=0; 16 ns resolution: one 62.5 MHz tick); EL2 counted from arming",
    "vcpu_switch": "half an SGI round trip between two vCPUs on one CPU; no native equivalent",
    "mmio_read_virtio": "MagicValue of the VM's disk (natively: QEMU virt's first transport)",
    "blk_read_4k": "one 4 KiB read through virtio-drivers, submit to acknowledged completion: in a "
                   "VM a partition of QEMU's virtio-blk that Bulkhead drives, natively QEMU's "
                   "virtio-blk (the guest waits in WFI, which retires nothing)",
    "blk_seq_64k": "issue 7's name for blk_seq_read_64k: sequential 64 KiB reads",
    "blk_seq_read_4k": "1 MiB in sequential 4 KiB reads",
    "blk_seq_write_4k": "1 MiB in sequential 4 KiB writes",
    "blk_seq_read_64k": "1 MiB in sequential 64 KiB reads",
    "blk_seq_write_64k": "1 MiB in sequential 64 KiB writes",
    "blk_rand_read_4k": "1 MiB in 4 KiB reads in a full-period pseudo-random order",
    "first_guest_instruction": "CNTPCT_EL0 at the bench guest's first instruction, in ns of the "
                               "virtual clock (= instructions since power-on under icount)",
    "linux_boot_ratio": "wall clock from QEMU start to 'LINUX-INIT: reached init', Bulkhead / "
                        f"direct, medians of {LINUX_PAIRS} alternating boots",
    "text_bytes": ".text of the default demo build (padded to 4 KiB by the linker script)",
    "rodata_bytes": f".rodata of the default demo build less the {bundled} bytes of VM images, "
                    "initrds and disk images compiled in",
    "hyp_memory_bytes": "default demo: the image (with its .bss, stacks and 256 KiB early heap, "
                        f"less the {bundled} bytes of VM files it bundles) + heap in use once "
                        "the VMs are built ('hypervisor memory:' log line)",
}
TARGETS = {  # the issue's: (bound, the field it bounds, "<=" or ">=")
    "null_hvc": (100, "bulkhead_el2", "<="),
    "mmio_read_gicd": (150, "bulkhead_el2", "<="),
    "gicd_isenabler_write": (300, "bulkhead_el2", "<="),
    "self_sgi_to_handler": (400, "bulkhead_el2", "<="),
    "vtimer_latency": (150, "total", "<="),
    "linux_boot_ratio": (1.10, "total", "<="),
    "text_bytes": (128 * 1024, "total", "<="),
    # Issue 4: throughput through Bulkhead at least 0.8 of the same driver on QEMU's virtio-blk.
    "blk_seq_64k": (0.8, "ratio", ">="),
    "blk_seq_read_64k": (0.8, "ratio", ">="),
}


def row(name, unit, total=None, el2=None, native_value=None, note=None):
    r = {"name": name, "bulkhead_el2": el2, "total": total, "native": native_value, "unit": unit}
    if note:
        r["note"] = note
    return r


rows = []
for name, unit, source in MEASURED:
    figure = BLK_FIGURES.get(name, name)
    if figure in source:
        got = source[figure]
        base = native.get(figure, {})
        if unit == THROUGHPUT:
            # The guest's el2 of a throughput is EL2 instructions per request: a note, not the
            # bulkhead_el2 column (instructions of one operation).
            r = row(name, unit, got.get("total"), None, base.get("total"))
            if "el2" in got:
                r["note"] = NOTES[name] + f"; Bulkhead EL2 {got['el2']} instructions per request"
            if got.get("total") and base.get("total"):
                r["ratio"] = round(got["total"] / base["total"], 3)
        else:
            r = row(name, unit, got.get("total"), got.get("el2"), base.get("total"))
        r["repeatable"] = got.get("min") == got.get("max") and (
            name not in BLK_FIGURES or base.get("min") == base.get("max"))
        rows.append(r)
    else:
        rows.append(row(name, unit, note="not measured: see the runs' logs in target/bench/"))
if linux:
    rows.append(row("linux_boot_ratio", "ratio", round(linux[0] / linux[1], 3),
                    note=NOTES["linux_boot_ratio"] + f" ({linux[0]:.2f} s / {linux[1]:.2f} s)"))
else:
    rows.append(row("linux_boot_ratio", "ratio",
                    note="not measured: needs target/linux/ (scripts/setup.sh runs "
                         "guests/linux/fetch.sh) and a Linux build; see target/bench/"))
rodata = size.get(".rodata")
for name, value in [
    ("text_bytes", size.get(".text")),
    ("rodata_bytes", rodata - bundled if rodata is not None else None),
    ("data_bytes", size.get(".data")),
    ("bss_bytes", size.get(".bss")),
    ("hyp_memory_bytes", int(memory.group(1)) - bundled if memory else None),
]:
    rows.append(row(name, "bytes", value,
                    note=None if value is not None else "not measured: the default demo's build "
                                                        "or boot failed (see target/bench/)"))
rows.append(row("first_guest_instruction", "instructions",
                vm.get("first_guest_instruction", {}).get("total"),
                native_value=native.get("first_guest_instruction", {}).get("total")))

for r in rows:
    if r["name"] in NOTES and "note" not in r:
        r["note"] = NOTES[r["name"]]
    if r["name"] in TARGETS:
        bound, field, op = TARGETS[r["name"]]
        r["target"], r["target_of"] = bound, field
        if op == ">=":
            r["target_at_least"] = True
        if r.get(field) is not None:
            r["meets_target"] = r[field] >= bound if op == ">=" else r[field] <= bound

with open(os.path.join(ROOT, "target", "bench.json"), "w") as f:
    json.dump(rows, f, indent=2)
    f.write("\n")


def cell(value):
    return "-" if value is None else f"{value}"


def target_cell(r):
    if "target" not in r:
        return ""
    which = {"bulkhead_el2": "EL2", "ratio": "ratio"}.get(r["target_of"], "total")
    verdict = {True: " ok", False: " MISSED"}.get(r.get("meets_target"), "")
    op = ">=" if r.get("target_at_least") else "<="
    return f"{op} {r['target']} {which}{verdict}"


header = ("figure", "Bulkhead EL2", "total", "native", "ratio", "unit", "target")
table = [header] + [(r["name"] + ("" if r.get("repeatable", True) else " ~"),
                     cell(r["bulkhead_el2"]), cell(r["total"]), cell(r["native"]),
                     "" if "ratio" not in r else f"{r['ratio']}", r["unit"],
                     target_cell(r)) for r in rows]
widths = [max(len(line[i]) for line in table) for i in range(len(header))]
print()
print("Bulkhead benchmarks: QEMU TCG -icount shift=0,sleep=off, cortex-a72, 1 vCPU, GICv3")
print("(Bulkhead EL2: instructions the hypervisor executed; total: what the guest observed;")
print(" native: the same guest code on bare QEMU over a minimal EL2; ratio: total / native, for")
print(" the disk throughputs; ~: the runs differed)")
for i, line in enumerate(table):
    print("  ".join(c.rjust(w) if 0 < k < 5 else c.ljust(w)
                    for k, (c, w) in enumerate(zip(line, widths))).rstrip())
    if i == 0:
        print("  ".join("-" * w for w in widths))
for r in rows:
    if r["total"] is None and "note" in r:
        print(f"{r['name']}: {r['note']}")
print("wrote target/bench.json")
PYTHON
