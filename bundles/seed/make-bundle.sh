#!/bin/sh
# Write the seed bundle: make-bundle.sh DEST [--shell] [--record-dir DIR]
#   DEST/config.json from config.json.in, with absolute paths filled in:
#   @PYOCI@      the hook executable     ($PYOCI, default: this checkout's .venv/bin/pyoci)
#   @ROOTFS@     the busybox rootfs      ($ROOTFS, default: bundles/busybox/rootfs, built if missing)
#   @RECORD_DIR@ where `pyoci network` keeps its record (--record-dir, default /run/pyoci-network)
#   --shell      run /bin/sh on a terminal instead of the demo script (use with `pyoci run`)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dest=${1:?usage: make-bundle.sh DEST [--shell] [--record-dir DIR]}
shift
shell=0
record_dir=/run/pyoci-network
while [ $# -gt 0 ]; do
	case $1 in
	--shell) shell=1 ;;
	--record-dir) record_dir=${2:?--record-dir needs a value}; shift ;;
	*) echo "make-bundle.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
pyoci=${PYOCI:-$repo/.venv/bin/pyoci}
rootfs=${ROOTFS:-$repo/bundles/busybox/rootfs}
[ -x "$pyoci" ] || { echo "make-bundle.sh: $pyoci not found (run 'make setup' or set PYOCI)" >&2; exit 1; }
[ -x "$rootfs/bin/busybox" ] || sh "$repo/bundles/mkrootfs.sh" "$rootfs"
# Hook paths must be absolute (config.md#posix-platform-hooks), and the container's root user is uid 1000
# on the host: every directory down to the rootfs must be searchable by others.
case $pyoci in /*) ;; *) pyoci=$(cd "$(dirname "$pyoci")" && pwd)/$(basename "$pyoci") ;; esac
case $rootfs in /*) ;; *) rootfs=$(cd "$rootfs" && pwd) ;; esac
case $record_dir in /*) ;; *) echo "make-bundle.sh: --record-dir must be absolute" >&2; exit 2 ;; esac
python=$(dirname "$pyoci")/python
[ -x "$python" ] || python=python3
mkdir -p "$dest"
"$python" - "$here/config.json.in" "$dest/config.json" "$pyoci" "$rootfs" "$record_dir" "$shell" <<'PY'
import json, sys
src, out, pyoci, rootfs, record_dir, shell = sys.argv[1:]
text = open(src).read()
for key, value in (("@PYOCI@", pyoci), ("@ROOTFS@", rootfs), ("@RECORD_DIR@", record_dir)):
    text = text.replace(key, json.dumps(value)[1:-1])  # JSON-escaped, without the quotes
spec = json.loads(text)
if shell == "1":
    spec["process"]["args"] = ["/bin/sh"]
    spec["process"]["terminal"] = True
with open(out, "w") as f:
    json.dump(spec, f, indent="\t")
    f.write("\n")
PY
echo "$dest/config.json"
