"""`pyoci network up|down`: a createRuntime / poststop hook that gives a container a veth pair.

    "hooks": {
      "createRuntime": [{"path": "/abs/venv/bin/pyoci", "args": ["pyoci", "network", "up",
                         "--veth-host", "veth0", "--host-addr", "169.254.1.1/30",
                         "--ifname", "veth1", "--addr", "169.254.1.2/30"]}],
      "poststop":      [{"path": "/abs/venv/bin/pyoci", "args": ["pyoci", "network", "down"]}]
    }

`up` reads the state JSON on stdin (id, pid, annotations), creates the pair with its peer directly in
/proc/<pid>/ns/net, sets addresses (IPv4 and IPv6), brings both ends up, optionally enslaves the host end to
a bridge, adds default routes inside and masquerades with nft (or iptables when iptables is the legacy
flavour; the only external tools pyoci ever runs). It records what it created in <record-dir>/<id>.json;
`down` removes exactly that and nothing else. Every option can also come from an annotation
`org.pyoci.network.<option>` (lists comma-separated); a command-line flag wins over the annotation.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pyoci.errors import ConfigError, PyociError
from pyoci.linux import net

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = "org.pyoci.network."
DEFAULT_RECORD_DIR = "/run/pyoci-network"
DEFAULT_IFNAME = "eth0"
NAT_BACKENDS = ("auto", "nft", "iptables")
# Hooks run with the config's env only (often none): look for nft/iptables in the usual places too.
_TOOL_PATH = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"

# option name → (kind, help); kind "list" options repeat on the command line and are comma lists in
# annotations.
OPTIONS: dict[str, tuple[str, str]] = {
    "veth-host": ("str", "host end name (default: 'pyo' + 12 hex digits of sha256(container id))"),
    "ifname": ("str", f"container end name (default: {DEFAULT_IFNAME})"),
    "host-addr": ("list", "address/prefix for the host end, IPv4 or IPv6 (repeatable)"),
    "addr": ("list", "address/prefix inside the container, IPv4 or IPv6 (repeatable)"),
    "gateway": ("list", ("default route inside, one per family; default: the host end's address of that "
                         "family when it is in the container's subnet; 'none' for no default route")),
    "bridge": ("str", "enslave the host end to this existing bridge (then put addresses on the bridge)"),
    "mtu": ("int", "MTU of both ends"),
    "nat": ("bool", "masquerade traffic from the container's subnets leaving through other interfaces"),
    "nat-backend": ("str", "auto (nft where iptables is the nft flavour, else iptables), nft or iptables"),
    "record-dir": ("str", f"where up records what it created for down (default {DEFAULT_RECORD_DIR})"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class NetworkPlan:
    cid: str
    veth: net.VethPlan
    nat: bool
    nat_backend: str
    record_dir: str


# ---------------------------------------------------------------------------------------------------------
# command line

def register(sub: Any) -> None:
    """Add `network` (with `up` and `down`) to the pyoci subcommand parsers."""
    p = sub.add_parser("network", help="veth/NAT hook: createRuntime 'network up', poststop 'network down'",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    _add_arguments(p)
    p.set_defaults(func=handler)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="network_action", metavar="{up,down}", required=True)
    for action, text in (("up", "createRuntime hook: create and configure the veth pair"),
                         ("down", "poststop hook: remove what 'up' created for this container")):
        ap = actions.add_parser(action, help=text)
        for name, (kind, help_) in OPTIONS.items():
            dest = name.replace("-", "_")
            if kind == "bool":
                ap.add_argument(f"--{name}", dest=dest, action=argparse.BooleanOptionalAction, default=None,
                                help=help_)
            elif kind == "list":
                ap.add_argument(f"--{name}", dest=dest, action="append", default=None, metavar="VALUE",
                                help=help_)
            else:
                ap.add_argument(f"--{name}", dest=dest, default=None, metavar="VALUE", help=help_)


def handler(args: argparse.Namespace) -> int:
    """Entry point of `pyoci network up|down`; the state JSON comes on stdin. Raises PyociError."""
    state = read_state(sys.stdin.read())
    opts = resolve_options(args, state.get("annotations") or {})
    if args.network_action == "up":
        up(state, plan_network(state["id"], opts))
    else:
        down(state["id"], str(opts.get("record-dir") or DEFAULT_RECORD_DIR))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pyoci.network up|down …` (same as `pyoci network …`, usable before cli wiring)."""
    p = argparse.ArgumentParser(prog="pyoci network")
    p.add_argument("--debug", action="store_true")
    _add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="pyoci network: %(levelname)s: %(message)s")
    try:
        return handler(args)
    except PyociError as exc:
        print(f"pyoci network {args.network_action}: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------------------
# options → plan (pure)

def read_state(text: str) -> dict[str, Any]:
    """Parse the hook's state JSON. Raises ConfigError."""
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"state on stdin: not JSON ({exc})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("id"), str) or not state["id"]:
        raise ConfigError("state on stdin: no container 'id' (is this running as an OCI hook?)")
    return state


def resolve_options(args: argparse.Namespace, annotations: Mapping[str, Any]) -> dict[str, Any]:
    """Merge annotations `org.pyoci.network.*` under command-line flags. Raises ConfigError."""
    unknown = [k for k in annotations if k.startswith(ANNOTATION_PREFIX)
               and k[len(ANNOTATION_PREFIX):] not in OPTIONS]
    if unknown:
        raise ConfigError(f"annotations[{unknown[0]!r}]: unknown option (known: {', '.join(OPTIONS)})")
    opts: dict[str, Any] = {}
    for name, (kind, _) in OPTIONS.items():
        value = getattr(args, name.replace("-", "_"), None)
        if value is not None:
            opts[name] = value
            continue
        raw = annotations.get(ANNOTATION_PREFIX + name)
        if raw is None:
            continue
        field = f"annotations[{ANNOTATION_PREFIX + name!r}]"
        if not isinstance(raw, str):
            raise ConfigError(f"{field}: must be a string")
        if kind == "list":
            opts[name] = [v.strip() for v in raw.split(",") if v.strip()]
        elif kind == "bool":
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ConfigError(f"{field}: {raw!r}: expected true or false")
            opts[name] = raw.lower() in ("true", "1", "yes")
        else:
            opts[name] = raw
    return opts


def default_veth_name(cid: str) -> str:
    return "pyo" + hashlib.sha256(cid.encode()).hexdigest()[:12]


def _interface(value: str, field: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if "/" not in value:
        raise ConfigError(f"{field}: {value!r}: invalid address (expected address/prefix, e.g. 169.254.1.2/30)")
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise ConfigError(f"{field}: {value!r}: invalid address ({exc})") from exc
    ip = iface.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        raise ConfigError(f"{field}: {value!r}: invalid address (multicast, unspecified or loopback)")
    if iface.version == 4 and iface.network.prefixlen < 31 and ip in (iface.network.network_address,
                                                                       iface.network.broadcast_address):
        raise ConfigError(f"{field}: {value!r}: invalid address (network or broadcast address of its subnet)")
    return iface


def _interfaces(values: Sequence[str], field: str) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    out = [_interface(v, field) for v in values]
    seen = set()
    for iface in out:
        if iface.ip in seen:
            raise ConfigError(f"{field}: {str(iface.ip)!r} given twice")
        seen.add(iface.ip)
    return out


def plan_network(cid: str, opts: Mapping[str, Any]) -> NetworkPlan:
    """Validate options into a NetworkPlan. Raises ConfigError naming the option."""
    host_name = net.check_ifname(opts.get("veth-host") or default_veth_name(cid), "--veth-host")
    peer_name = net.check_ifname(opts.get("ifname") or DEFAULT_IFNAME, "--ifname")
    host_addrs = _interfaces(opts.get("host-addr") or [], "--host-addr")
    addrs = _interfaces(opts.get("addr") or [], "--addr")
    clash = {a.ip for a in host_addrs} & {a.ip for a in addrs}
    if clash:
        raise ConfigError(f"--addr: {str(clash.pop())!r} is also a --host-addr")
    bridge = opts.get("bridge")
    if bridge is not None:
        net.check_ifname(bridge, "--bridge")
        if host_addrs:
            raise ConfigError("--host-addr: a bridge port takes no address; put it on the bridge "
                              f"{bridge!r} (and pass it as --gateway)")
    mtu = opts.get("mtu")
    if mtu is not None:
        try:
            mtu = int(mtu)
        except (TypeError, ValueError):
            raise ConfigError(f"--mtu: {mtu!r}: not an integer") from None
        if not 68 <= mtu <= 65535:
            raise ConfigError(f"--mtu: {mtu}: must be between 68 and 65535")
    gateways = _gateways(opts.get("gateway") or [], host_addrs, addrs)
    backend = opts.get("nat-backend") or "auto"
    if backend not in NAT_BACKENDS:
        raise ConfigError(f"--nat-backend: {backend!r}: expected one of {', '.join(NAT_BACKENDS)}")
    nat = bool(opts.get("nat"))
    if nat and not addrs:
        raise ConfigError("--nat: needs at least one --addr (the subnet to masquerade)")
    veth = net.VethPlan(host_name=host_name, peer_name=peer_name,
                        host_addrs=tuple(str(a) for a in host_addrs), addrs=tuple(str(a) for a in addrs),
                        gateways=tuple(gateways), bridge=bridge, mtu=mtu)
    return NetworkPlan(cid=cid, veth=veth, nat=nat, nat_backend=backend,
                       record_dir=str(opts.get("record-dir") or DEFAULT_RECORD_DIR))


def _gateways(values: Sequence[str], host_addrs: Sequence[Any], addrs: Sequence[Any]) -> list[str]:
    if [v.lower() for v in values] == ["none"]:
        return []
    families = {a.version for a in addrs}
    chosen: dict[int, str] = {}
    for v in values:
        try:
            gw = ipaddress.ip_address(v)
        except ValueError:
            raise ConfigError(f"--gateway: {v!r}: not an IP address (or 'none')") from None
        if gw.version in chosen:
            raise ConfigError(f"--gateway: {v!r}: one gateway per address family (already {chosen[gw.version]})")
        if gw.version not in families:
            raise ConfigError(f"--gateway: {v!r}: no IPv{gw.version} --addr to route from")
        if not any(a.version == gw.version and gw in a.network for a in addrs):
            raise ConfigError(f"--gateway: {v!r}: not in the subnet of any --addr")
        chosen[gw.version] = str(gw)
    for version in sorted(families - set(chosen)):  # default: the host end, when it is on-link
        for h in host_addrs:
            if h.version == version and any(a.version == version and h.ip in a.network for a in addrs):
                chosen[version] = str(h.ip)
                break
    return [chosen[v] for v in sorted(chosen)]


# ---------------------------------------------------------------------------------------------------------
# up / down

@contextlib.contextmanager
def _locked(record_dir: str) -> Iterator[None]:
    os.makedirs(record_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(record_dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _record_path(record_dir: str, cid: str) -> str:
    return os.path.join(record_dir, cid + ".json")


def up(state: Mapping[str, Any], plan: NetworkPlan) -> dict[str, Any]:
    """Create the pair for the container in `state`; all or nothing. Returns the record. Raises PyociError."""
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise ConfigError("state on stdin: no container 'pid' (run 'network up' as a createRuntime hook)")
    netns = f"/proc/{pid}/ns/net"
    if not os.path.exists(netns):
        raise PyociError(f"container {plan.cid!r}: process {pid} is gone")
    if net.same_netns(netns):
        raise ConfigError(f"container {plan.cid!r} shares the runtime's network namespace: add "
                          "{\"type\": \"network\"} to linux.namespaces")
    with _locked(plan.record_dir):
        path = _record_path(plan.record_dir, plan.cid)
        if os.path.exists(path):
            raise PyociError(f"container {plan.cid!r}: {path!r} exists: its network is already up "
                             "(run 'pyoci network down' with the same state first)")
        record: dict[str, Any] = {"id": plan.cid, "vethHost": plan.veth.host_name, "ifname": plan.veth.peer_name,
                                  "bridge": plan.veth.bridge, "nat": None, "forwarding": []}
        record["hostIfindex"] = net.create_veth(plan.veth, netns)
        try:
            if plan.nat:
                _nat_up(plan, record)
            _write_record(path, record)
        except BaseException:
            try:
                _undo(record, plan.record_dir)
            except Exception as exc:  # noqa: BLE001 - report the original failure, not the clean-up's
                log.warning("network: clean-up after a failed 'up' for %r: %s", plan.cid, exc)
            raise
    log.info("network: %s ↔ %s (%s) up for container %r", plan.veth.host_name, plan.veth.peer_name,
             ", ".join(plan.veth.addrs) or "no address", plan.cid)
    return record


def down(cid: str, record_dir: str) -> bool:
    """Remove what `up` created for container `cid`; nothing recorded → nothing to do. True if a record was found."""
    with _locked(record_dir):
        path = _record_path(record_dir, cid)
        try:
            with open(path) as f:
                record = json.load(f)
        except FileNotFoundError:
            log.info("network: nothing recorded for container %r in %r", cid, record_dir)
            return False
        except ValueError as exc:
            raise PyociError(f"container {cid!r}: {path!r} is not JSON: {exc}") from exc
        _undo(record, record_dir)
        os.unlink(path)  # last: if the clean-up failed, the record is still there for another 'down'
    return True


def _undo(record: Mapping[str, Any], record_dir: str) -> None:
    # The veth end usually vanished with the container's namespace (deleting one end deletes both);
    # the ifindex check keeps us from deleting a same-named link someone created since.
    if net.delete_link(record["vethHost"], record.get("hostIfindex")):
        log.info("network: deleted %s", record["vethHost"])
    if record.get("nat"):
        _nat_down(record["nat"])
    for version in record.get("forwarding") or []:
        others = _other_records(record_dir, record["id"])
        if not any(version in (other.get("forwarding") or []) for other in others):
            net.set_forwarding(version, False)
            log.info("network: IPv%d forwarding switched back off", version)


def _other_records(record_dir: str, cid: str) -> Iterator[dict[str, Any]]:
    for name in os.listdir(record_dir):
        if name.endswith(".json") and name != cid + ".json":
            with contextlib.suppress(OSError, ValueError), open(os.path.join(record_dir, name)) as f:
                yield json.load(f)


def _write_record(path: str, record: Mapping[str, Any]) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------
# NAT: the one place pyoci runs external tools

def _tool(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":" + _TOOL_PATH)


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PyociError(f"network: {' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        raise PyociError(f"network: {' '.join(argv)}: exit {done.returncode}: {msg[-1] if msg else ''}")
    return done.stdout


def choose_nat_backend(choice: str) -> tuple[str, str]:
    """(backend, executable): 'auto' = nft when iptables is the nft flavour or absent, else iptables."""
    nft, ipt = _tool("nft"), _tool("iptables")
    if choice == "auto":
        if ipt is not None and not (nft is not None and "nf_tables" in _run([ipt, "--version"])):
            choice = "iptables"
        else:
            choice = "nft"
    exe = nft if choice == "nft" else ipt
    if exe is None:
        raise PyociError(f"--nat: {choice!r} not found (install {'nftables' if choice == 'nft' else 'iptables'})")
    return choice, exe


def nft_table(cid: str) -> str:
    return "pyoci_" + hashlib.sha256(cid.encode()).hexdigest()[:12]


def nft_script(cid: str, nets: Sequence[str], out_if: str) -> str:
    """One inet table per container, so `down` is a single `nft delete table`."""
    rules = []
    for n in nets:
        fam = "ip6" if ipaddress.ip_network(n).version == 6 else "ip"
        rules.append(f'\t\t{fam} saddr {n} oifname != "{out_if}" masquerade comment "pyoci {cid}"\n')
    return (f"table inet {nft_table(cid)} {{\n\tchain postrouting {{\n"
            "\t\ttype nat hook postrouting priority srcnat; policy accept;\n" + "".join(rules) + "\t}\n}\n")


def iptables_rules(cid: str, nets: Sequence[str], out_if: str) -> list[list[str]]:
    """(tool, rule spec) pairs as argv tails for -A/-D; the comment makes them findable by hand."""
    return [["ip6tables" if ipaddress.ip_network(n).version == 6 else "iptables", "-t", "nat", "POSTROUTING",
             "-s", n, "!", "-o", out_if, "-m", "comment", "--comment", f"pyoci:{cid}", "-j", "MASQUERADE"]
            for n in nets]


def _nat_nets(plan: NetworkPlan) -> list[str]:
    nets: list[str] = []
    for a in plan.veth.addrs:
        n = str(ipaddress.ip_interface(a).network)
        if n not in nets:
            nets.append(n)
    return nets


def _nat_up(plan: NetworkPlan, record: dict[str, Any]) -> None:
    backend, exe = choose_nat_backend(plan.nat_backend)
    nets = _nat_nets(plan)
    out_if = plan.veth.bridge or plan.veth.host_name  # traffic between containers is not masqueraded
    if backend == "nft":
        table = nft_table(plan.cid)
        # `nft -f` merges into an existing table and down deletes the whole table: refuse a table we did
        # not create (a leftover of an earlier container with the same id).
        if subprocess.run([exe, "list", "table", "inet", table], capture_output=True, check=False).returncode == 0:
            raise PyociError(f"--nat: nft table 'inet {table}' already exists (left over? "
                             f"'nft delete table inet {table}' removes it)")
        _run([exe, "-f", "-"], stdin=nft_script(plan.cid, nets, out_if))  # atomic: all rules or none
        record["nat"] = {"backend": "nft", "exe": exe, "table": table}
    else:
        record["nat"] = {"backend": "iptables", "rules": []}
        for rule in iptables_rules(plan.cid, nets, out_if):
            tool = _tool(rule[0])
            if tool is None:
                raise PyociError(f"--nat: {rule[0]!r} not found")
            _run([tool, "-w", *rule[1:3], "-A", *rule[3:]])
            record["nat"]["rules"].append([tool, *rule[1:]])
    versions = sorted({ipaddress.ip_network(n).version for n in nets})
    if 4 in versions and not net.get_forwarding(4):
        net.set_forwarding(4, True)
        record["forwarding"].append(4)
        log.info("network: IPv4 forwarding switched on (off again when the last NAT'ed container goes)")
    if 6 in versions and not net.get_forwarding(6):
        # Not switched on for the user: net.ipv6.conf.all.forwarding=1 also stops router advertisements
        # from configuring the host's own interfaces.
        log.warning("network: IPv6 is masqueraded but net.ipv6.conf.all.forwarding is 0; "
                    "IPv6 traffic will not leave the host until it is enabled")


def _nat_down(nat: Mapping[str, Any]) -> None:
    try:
        if nat["backend"] == "nft":
            _run([nat["exe"], "delete", "table", "inet", nat["table"]])
        else:
            for rule in nat["rules"]:
                _run([rule[0], "-w", *rule[1:3], "-D", *rule[3:]])
    except PyociError as exc:
        if "No such file" in str(exc) or "does a matching rule exist" in str(exc) or \
                getattr(exc, "errno", None) == errno.ENOENT:
            log.info("network: NAT rules already gone: %s", exc)
            return
        raise


if __name__ == "__main__":
    sys.exit(main())
