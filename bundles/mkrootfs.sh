#!/bin/sh
# Build a busybox rootfs from the host's static busybox: mkrootfs.sh DIR
# The rootfs is generated, never committed. Idempotent.
set -eu
dir=${1:?usage: mkrootfs.sh DIR}
bb=$(command -v busybox || true)
for c in /bin/busybox /usr/bin/busybox "$bb"; do [ -n "$c" ] && [ -x "$c" ] && bb=$c && break; done
[ -x "$bb" ] || { echo "mkrootfs: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
file "$bb" 2>/dev/null | grep -q 'dynamically linked' && { echo "mkrootfs: $bb is not static" >&2; exit 1; }
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
for d in bin sbin usr/bin usr/sbin etc proc sys dev tmp root home var/run run; do mkdir -p "$tmp/$d"; done
chmod 1777 "$tmp/tmp"
cp "$bb" "$tmp/bin/busybox"
chmod 0755 "$tmp/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$tmp/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/home:/bin/sh\n' > "$tmp/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n' > "$tmp/etc/group"
echo pyoci > "$tmp/etc/hostname"
rm -rf "$dir"
mv "$tmp" "$dir"
