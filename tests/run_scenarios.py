#!/usr/bin/env python3
"""Runs Bulkhead's QEMU scenarios (tests/scenarios.toml) and checks what the console shows.

Usage: tests/run_scenarios.py [--list] [NAME ...]

For each scenario: build the image with scripts/build.sh and the scenario's VM config, boot it
in QEMU with a timeout, and check the console output. Prints `PASS: scenario NAME` or
`FAIL: scenario NAME (why)` followed by the console output it got, then a count line. The console
log of every scenario is kept in target/scenarios/NAME.log. Exit status 0 if all passed.
"""

import os
import re
import selectors
import subprocess
import sys
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_DIR = os.path.join(ROOT, "target", "scenarios")
SUMMARY = re.compile(r"^\[([a-z0-9_-]+)\] SUMMARY: (\d+) passed, (\d+) failed")


def load():
    with open(os.path.join(ROOT, "tests", "scenarios.toml"), "rb") as f:
        data = tomllib.load(f)
    defaults = data.get("defaults", {})
    scenarios = []
    for s in data["scenario"]:
        merged = dict(defaults)
        merged.update(s)
        scenarios.append(merged)
    return scenarios


def build(scenario):
    cmd = ["bash", os.path.join(ROOT, "scripts", "build.sh"), "--platform", scenario["platform"],
           "--config", os.path.join(ROOT, scenario["config"])]
    cmd += scenario.get("build_args", [])
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, proc.stdout, (lines[-1] if lines else "")


def missing_files(scenario):
    """The files in the scenario's `needs` (paths relative to the repository root) that do not
    exist; they are made by scripts/setup.sh, not committed (e.g. the Raspberry Pi 4 DTB)."""
    return [f for f in scenario.get("needs", []) if not os.path.exists(os.path.join(ROOT, f))]


def run_qemu(scenario, image):
    # QEMU runs in the repository root, so relative paths in qemu_args (-dtb target/...) work
    # from wherever the runner was started.
    cmd = ["qemu-system-aarch64", *scenario["machine"], "-nographic", "-nic", "none",
           "-kernel", image, *scenario.get("qemu_args", [])]
    start = time.monotonic()
    # `input`: bytes typed on the console, each after its marker appeared in the output.
    typing = [(step["after"].encode(), step["send"].encode().decode("unicode_escape").encode("latin-1"))
              for step in scenario.get("input", [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE if typing else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        output = b""
        timed_out = False
        until = scenario.get("until")
        until_count = scenario.get("until_count", 1)
        while True:
            remaining = scenario["timeout"] - (time.monotonic() - start)
            if remaining <= 0:
                timed_out = True
                break
            if not sel.select(timeout=min(remaining, 1.0)):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            output += chunk
            while typing and typing[0][0] in output:
                # Type slowly: the UART is polled, and its receive queue is small.
                for byte in typing.pop(0)[1]:
                    try:
                        proc.stdin.write(bytes([byte]))
                        proc.stdin.flush()
                    except BrokenPipeError:
                        typing.clear()
                        break
                    time.sleep(0.01)
            if until and output.count(until.encode()) >= until_count and output.endswith(b"\n"):
                break
    finally:
        # Whatever happened (a timeout, an exception in this runner), QEMU does not outlive it.
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = output.decode("utf-8", "replace").replace("\r\n", "\n")
    return text, timed_out and not until, time.monotonic() - start


def disk_sector(seed, s):
    """Sector `s` as guests/disk writes it with `disk.seed=seed` (see its module doc)."""
    b = bytearray((s * 31 + i + seed) & 0xff for i in range(512))
    b[0:8] = s.to_bytes(8, "little")
    b[8:16] = seed.to_bytes(8, "little")
    return bytes(b)


def make_disks(scenario):
    """`disks = [{ path, size_mb }]`: fresh zero-filled images before the run (`keep = true`:
    only if missing, for a scenario that checks persistence across runs)."""
    for disk in scenario.get("disks", []):
        path = os.path.join(ROOT, disk["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if disk.get("keep") and os.path.exists(path):
            continue
        with open(path, "wb") as f:
            f.truncate(disk["size_mb"] << 20)
        files = disk.get("ext4_files")
        if files is not None:
            # An ext4 filesystem made on the host, holding `files` (name -> text).
            import tempfile
            with tempfile.TemporaryDirectory() as tree:
                for name, text in files.items():
                    with open(os.path.join(tree, name), "w") as f:
                        f.write(text)
                subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, path], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def check_disks(scenario):
    """`disk_pattern = [{ path, start, sectors, seed }]`: the host image holds the guest's
    pattern there; `disk_zero = [{ path, start, sectors }]`: still zero (a neighbour untouched)."""
    problems = []
    for want in scenario.get("disk_pattern", []):
        with open(os.path.join(ROOT, want["path"]), "rb") as f:
            f.seek(want["start"] * 512)
            data = f.read(want["sectors"] * 512)
        bad = [s for s in range(want["sectors"]) if data[s * 512:(s + 1) * 512] != disk_sector(want["seed"], s)]
        if bad:
            problems.append(f"{want['path']}: {len(bad)} sector(s) from {want['start']} lack the seed-{want['seed']} pattern (first: guest sector {bad[0]})")
        else:
            print(f"    {want['path']}: sectors {want['start']}..{want['start'] + want['sectors']} hold the seed-{want['seed']} pattern")
    for want in scenario.get("ext4_file", []):
        # A file the guest wrote, read back from the host image with debugfs.
        got = subprocess.run(["debugfs", "-R", f"cat /{want['file']}", os.path.join(ROOT, want["path"])],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        if got != want["text"]:
            problems.append(f"{want['path']}: /{want['file']} holds {got!r}, not {want['text']!r}")
        else:
            print(f"    {want['path']}: /{want['file']} holds what the guest wrote")
    for want in scenario.get("disk_zero", []):
        with open(os.path.join(ROOT, want["path"]), "rb") as f:
            f.seek(want["start"] * 512)
            data = f.read(want["sectors"] * 512)
        if data.strip(b"\0"):
            problems.append(f"{want['path']}: sectors {want['start']}..{want['start'] + want['sectors']} were written")
        else:
            print(f"    {want['path']}: sectors {want['start']}..{want['start'] + want['sectors']} untouched")
    return problems


def check(scenario, text, timed_out):
    problems = []
    if timed_out:
        problems.append(f"timed out after {scenario['timeout']} s")
    for want in scenario.get("expect", []):
        if want not in text:
            problems.append(f"missing: {want!r}")
    for want, count in scenario.get("expect_count", {}).items():
        got = text.count(want)
        if got < count:
            problems.append(f"{want!r} appears {got} time(s), not {count}")
    for bad in scenario.get("forbid", []):
        for line in text.splitlines():
            if bad in line:
                problems.append(f"forbidden: {line.strip()!r}")
                break
    summaries = {}
    for line in text.splitlines():
        m = SUMMARY.match(line.strip())
        if m:
            summaries.setdefault(m.group(1), []).append((int(m.group(2)), int(m.group(3))))
    for vm, minimum in scenario.get("guests", {}).items():
        got = summaries.get(vm)
        if not got:
            problems.append(f"VM {vm} printed no SUMMARY line")
            continue
        passed, failed = got[-1]
        if failed or passed < minimum:
            problems.append(f"VM {vm}: SUMMARY {passed} passed, {failed} failed (want >= {minimum}, 0 failed)")
    problems += check_shares(scenario, text)
    return problems


METER_RESULT = re.compile(r"^\[([a-z0-9_-]+)\] meter-result vcpu=(\d+) ran_us=(\d+) total_us=(\d+)")


def check_shares(scenario, text):
    """`shares = { vms = [...], weights = [...], tolerance = t }`: the CPU time the meter guests
    of those VMs report (summed over their vCPUs) must be in the ratio of the weights, each VM's
    fraction of the total within `tolerance` (relative) of its expected fraction."""
    spec = scenario.get("shares")
    if not spec:
        return []
    ran = {}
    for line in text.splitlines():
        m = METER_RESULT.match(line.strip())
        if m:
            ran[m.group(1)] = ran.get(m.group(1), 0) + int(m.group(3))
    problems = []
    total = sum(ran.get(vm, 0) for vm in spec["vms"])
    weight_total = sum(spec["weights"])
    if total == 0:
        return ["no meter-result lines"]
    for vm, weight in zip(spec["vms"], spec["weights"]):
        got = ran.get(vm, 0) / total
        want = weight / weight_total
        line = f"share of {vm}: {got:.3f} (expected {want:.3f} +- {spec['tolerance'] * 100:.0f}%)"
        print(f"    {line}")
        if abs(got - want) > spec["tolerance"] * want:
            problems.append(line)
    return problems


def main(argv):
    scenarios = load()
    if "--list" in argv:
        for s in scenarios:
            print(f"{s['name']:24} {s.get('about', '')}")
        return 0
    wanted = [a for a in argv if not a.startswith("-")]
    if wanted:
        unknown = set(wanted) - {s["name"] for s in scenarios}
        if unknown:
            print(f"unknown scenario(s): {' '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        scenarios = [s for s in scenarios if s["name"] in wanted]
    os.makedirs(LOG_DIR, exist_ok=True)
    passed = failed = 0
    for s in scenarios:
        name = s["name"]
        print(f"--- scenario {name}: {s.get('about', '')}", flush=True)
        make_disks(s)
        status, build_out, image = build(s)
        if "build_fails" in s:
            problems = []
            if status == 0:
                problems.append("the build succeeded")
            for want in s["build_fails"]:
                if want not in build_out:
                    problems.append(f"build output lacks {want!r}")
            text, elapsed = build_out, 0.0
        elif status != 0:
            problems, text, elapsed = [f"build failed ({status})"], build_out, 0.0
        elif missing_files(s):
            missing = ", ".join(missing_files(s))
            problems = [f"missing {missing}: run scripts/setup.sh, which makes it"]
            text, elapsed = build_out, 0.0
        else:
            text, timed_out, elapsed = run_qemu(s, image)
            problems = check(s, text, timed_out) + check_disks(s)
        with open(os.path.join(LOG_DIR, f"{name}.log"), "w") as f:
            f.write(text)
        if problems:
            failed += 1
            print(f"FAIL: scenario {name} ({'; '.join(problems)})")
            print(f"--- console output of {name} (also in target/scenarios/{name}.log):")
            print("\n".join(text.splitlines()[-150:]))
            print(f"--- end of {name}")
        else:
            passed += 1
            print(f"PASS: scenario {name} ({elapsed:.1f} s)")
        sys.stdout.flush()
    print(f"scenarios: {passed} passed, {failed} failed")
    with open(os.path.join(ROOT, "target", "scenario-counts"), "w") as f:
        f.write(f"{passed} {failed}\n")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
