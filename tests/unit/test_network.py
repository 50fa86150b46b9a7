"""Pure tests for the network hook's option handling and the netDevices planner (no root, no netlink)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from pyoci import network
from pyoci.errors import ConfigError
from pyoci.linux import net


def ns(**kw: object) -> argparse.Namespace:
    base = {name.replace("-", "_"): None for name in network.OPTIONS}
    base.update(kw)
    return argparse.Namespace(**base)


def plan(**opts: object) -> network.NetworkPlan:
    return network.plan_network("c1", opts)


# --- interface names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["eth0", "veth1", "a" * 15, "x-y_z.1", "ctr@0"])
def test_valid_ifnames(name: str) -> None:
    assert net.check_ifname(name, "f") == name


@pytest.mark.parametrize("name,why", [
    ("", "non-empty"), ("a" * 16, "longer than 15"), (".", "'.' and '..'"), ("a b", "whitespace"),
    ("a/b", "'/'"), ("a:1", "':'"), ("eth%d", "'%' is not allowed"), (None, "non-empty string"),
])
def test_invalid_ifnames(name: object, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        net.check_ifname(name, "--ifname")
    assert str(e.value).startswith("--ifname: ") and why in str(e.value)


def test_template_only_where_allowed() -> None:
    assert net.check_ifname("eth%d", "f", template_ok=True) == "eth%d"
    with pytest.raises(ConfigError, match="only allowed once"):
        net.check_ifname("e%d%d", "f", template_ok=True)


# --- linux.netDevices planner ----------------------------------------------------------------------------

def test_plan_netdevices_names() -> None:
    moves = net.plan_netdevices({"eth1": {"name": "ctr0"}, "eth2": {}, "eth3": {"name": ""}, "eth4": {"name": "n%d"}})
    assert [(m.host_name, m.name, m.is_template) for m in moves] == [
        ("eth1", "ctr0", False), ("eth2", "eth2", False), ("eth3", "eth3", False), ("eth4", "n%d", True)]


@pytest.mark.parametrize("devs,msg", [
    ({"lo": {}}, "linux.netDevices['lo']: the loopback device cannot be moved"),
    ({"eth1": {"name": "x"}, "eth2": {"name": "x"}}, "linux.netDevices['eth2'].name: 'x' is also the name of"),
    ({"eth1": {"name": "eth2"}, "eth2": {}}, "linux.netDevices['eth2'].name: 'eth2' is also the name of"),
    ({"eth1": {"name": "has space"}}, "linux.netDevices['eth1'].name: 'has space': invalid interface name"),
    ({"bad/name": {}}, "linux.netDevices['bad/name']: 'bad/name': invalid interface name"),
    ({"eth1": "eth2"}, "linux.netDevices['eth1']: must be an object"),
])
def test_plan_netdevices_errors(devs: dict[str, object], msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        net.plan_netdevices(devs)
    assert str(e.value).startswith(msg)


def test_two_templates_may_share_a_pattern() -> None:
    assert len(net.plan_netdevices({"a": {"name": "n%d"}, "b": {"name": "n%d"}})) == 2


@pytest.mark.parametrize("template,name,ok", [
    ("eth%d", "eth0", True), ("eth%d", "eth12", True), ("eth%d", "eth", False), ("eth%d", "ethx", False),
    ("e%dx", "e3x", True), ("ctr0", "ctr0", True), ("ctr0", "ctr1", False),
])
def test_name_matches_template(template: str, name: str, ok: bool) -> None:
    assert net._name_matches(template, name) is ok


# --- hook options ----------------------------------------------------------------------------------------

def test_flags_win_over_annotations() -> None:
    ann = {"org.pyoci.network.addr": "10.0.0.2/24, fd00::2/64", "org.pyoci.network.ifname": "net0",
           "org.pyoci.network.nat": "true", "other.key": "ignored"}
    opts = network.resolve_options(ns(ifname="veth1"), ann)
    assert opts == {"addr": ["10.0.0.2/24", "fd00::2/64"], "ifname": "veth1", "nat": True}


@pytest.mark.parametrize("ann,msg", [
    ({"org.pyoci.network.adress": "x"}, "annotations['org.pyoci.network.adress']: unknown option"),
    ({"org.pyoci.network.nat": "maybe"}, "annotations['org.pyoci.network.nat']: 'maybe': expected true or false"),
])
def test_bad_annotations(ann: dict[str, str], msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        network.resolve_options(ns(), ann)
    assert str(e.value).startswith(msg)


def test_seed_plan() -> None:
    p = plan(**{"veth-host": "veth0", "host-addr": ["169.254.1.1/30"], "ifname": "veth1",
                "addr": ["169.254.1.2/30"]})
    assert p.veth == net.VethPlan("veth0", "veth1", ("169.254.1.1/30",), ("169.254.1.2/30",),
                                  gateways=("169.254.1.1",))
    assert (p.nat, p.nat_backend, p.record_dir) == (False, "auto", network.DEFAULT_RECORD_DIR)


def test_defaults_derive_from_the_id() -> None:
    p = plan()
    assert p.veth.host_name == network.default_veth_name("c1") and len(p.veth.host_name) == 15
    assert p.veth.host_name != network.default_veth_name("c2")
    assert p.veth.peer_name == "eth0" and p.veth.gateways == ()


def test_gateways_per_family() -> None:
    p = plan(**{"host-addr": ["10.0.0.1/24", "fd00::1/64"], "addr": ["10.0.0.2/24", "fd00::2/64"]})
    assert p.veth.gateways == ("10.0.0.1", "fd00::1")
    p = plan(**{"host-addr": ["10.0.0.1/24"], "addr": ["10.0.0.2/24"], "gateway": ["10.0.0.254"]})
    assert p.veth.gateways == ("10.0.0.254",)
    assert plan(**{"host-addr": ["10.0.0.1/24"], "addr": ["10.0.0.2/24"], "gateway": ["none"]}).veth.gateways == ()
    # the host end is not on-link for the container: no default route is guessed
    assert plan(**{"host-addr": ["10.9.0.1/24"], "addr": ["10.0.0.2/24"]}).veth.gateways == ()


@pytest.mark.parametrize("opts,msg", [
    ({"addr": ["10.0.0.2"]}, "--addr: '10.0.0.2': invalid address (expected address/prefix"),
    ({"addr": ["10.0.0.2/33"]}, "--addr: '10.0.0.2/33': invalid address"),
    ({"addr": ["10.0.0.0/24"]}, "--addr: '10.0.0.0/24': invalid address (network or broadcast"),
    ({"addr": ["10.0.0.255/24"]}, "--addr: '10.0.0.255/24': invalid address (network or broadcast"),
    ({"addr": ["224.0.0.1/24"]}, "--addr: '224.0.0.1/24': invalid address (multicast"),
    ({"addr": ["not-an-ip/24"]}, "--addr: 'not-an-ip/24': invalid address"),
    ({"addr": ["10.0.0.2/24", "10.0.0.2/16"]}, "--addr: '10.0.0.2' given twice"),
    ({"host-addr": ["10.0.0.2/24"], "addr": ["10.0.0.2/24"]}, "--addr: '10.0.0.2' is also a --host-addr"),
    ({"veth-host": "way-too-long-name"}, "--veth-host: 'way-too-long-name': invalid interface name"),
    ({"ifname": "a/b"}, "--ifname: 'a/b': invalid interface name"),
    ({"bridge": "br 0"}, "--bridge: 'br 0': invalid interface name"),
    ({"bridge": "br0", "host-addr": ["10.0.0.1/24"]}, "--host-addr: a bridge port takes no address"),
    ({"mtu": "big"}, "--mtu: 'big': not an integer"),
    ({"mtu": "70000"}, "--mtu: 70000: must be between 68 and 65535"),
    ({"addr": ["10.0.0.2/24"], "gateway": ["10.1.0.1"]}, "--gateway: '10.1.0.1': not in the subnet"),
    ({"addr": ["10.0.0.2/24"], "gateway": ["fd00::1"]}, "--gateway: 'fd00::1': no IPv6 --addr"),
    ({"addr": ["10.0.0.2/24"], "gateway": ["10.0.0.1", "10.0.0.3"]}, "--gateway: '10.0.0.3': one gateway per"),
    ({"addr": ["10.0.0.2/24"], "gateway": ["gw"]}, "--gateway: 'gw': not an IP address"),
    ({"nat": True}, "--nat: needs at least one --addr"),
    ({"addr": ["10.0.0.2/24"], "nat": True, "nat-backend": "pf"}, "--nat-backend: 'pf': expected one of"),
])
def test_plan_errors_are_one_clear_line(opts: dict[str, object], msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        plan(**opts)
    text = str(e.value)
    assert text.startswith(msg) and "\n" not in text


@pytest.mark.parametrize("text,msg", [
    ("not json", "state on stdin: not JSON"), ("[]", "state on stdin: no container 'id'"),
    ('{"pid": 1}', "state on stdin: no container 'id'"),
])
def test_read_state_errors(text: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        network.read_state(text)


# --- NAT rule text ---------------------------------------------------------------------------------------

def test_nft_script_one_table_per_container() -> None:
    script = network.nft_script("c1", ["169.254.1.0/30", "fd00::/64"], "veth0")
    assert script.startswith(f"table inet {network.nft_table('c1')} {{")
    assert 'ip saddr 169.254.1.0/30 oifname != "veth0" masquerade comment "pyoci c1"' in script
    assert 'ip6 saddr fd00::/64 oifname != "veth0" masquerade' in script
    assert "type nat hook postrouting priority srcnat" in script
    assert network.nft_table("c1") != network.nft_table("c2")


def test_iptables_rules_by_family() -> None:
    rules = network.iptables_rules("c1", ["10.0.0.0/24", "fd00::/64"], "br0")
    assert rules[0] == ["iptables", "-t", "nat", "POSTROUTING", "-s", "10.0.0.0/24", "!", "-o", "br0",
                        "-m", "comment", "--comment", "pyoci:c1", "-j", "MASQUERADE"]
    assert rules[1][0] == "ip6tables" and rules[1][5] == "fd00::/64"


# --- CLI shape and lazy imports --------------------------------------------------------------------------

def test_register_adds_up_and_down() -> None:
    p = argparse.ArgumentParser()
    network.register(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["network", "up", "--addr", "10.0.0.2/24", "--addr", "fd00::2/64", "--no-nat"])
    assert args.func is network.handler and args.network_action == "up"
    assert args.addr == ["10.0.0.2/24", "fd00::2/64"] and args.nat is False
    with pytest.raises(SystemExit):
        p.parse_args(["network"])  # an action is required


def test_importing_network_code_does_not_import_pyroute2() -> None:
    code = ("import sys, pyoci.network, pyoci.linux.net; "
            "assert 'pyroute2' not in sys.modules, 'pyroute2 imported'; print(json.dumps('ok'))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == "ok"
