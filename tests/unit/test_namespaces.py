import pytest

from pyoci.errors import ConfigError
from pyoci.linux import libc
from pyoci.namespaces import host_id, idmap_text, plan


def spec(*nss):
    return {"linux": {"namespaces": list(nss)}}


def test_plan_new_and_join():
    p = plan(spec({"type": "pid"}, {"type": "user"}, {"type": "network", "path": "/proc/1/ns/net"},
                  {"type": "mount"}))
    assert p.new == {"pid", "user", "mount"} and p.new_user
    assert p.join == (("network", "/proc/1/ns/net"),)
    assert p.unshare_flags == libc.CLONE_NEWPID | libc.CLONE_NEWNS  # user is unshared on its own, first


def test_join_order_user_first_mount_last():
    p = plan(spec({"type": "mount", "path": "/m"}, {"type": "uts", "path": "/u"}, {"type": "user", "path": "/x"}))
    assert [t for t, _ in p.join] == ["user", "uts", "mount"]


@pytest.mark.parametrize("nss,msg", [
    (({"type": "pid"}, {"type": "pid"}), "duplicate namespace type 'pid'"),
    (({"type": "bogus"},), "unknown namespace type"),
    (({"type": "network", "path": "rel/path"},), "not absolute"),
])
def test_plan_errors(nss, msg):
    with pytest.raises(ConfigError, match=msg):
        plan(spec(*nss))


def test_idmap():
    m = [{"containerID": 0, "hostID": 100000, "size": 65536}, {"containerID": 70000, "hostID": 5, "size": 1}]
    assert idmap_text(m) == "0 100000 65536\n70000 5 1\n"
    assert host_id(m, 1000) == 101000 and host_id(m, 70000) == 5 and host_id(m, 65536) is None
