#!/usr/bin/env bash
# Builds target/linux/initramfs.cpio.gz, the Linux guest's initramfs, from what fetch.sh left in
# target/linux/ (busybox, modules/) and guests/linux/init. Run it again after editing init.
# The archive is reproducible (root-owned, timestamps 0), and replaced only when its bytes
# change, so rebuilding does not make the hypervisor rebuild for nothing.
#
#   /init                 guests/linux/init (installs busybox's applet links, prints the markers)
#   /bin/busybox          busybox-static
#   /dev/console          the console node the kernel opens for init (before devtmpfs is mounted)
#   /lib/modules/*.ko     the modules init loads, and modules.load, their load order
#   /proc /sys /mnt ...   empty mount points
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$ROOT/target/linux"
for need in "$OUT/busybox" "$OUT/modules/modules.load"; do
    [ -f "$need" ] || { echo "build-initramfs: no $need: run guests/linux/fetch.sh" >&2; exit 1; }
done

entries=()
for dir in /bin /sbin /usr /usr/bin /usr/sbin /dev /proc /sys /mnt /tmp /root /lib /lib/modules; do
    entries+=("dir:$dir:755")
done
entries+=(
    "char:/dev/console:600:5:1"
    "file:/bin/busybox:755:$OUT/busybox"
    "file:/init:755:$HERE/init"
    "file:/lib/modules/modules.load:644:$OUT/modules/modules.load"
)
while read -r module; do
    entries+=("file:/lib/modules/$module:644:$OUT/modules/$module")
done < "$OUT/modules/modules.load"

python3 "$HERE/cpio.py" "$OUT/initramfs.cpio.gz.tmp" "${entries[@]}"
if cmp -s "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"; then
    rm "$OUT/initramfs.cpio.gz.tmp"
else
    mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
    echo "linux-guest: built target/linux/initramfs.cpio.gz ($(stat -c %s "$OUT/initramfs.cpio.gz") bytes)" >&2
fi
