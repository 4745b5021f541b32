# SPDX-License-Identifier: BSD-2-Clause
"""Nodes: per-run addresses, hostnames and MACs, and the LAN hub (no image needed, but the
pack test, which needs the sources)."""

import json
import socket
import subprocess
import sys
import time

import pytest

from chrysopolis import boards, nodes, qemu
from chrysopolis.errors import UsageError


def test_node_n_gets_its_mac_hostname_and_lan_address():
    s = nodes.settings(node=1, lan="demo")
    assert (s.mac, s.ip, s.gw, s.hostname) == ("52:54:00:c5:00:02", "10.0.3.11/24", None, "node1")
    assert nodes.node_mac(0) == "52:54:00:c5:00:01"  # node 0 is the default image
    assert nodes.settings().fw_cfg() == []  # DHCP, default MAC and hostname
    s = nodes.settings(node=3, ip="192.168.7.9/16,192.168.0.1", hostname="db.example")
    assert s.fw_cfg() == [
        ("opt/chrysopolis/ip", "192.168.7.9/16"),
        ("opt/chrysopolis/gw", "192.168.0.1"),
        ("opt/chrysopolis/hostname", "db.example"),
    ]
    assert s.lan is None and s.mac == "52:54:00:c5:00:04"
    assert nodes.settings(mac="52:54:00:AA:00:09").mac == "52:54:00:aa:00:09"


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"ip": "10.0.3.11"}, "no prefix length"),
        ({"ip": "10.0.3.11/33"}, "netmask"),
        ({"ip": "10.0.3.11/0"}, "prefix length must be 1 to 32"),
        ({"ip": "10.0.3.0/24"}, "network address"),
        ({"ip": "10.0.3.255/24"}, "broadcast address"),
        ({"ip": "224.0.0.1/24"}, "not a unicast host address"),
        ({"ip": "127.0.0.5/8"}, "not a unicast host address"),
        ({"ip": "10.0.3.11/24,10.0.4.1"}, "gateway 10.0.4.1 must be another address inside"),
        ({"ip": "10.0.3.11/24,10.0.3.11"}, "must be another address"),
        ({"ip": "10.0.3.11/24,x"}, "gateway"),
        ({"hostname": "under_score"}, "not a host name"),
        ({"hostname": "-lead"}, "not a host name"),
        ({"hostname": "a..b"}, "not a host name"),
        ({"hostname": "x" * 65}, "not a host name"),
        ({"node": 245}, "use 0 to 244"),
        ({"node": -1}, "use 0 to 244"),
        ({"node": 1, "mac": "52:54:00:c5:00:09"}, "not both"),
        ({"mac": "01:00:00:00:00:01"}, "multicast"),
        ({"lan": "demo"}, "needs --node"),
        ({"lan": "a b", "node": 1}, "not a LAN name"),
    ],
)
def test_bad_settings_are_one_line_refusals(kw, match):
    with pytest.raises(UsageError, match=match) as e:
        nodes.settings(**kw)
    assert "\n" not in str(e.value)


def test_command_carries_fw_cfg_files_and_the_lan_netdev(tmp_path):
    b = boards.board("qemu_virt_aarch64")
    s = nodes.settings(node=1, lan="demo")
    lan = "dgram,id=net0,local.type=inet,local.host=127.0.0.1,local.port=5,remote.type=inet"
    cmd = qemu.command(b, tmp_path / "l.img", net_bus=0, mac=s.mac, fw_cfg=s.fw_cfg(), netdev=lan)
    joined = " ".join(cmd)
    assert "-fw_cfg name=opt/chrysopolis/ip,string=10.0.3.11/24" in joined
    assert "-fw_cfg name=opt/chrysopolis/hostname,string=node1" in joined
    assert cmd[cmd.index("-netdev") + 1] == lan and "user,id=net0" not in joined
    assert "mac=52:54:00:c5:00:02" in joined
    with pytest.raises(UsageError, match="no user network"):
        qemu.command(b, tmp_path / "l.img", net_bus=0, forwards=["1:1"], netdev=lan)


def _frame(dst: str, src: str, payload: bytes = b"x" * 50) -> bytes:
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + payload


def test_hub_relays_frames_between_nodes_on_loopback(tmp_path):
    """lanhub.py as nodes.joined starts it: broadcast to every other node, unicast to the
    port a MAC was seen at, control datagrams answered, loopback only."""
    where = tmp_path / "hub.json"
    hub = subprocess.Popen([sys.executable, str(nodes.HUB), str(where)])
    socks = []
    try:
        for _ in range(50):
            if where.exists():
                break
            time.sleep(0.05)
        port = json.loads(where.read_text())["port"]
        assert nodes._ping(port)
        for _ in range(3):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", 0))
            u.settimeout(2)
            socks.append(u)
            assert nodes._control(port, f"JOIN {u.getsockname()[1]} {hub.pid}") == "OK"
        a, b, c = socks
        macs = ["52:54:00:c5:00:01", "52:54:00:c5:00:02", "52:54:00:c5:00:03"]
        a.sendto(_frame("ff:ff:ff:ff:ff:ff", macs[0]), ("127.0.0.1", port))
        assert b.recv(2000)[6:12].hex() == "525400c50001"
        assert c.recv(2000)[6:12].hex() == "525400c50001"
        b.sendto(_frame(macs[0], macs[1], b"reply"), ("127.0.0.1", port))
        assert a.recv(2000).endswith(b"reply")
        c.settimeout(0.3)
        with pytest.raises(TimeoutError):  # learned: a unicast frame goes to its node only
            c.recv(2000)
    finally:
        hub.terminate()
        hub.wait(5)
        for u in socks:
            u.close()
    assert "127.0.0.1" in nodes.HUB.read_text() and "0.0.0.0" not in nodes.HUB.read_text()
