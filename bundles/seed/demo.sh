#!/bin/sh
# `make demo`: run the seed container once. The whole run happens in a throwaway network namespace
# (unshare --net), so veth0 and 169.254.1.1/30 never appear in the host's own namespace.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
pyoci=${PYOCI:-$repo/.venv/bin/pyoci}
tmp=$(mktemp -d /tmp/pyoci-seed.XXXXXX)
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT INT TERM
sh "$here/make-bundle.sh" "$tmp/bundle" --record-dir "$tmp/network" >/dev/null
rc=0
unshare --net -- "$pyoci" --root "$tmp/state" run --bundle "$tmp/bundle" "seed-$$" || rc=$?
exit $rc
