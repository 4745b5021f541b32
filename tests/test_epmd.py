# SPDX-License-Identifier: BSD-2-Clause
"""The host's epmd (chrysopolis/epmd.py): the EPMD protocol on 127.0.0.1, real sockets."""

import socket
import time

import pytest

from chrysopolis import epmd
from chrysopolis.errors import UserError


@pytest.fixture
def server():
    s = epmd.Epmd(0)
    yield s
    s.close()


def _until(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_a_registration_is_found_and_lives_with_its_connection(server):
    assert epmd.answers(server.port)
    conn = epmd.register("beam1", 9101, server.port)
    assert epmd.port_please("beam1", server.port) == 9101
    assert epmd.names(server.port) == {"beam1": 9101}
    assert epmd.port_please("nobody", server.port) is None
    conn.close()
    assert _until(lambda: epmd.port_please("beam1", server.port) is None)


def test_a_taken_name_is_refused_naming_the_fix(server):
    conn = epmd.register("beam1", 9101, server.port)
    with pytest.raises(UserError, match="a node of that name runs already"):
        epmd.register("beam1", 9102, server.port)
    assert epmd.port_please("beam1", server.port) == 9101
    conn.close()


def test_ensure_uses_an_epmd_that_answers(server):
    assert epmd.ensure(server.port) is None


def test_a_garbled_request_changes_nothing(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"\x00\x03xyz")
    assert epmd.names(server.port) == {}


def test_nothing_listening_is_no_epmd():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not epmd.answers(port)
