"""Network plumbing: loopback up (one ioctl), linux.netDevices move/return, veth pairs for `pyoci network`.

Only loopback_up() runs in the container; everything else runs in the runtime namespace and opens
netlink sockets *inside* the container's namespace with a short setns() round trip. pyroute2 is
imported inside the functions that need it (its import costs ~200 ms); loopback_up() never needs it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import ipaddress
import logging
import os
import re
import socket
import struct
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pyoci.errors import ConfigError, PyociError, SyscallError
from pyoci.linux import libc

if TYPE_CHECKING:  # pragma: no cover
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)

# linux/if.h, linux/sockios.h, linux/if_addr.h, linux/rtnetlink.h
IFNAMSIZ = 16
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFA_F_NODAD = 0x02
IFA_F_HOMEADDRESS = 0x10
IFA_F_PERMANENT = 0x80
IFA_F_MANAGETEMPADDR = 0x100
IFA_F_NOPREFIXROUTE = 0x200
IFA_F_MCAUTOJOIN = 0x400
RT_SCOPE_UNIVERSE = 0
# Address flags a user can set with `ip addr add`; the rest (tentative, dadfailed, …) is kernel state.
_SETTABLE_IFA_FLAGS = (IFA_F_NODAD | IFA_F_HOMEADDRESS | IFA_F_MANAGETEMPADDR | IFA_F_NOPREFIXROUTE
                       | IFA_F_MCAUTOJOIN)
_IFREQ = "16sH22x"  # struct ifreq: ifr_name[IFNAMSIZ] + ifr_flags (short) padded to 40 bytes


# ---------------------------------------------------------------------------------------------------------
# container side

def loopback_up() -> None:
    """Bring `lo` up in the current network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS, no netlink, no pyroute2).

    Raises SyscallError when the ioctl fails (e.g. EPERM without CAP_NET_ADMIN over the namespace).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            req = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
            flags = struct.unpack(_IFREQ, req)[1]
            if not flags & IFF_UP:
                fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))
        except OSError as exc:
            raise SyscallError("ioctl SIOCSIFFLAGS", exc.errno or errno.EIO, ifname="lo", flags="IFF_UP") from exc


# ---------------------------------------------------------------------------------------------------------
# pure checks and plans

_BAD_IFNAME = re.compile(r"[\s/:]")


def check_ifname(name: object, field: str, *, template_ok: bool = False) -> str:
    """Validate a Linux interface name (dev_valid_name rules); ``%d`` allowed once when template_ok.

    Raises ConfigError naming `field`.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{field}: {name!r}: interface name must be a non-empty string")
    why = None
    if len(name.encode()) >= IFNAMSIZ:
        why = f"longer than {IFNAMSIZ - 1} bytes"
    elif name in (".", ".."):
        why = "'.' and '..' are not allowed"
    elif _BAD_IFNAME.search(name):
        why = "whitespace, '/' and ':' are not allowed"
    elif "%" in name and not (template_ok and name.count("%") == 1 and "%d" in name):
        why = "'%' is only allowed once, as the '%d' template" if template_ok else "'%' is not allowed"
    if why:
        raise ConfigError(f"{field}: {name!r}: invalid interface name ({why})")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class NetDevMove:
    host_name: str  # name in the runtime namespace (the netDevices key)
    name: str  # requested name in the container, may be a "%d" template

    @property
    def is_template(self) -> bool:
        return "%d" in self.name


def plan_netdevices(netdevices: Mapping[str, Any]) -> tuple[NetDevMove, ...]:
    """linux.netDevices → moves, validated (names, duplicate target names). Raises ConfigError."""
    moves: list[NetDevMove] = []
    seen: dict[str, str] = {}
    for host_name, entry in netdevices.items():
        field = f"linux.netDevices[{host_name!r}]"
        check_ifname(host_name, field)
        if host_name == "lo":
            raise ConfigError(f"{field}: the loopback device cannot be moved (every network namespace has its own)")
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{field}: must be an object, got {type(entry).__name__}")
        name = entry.get("name") or host_name  # unset or "" keeps the host name (runc, crun, youki agree)
        check_ifname(name, f"{field}.name", template_ok=True)
        if "%d" not in name:
            if name in seen:
                raise ConfigError(f"{field}.name: {name!r} is also the name of linux.netDevices[{seen[name]!r}]")
            seen[name] = host_name
        moves.append(NetDevMove(host_name, name))
    return tuple(moves)


def _name_matches(template: str, name: str) -> bool:
    if "%d" not in template:
        return name == template
    head, tail = template.split("%d", 1)
    return re.fullmatch(re.escape(head) + r"\d+" + re.escape(tail), name) is not None


# ---------------------------------------------------------------------------------------------------------
# namespaces

def netns_inode(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def same_netns(path: str) -> bool:
    """True when `path` names the network namespace this thread is in."""
    return netns_inode(path) == netns_inode("/proc/thread-self/ns/net")


def _open_ns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError("open netns", exc.errno or errno.EIO, path=path) from exc


def _iproute(netns_fd: int | None = None) -> IPRoute:
    """An rtnetlink socket bound to the namespace `netns_fd` (None: the current one).

    A netlink socket belongs to the namespace it was created in, so a setns() round trip on this thread
    is enough; pyroute2's own netns support forks a helper process, which we neither need nor want.
    """
    from pyroute2 import IPRoute

    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its DEBUG dumps every message under --debug
    if netns_fd is None:
        return IPRoute()
    home = _open_ns("/proc/thread-self/ns/net")
    try:
        libc.setns(netns_fd, libc.CLONE_NEWNET, what="net (target)")
        try:
            return IPRoute()
        finally:
            libc.setns(home, libc.CLONE_NEWNET, what="net (back to the runtime namespace)")
    finally:
        os.close(home)


@contextlib.contextmanager
def _sockets(netns_path: str) -> Iterator[tuple[IPRoute, IPRoute, int, int]]:
    """(host socket, target socket, host ns fd, target ns fd), all closed on exit."""
    target_fd = _open_ns(netns_path)
    host_fd = _open_ns("/proc/thread-self/ns/net")
    host = target = None
    try:
        host, target = _iproute(), _iproute(target_fd)
        yield host, target, host_fd, target_fd
    finally:
        for ipr in (host, target):
            if ipr is not None:
                ipr.close()
        os.close(host_fd)
        os.close(target_fd)


def pin_netns(netns_path: str, dest: str) -> None:
    """Keep the network namespace at `netns_path` alive after its processes exit: bind-mount it on `dest`.

    Needed to give linux.netDevices back on delete: when the last process of a namespace exits, the
    kernel destroys virtual devices and sends physical ones to the *initial* namespace without their
    addresses (network_namespaces(7)).
    """
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    try:
        libc.mount(netns_path, dest, None, libc.MS_BIND)
    except BaseException:
        os.unlink(dest)
        raise


def unpin_netns(dest: str) -> None:
    """Undo pin_netns(); missing `dest` is fine (idempotent delete)."""
    if not os.path.lexists(dest):
        return
    try:
        libc.umount2(dest, libc.MNT_DETACH | libc.UMOUNT_NOFOLLOW)
    except SyscallError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point any more
            raise
    os.unlink(dest)


# ---------------------------------------------------------------------------------------------------------
# netlink helpers

def _nl_error(exc: Exception, op: str, **args: object) -> PyociError:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return SyscallError(op, code, **args)
    return PyociError(f"{op} {' '.join(f'{k}={v}' for k, v in args.items() if v is not None)}: {exc}")


def _links(ipr: IPRoute) -> dict[str, Any]:
    return {msg.get_attr("IFLA_IFNAME"): msg for msg in ipr.link("dump")}


def _link_kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _kept_addresses(ipr: IPRoute, index: int) -> list[dict[str, Any]]:
    """Permanent, global-scope addresses of a link (what config-linux.md#network-devices says to keep)."""
    kept = []
    for msg in ipr.addr("dump", index=index):
        flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
        if msg["scope"] != RT_SCOPE_UNIVERSE or not flags & IFA_F_PERMANENT:
            continue
        entry: dict[str, Any] = {"family": msg["family"], "address": msg.get_attr("IFA_ADDRESS"),
                                 "prefixlen": msg["prefixlen"], "flags": flags & _SETTABLE_IFA_FLAGS}
        for key, nla in (("local", "IFA_LOCAL"), ("broadcast", "IFA_BROADCAST"), ("label", "IFA_LABEL")):
            if msg.get_attr(nla) is not None:
                entry[key] = msg.get_attr(nla)
        kept.append(entry)
    return kept


def _add_addresses(ipr: IPRoute, index: int, ifname: str, addrs: list[dict[str, Any]],
                   old_name: str | None = None) -> None:
    for a in addrs:
        kw: dict[str, Any] = {k: a[k] for k in ("address", "prefixlen", "local", "broadcast") if k in a}
        if a.get("flags"):
            kw["flags"] = a["flags"]
        label = a.get("label")
        if label is not None and old_name is not None and label.startswith(old_name):
            label = ifname + label[len(old_name):]  # a label must start with the device name
        if label is not None and len(label.encode()) < IFNAMSIZ and label.startswith(ifname):
            kw["label"] = label
        try:
            ipr.addr("add", index=index, family=a["family"], **kw)
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                continue
            raise _nl_error(exc, "netlink RTM_NEWADDR", dev=ifname,
                            addr=f"{a['address']}/{a['prefixlen']}") from exc


def _set_state(ipr: IPRoute, index: int, ifname: str, up: bool) -> None:
    try:
        ipr.link("set", index=index, state="up" if up else "down")
    except Exception as exc:
        raise _nl_error(exc, "netlink RTM_NEWLINK", dev=ifname, state="up" if up else "down") from exc


# ---------------------------------------------------------------------------------------------------------
# linux.netDevices

def move_netdevices(netdevices: Mapping[str, Any], netns_path: str,
                    pin_dir: str | None = None) -> list[dict[str, Any]]:
    """Move linux.netDevices into the namespace at `netns_path`, renamed, up, with their addresses.

    Runs in the runtime namespace (createRuntime point). All or nothing: on failure the devices moved so
    far go back. With `pin_dir` (the container's state dir; pass it only for a namespace pyoci created),
    the namespace is pinned at <pin_dir>/netns so return_netdevices() can still reach it after the
    container exited. Returns a JSON-able record for return_netdevices().
    Raises ConfigError (missing / unmovable device, name clash) or SyscallError.
    """
    moves = plan_netdevices(netdevices)
    if not moves:
        return []
    if same_netns(netns_path):
        raise ConfigError("linux.netDevices: the container has no network namespace of its own "
                          "(add a 'network' entry without 'path' to linux.namespaces)")
    record: list[dict[str, Any]] = []
    pin = os.path.join(pin_dir, "netns") if pin_dir else None
    with _sockets(netns_path) as (host, target, host_fd, target_fd):
        host_links, target_links = _links(host), _links(target)
        for mv in moves:  # check everything before moving anything
            _check_movable(mv, host_links, target_links)
        if pin:
            pin_netns(netns_path, pin)
        try:
            for mv in moves:
                _move_one(mv, host, target, host_links[mv.host_name], target_fd, record)
        except BaseException:
            _return_all(record, host, target, host_fd)
            if pin:
                unpin_netns(pin)
            raise
    for entry in record:
        entry["pin"] = pin
    return record


def _check_movable(mv: NetDevMove, host_links: dict[str, Any], target_links: dict[str, Any]) -> None:
    field = f"linux.netDevices[{mv.host_name!r}]"
    link = host_links.get(mv.host_name)
    if link is None:
        raise ConfigError(f"{field}: no network device {mv.host_name!r} in the runtime's network namespace")
    if link["flags"] & IFF_LOOPBACK:
        raise ConfigError(f"{field}: {mv.host_name!r} is a loopback device and cannot be moved")
    # A netns-local device (NETIF_F_NETNS_LOCAL / dev->netns_local since 6.12) is reported by the move
    # itself with EINVAL; there is no stable read-only query for it, so that error is translated below.
    if not mv.is_template and mv.name in target_links:
        raise ConfigError(f"{field}.name: {mv.name!r} already exists in the container's network namespace "
                          "(use a '%d' template to let the kernel pick a free name)")


def _move_one(mv: NetDevMove, host: IPRoute, target: IPRoute, link: Any, target_fd: int,
              record: list[dict[str, Any]]) -> None:
    index = link["index"]
    entry: dict[str, Any] = {
        "hostName": mv.host_name, "name": mv.name, "ifindex": None, "hostIfindex": index,
        "mac": link.get_attr("IFLA_ADDRESS"), "wasUp": bool(link["flags"] & IFF_UP),
        "addresses": _kept_addresses(host, index),
    }
    before = {m["index"] for m in target.link("dump")}
    _set_state(host, index, mv.host_name, False)
    try:
        # One RTM_NEWLINK with IFLA_NET_NS_FD + IFLA_IFNAME: move and rename together, so a host name
        # that exists in the container never blocks the move (the kernel uses IFLA_IFNAME as pattern).
        host.link("set", index=index, net_ns_fd=target_fd, ifname=mv.name)
    except Exception as exc:
        if entry["wasUp"]:
            with contextlib.suppress(Exception):
                _set_state(host, index, mv.host_name, True)
        if getattr(exc, "code", None) == errno.EINVAL:  # e.g. "The interface netns is immutable" (bridge)
            why = exc.args[1] if len(exc.args) > 1 and exc.args[1] else "netns-local device, e.g. a bridge"
            raise ConfigError(f"linux.netDevices[{mv.host_name!r}]: cannot be moved to another network "
                              f"namespace ({why}): [Errno 22] EINVAL") from exc
        raise _nl_error(exc, "netlink RTM_NEWLINK", dev=mv.host_name, netns="container", ifname=mv.name) from exc
    moved = [m for m in target.link("dump") if m["index"] not in before]
    if len(moved) != 1:
        raise PyociError(f"linux.netDevices[{mv.host_name!r}]: moved, but not found in the container's namespace")
    entry["ifindex"], entry["name"] = moved[0]["index"], moved[0].get_attr("IFLA_IFNAME")
    record.append(entry)  # from here on a failure must give it back too
    if not _name_matches(mv.name, entry["name"]):
        raise PyociError(f"linux.netDevices[{mv.host_name!r}].name: the kernel named it {entry['name']!r}, "
                         f"not {mv.name!r}")
    # The kernel drops every address on a namespace change (config-linux.md: MUST keep the permanent
    # global ones); then the device MUST be set up.
    _add_addresses(target, entry["ifindex"], entry["name"], entry["addresses"], old_name=mv.host_name)
    _set_state(target, entry["ifindex"], entry["name"], True)
    log.debug("netDevices: %s → %s (ifindex %d) with %d address(es)", mv.host_name, entry["name"],
              entry["ifindex"], len(entry["addresses"]))


# Spec clause (config-linux.md#network-devices, runtime-spec 1.3): the device's life follows its network
# namespace and the runtime MUST NOT move it back. pyoci knowingly departs from that, but ONLY for a namespace
# it created itself (move_netdevices(pin_dir=…) pins it so it outlives the container): that namespace dies
# because of *our* delete, and letting the kernel reap it destroys a virtual device, or drops a physical one
# into the *initial* namespace (not the runtime's) without its addresses, possibly renamed "devN" — every
# create/delete cycle would lose host configuration, and a second create of the same bundle would fail.
# A namespace joined by `path` belongs to someone else: no pin, and the caller does not return its devices.
def return_netdevices(record: list[dict[str, Any]], netns_path: str | None) -> None:
    """Give linux.netDevices back to the runtime namespace with their host names, addresses and up state.

    The namespace is reached through `netns_path` if it still exists, else through the pin made by
    move_netdevices(pin_dir=…), which is then removed. Without either (namespace already gone): look for
    devices the kernel returned to this namespace (same ifindex and MAC) and restore their name and
    addresses; virtual ones are gone, which is logged.
    Best effort: problems are logged as warnings, never raised (it runs on delete).
    """
    if not record:
        return
    pins = sorted({e["pin"] for e in record if e.get("pin")})
    try:
        for path in [netns_path, *pins]:
            if path is None or not os.path.exists(path):
                continue
            try:
                with _sockets(path) as (host, target, host_fd, _):
                    _return_all(record, host, target, host_fd)
                return
            except PyociError as exc:
                log.warning("netDevices: cannot open the container's network namespace %r: %s", path, exc)
        host = _iproute()
        try:
            for entry in record:
                _adopt_returned(host, entry)
        finally:
            host.close()
    finally:
        for pin in pins:
            try:
                unpin_netns(pin)
            except (OSError, PyociError) as exc:
                log.warning("netDevices: cannot remove the namespace pin %r: %s", pin, exc)


def _return_all(record: list[dict[str, Any]], host: IPRoute, target: IPRoute, host_fd: int) -> None:
    for entry in reversed(record):
        try:
            _return_one(entry, host, target, host_fd)
        except Exception as exc:  # noqa: BLE001 - keep going: give back as much as possible
            log.warning("netDevices: could not give %r back to the runtime namespace: %s", entry["hostName"], exc)


def _return_one(entry: dict[str, Any], host: IPRoute, target: IPRoute, host_fd: int) -> None:
    index = entry["ifindex"]
    found = [m for m in target.link("dump") if m["index"] == index]
    if not found:
        log.warning("netDevices: %r (%r in the container) is no longer in the container's namespace",
                    entry["hostName"], entry["name"])
        return
    current = found[0].get_attr("IFLA_IFNAME")
    before = {m["index"] for m in host.link("dump")}
    _set_state(target, index, current, False)  # down first: no traffic or address clash during the move
    try:
        target.link("set", index=index, net_ns_fd=host_fd, ifname=entry["hostName"])
    except Exception as exc:
        if getattr(exc, "code", None) != errno.EEXIST:
            raise _nl_error(exc, "netlink RTM_NEWLINK", dev=current, netns="runtime") from exc
        log.warning("netDevices: %r exists again in the runtime namespace; giving the device back as dev%%d",
                    entry["hostName"])
        target.link("set", index=index, net_ns_fd=host_fd, ifname="dev%d")
    back = [m for m in host.link("dump") if m["index"] not in before]
    if len(back) != 1:
        raise PyociError(f"{entry['hostName']!r} left the container but is not in the runtime namespace")
    _restore_on_host(host, back[0]["index"], back[0].get_attr("IFLA_IFNAME"), entry)


def _restore_on_host(host: IPRoute, index: int, name: str, entry: dict[str, Any]) -> None:
    _add_addresses(host, index, name, entry["addresses"], old_name=entry["hostName"])
    if entry.get("wasUp"):
        _set_state(host, index, name, True)
    log.debug("netDevices: %s is back as %s (ifindex %d)", entry["hostName"], name, index)


def _adopt_returned(host: IPRoute, entry: dict[str, Any]) -> None:
    """After the namespace died: find the device the kernel sent back (same ifindex+MAC) and restore it."""
    for msg in host.link("dump"):
        if msg["index"] in (entry["ifindex"], entry["hostIfindex"]) and msg.get_attr("IFLA_ADDRESS") == entry["mac"]:
            name = msg.get_attr("IFLA_IFNAME")
            if name != entry["hostName"] and _index(host, entry["hostName"]) is None:
                try:
                    host.link("set", index=msg["index"], ifname=entry["hostName"])
                    name = entry["hostName"]
                except Exception as exc:  # noqa: BLE001 - pyroute2 raises more than NetlinkError
                    log.warning("netDevices: cannot rename %r back to %r: %s", name, entry["hostName"], exc)
            _restore_on_host(host, msg["index"], name, entry)
            return
    log.warning("netDevices: %r was destroyed with the container's network namespace (virtual device) "
                "or returned to the initial namespace", entry["hostName"])


# ---------------------------------------------------------------------------------------------------------
# veth pair for `pyoci network`

@dataclasses.dataclass(frozen=True, slots=True)
class VethPlan:
    host_name: str
    peer_name: str  # name inside the container
    host_addrs: tuple[str, ...] = ()  # interface CIDRs ("169.254.1.1/30", "fd00::1/64")
    addrs: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()  # default route(s) inside, one per family
    bridge: str | None = None
    mtu: int | None = None


def _cidr_kw(cidr: str) -> dict[str, Any]:
    iface = ipaddress.ip_interface(cidr)
    kw: dict[str, Any] = {"address": str(iface.ip), "prefixlen": iface.network.prefixlen}
    if iface.version == 6:
        kw["family"] = socket.AF_INET6
        kw["flags"] = IFA_F_NODAD  # a point-to-point veth needs no duplicate detection; usable at once
    else:
        kw["family"] = socket.AF_INET
        if iface.network.prefixlen < 31:
            kw["broadcast"] = str(iface.network.broadcast_address)
    return kw


def create_veth(plan: VethPlan, netns_path: str) -> int:
    """Create the pair with its peer directly in the container namespace, addresses, up, routes.

    Returns the host end's ifindex. On failure nothing is left (the host end is deleted, which
    deletes the peer). Raises ConfigError (name in use, missing bridge) or SyscallError.
    """
    with _sockets(netns_path) as (host, target, _, target_fd):
        if _index(host, plan.host_name) is not None:
            raise ConfigError(f"--veth-host: {plan.host_name!r} already exists in the runtime network namespace")
        if _index(target, plan.peer_name) is not None:
            raise ConfigError(f"--ifname: {plan.peer_name!r} already exists in the container's network namespace")
        bridge_index = None
        if plan.bridge is not None:
            br = _links(host).get(plan.bridge)
            if br is None or _link_kind(br) != "bridge":
                raise ConfigError(f"--bridge: {plan.bridge!r} is not a bridge in the runtime network namespace")
            bridge_index = br["index"]
        extra = {"mtu": plan.mtu} if plan.mtu else {}
        try:
            host.link("add", ifname=plan.host_name, kind="veth",
                      peer={"ifname": plan.peer_name, "net_ns_fd": target_fd, **extra}, **extra)
        except Exception as exc:
            raise _nl_error(exc, "netlink RTM_NEWLINK", kind="veth", dev=plan.host_name, peer=plan.peer_name) from exc
        index = _index(host, plan.host_name)
        assert index is not None
        try:
            _configure_veth(plan, host, target, index, bridge_index)
        except BaseException:
            with contextlib.suppress(Exception):
                host.link("del", index=index)
            raise
        return index


def _configure_veth(plan: VethPlan, host: IPRoute, target: IPRoute, index: int,
                    bridge_index: int | None) -> None:
    peer = _index(target, plan.peer_name)
    if peer is None:
        raise PyociError(f"veth peer {plan.peer_name!r} did not appear in the container's namespace")
    for cidr in plan.host_addrs:
        _addr_add(host, index, plan.host_name, cidr)
    if bridge_index is not None:
        try:
            host.link("set", index=index, master=bridge_index)
        except Exception as exc:
            raise _nl_error(exc, "netlink RTM_NEWLINK", dev=plan.host_name, master=plan.bridge) from exc
    _set_state(host, index, plan.host_name, True)
    for cidr in plan.addrs:
        _addr_add(target, peer, plan.peer_name, cidr)
    _set_state(target, peer, plan.peer_name, True)
    for gw in plan.gateways:
        family = socket.AF_INET6 if ipaddress.ip_address(gw).version == 6 else socket.AF_INET
        try:
            target.route("add", dst="default", gateway=gw, oif=peer, family=family)
        except Exception as exc:
            raise _nl_error(exc, "netlink RTM_NEWROUTE", dst="default", via=gw, dev=plan.peer_name) from exc


def _addr_add(ipr: IPRoute, index: int, ifname: str, cidr: str) -> None:
    try:
        ipr.addr("add", index=index, **_cidr_kw(cidr))
    except Exception as exc:
        raise _nl_error(exc, "netlink RTM_NEWADDR", dev=ifname, addr=cidr) from exc


def delete_link(name: str, ifindex: int | None = None) -> bool:
    """Delete link `name` in this namespace if it exists (and has `ifindex`, when given). True if deleted."""
    ipr = _iproute()
    try:
        index = _index(ipr, name)
        if index is None or (ifindex is not None and index != ifindex):
            return False
        try:
            ipr.link("del", index=index)
        except Exception as exc:
            if getattr(exc, "code", None) == errno.ENODEV:
                return False  # gone meanwhile (its peer's namespace died)
            raise _nl_error(exc, "netlink RTM_DELLINK", dev=name) from exc
        return True
    finally:
        ipr.close()


# ---------------------------------------------------------------------------------------------------------
# forwarding sysctls (for --nat): /proc/sys of the *current* network namespace

FORWARDING = {4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding"}


def get_forwarding(version: int) -> bool:
    with open(FORWARDING[version]) as f:
        return f.read().strip() != "0"


def set_forwarding(version: int, on: bool) -> None:
    try:
        with open(FORWARDING[version], "w") as f:
            f.write("1" if on else "0")
    except OSError as exc:
        raise SyscallError("write", exc.errno or errno.EIO, path=FORWARDING[version]) from exc
