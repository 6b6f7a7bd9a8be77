"""Contract tests run against every SnmpClient engine: the same answers as net-snmp, the same failures.

Real peers only: net-snmp's snmpd (v2c and v3 authPriv SHA/AES) and snmpsim (exact edge values, an agent
that answers genErr). Expected values come from ``snmpbulkwalk``/``snmpget -On -Ox``, parsed here; a walk
by net-snmp before and after the client's bounds the values that move (counters, uptime).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from agent.snmpclient import SnmpClient, SnmpError, SnmpTarget, SnmpTimeout, SnmpValue, make_client, oid_key
from tests import services
from tests.conftest import SNMP_V3_USER

pytestmark = pytest.mark.integration

T = TypeVar("T")
ENGINES = ["pysnmp", "gufo"]
VERSIONS = ["v2c", "v3"]
MIB2 = "1.3.6.1.2.1"
SYSTEM = "1.3.6.1.2.1.1"
IF_TABLE = "1.3.6.1.2.1.2.2.1"
IFX_TABLE = "1.3.6.1.2.1.31.1.1.1"
# Tables whose rows come and go while a walk runs: processes (hrSWRun, hrSWRunPerf), the package list
# (hrSWInstalled: snmpd reloads it from dpkg, and is seen empty for a moment now and then), connections and
# addresses (TCP-MIB, UDP-MIB, IP-MIB). There the client's rows are only checked for order and type.
VOLATILE = ("1.3.6.1.2.1.25.4.", "1.3.6.1.2.1.25.5.", "1.3.6.1.2.1.25.6.", "1.3.6.1.2.1.6.", "1.3.6.1.2.1.7.",
            "1.3.6.1.2.1.4.")


# ---------------------------------------------------------------------------------------------- net-snmp


_LINE = re.compile(r"^\.(?P<oid>[0-9.]+) = (?P<rest>.*)$")
_HEX = re.compile(r"^(?:[0-9A-F]{2} ?)*$")
_NONE = ("No Such Object", "No Such Instance", "No more variables", "NULL")


def parse_net_snmp(text: str) -> list[tuple[str, SnmpValue]]:
    """Parse ``-On -Ox`` output of net-snmp's tools into ``(oid, value)`` with the client's value types."""
    rows: list[tuple[str, SnmpValue]] = []
    pending: tuple[str, str] | None = None  # (oid, hex so far) of a Hex-STRING that may go on next line

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            rows.append((pending[0], bytes.fromhex(pending[1])))
            pending = None

    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            if pending is None or not _HEX.match(line.strip()):
                raise ValueError(f"unexpected net-snmp output line: {line!r}")
            pending = (pending[0], pending[1] + " " + line.strip())
            continue
        flush()
        oid, rest = match["oid"], match["rest"]
        kind, _, value = rest.partition(": ")
        if rest.startswith(_NONE):
            rows.append((oid, None))
        elif rest == '""':
            rows.append((oid, b""))
        elif kind in ("Hex-STRING", "OPAQUE", "BITS"):
            pending = (oid, value.strip())
        elif kind in ("INTEGER", "Counter32", "Counter64", "Gauge32", "UInteger32"):
            rows.append((oid, int(value)))
        elif kind == "Timeticks":
            rows.append((oid, int(value.split(")")[0].lstrip("("))))
        elif kind == "OID":
            rows.append((oid, value.lstrip(".")))
        elif kind == "IpAddress":
            rows.append((oid, value))
        else:
            raise ValueError(f"unexpected net-snmp value type in {line!r}")
    flush()
    return rows


def auth_args(version: str, port: int) -> list[str]:
    if version == "v2c":
        return ["-v2c", "-c", "public", f"127.0.0.1:{port}"]
    user, auth, priv = SNMP_V3_USER
    return ["-v3", "-l", "authPriv", "-u", user, "-a", "SHA", "-A", auth, "-x", "AES", "-X", priv,
            f"127.0.0.1:{port}"]


def net_snmp(tool: str, args: list[str], *oids: str) -> list[tuple[str, SnmpValue]]:
    """Run ``tool`` (snmpbulkwalk or snmpget) with numeric OIDs and hex strings; return its rows."""
    argv = [services.require(tool), "-On", "-Ox", "-t", "2", "-r", "1", *args, *oids]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return parse_net_snmp(done.stdout)


# ---------------------------------------------------------------------------------------------- peers


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    svc = services.start_snmpd(tmp_path_factory.mktemp("snmpd"), community="public", v3_user=SNMP_V3_USER)
    yield svc
    svc.stop()


BIG = "1.3.6.1.4.1.97.1"  # 60 scalars of 200 bytes: a GETBULK of 25 answers about 5 KB


@pytest.fixture(scope="module")
def snmpd_big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    rows = "".join(f'override .{BIG}.{i}.0 octet_str "{f"row {i:03d} " * 25}"\n' for i in range(1, 61))
    svc = services.start_snmpd(tmp_path_factory.mktemp("snmpd-big"), community="public", v3_user=SNMP_V3_USER,
                               extra_conf=rows)
    yield svc
    svc.stop()


# Exact values net-snmp's snmpd cannot be made to serve: extremes of each type, binary and empty strings,
# an Opaque, and the end of the agent's MIB view right after the last OID.
EDGE_ROWS: list[tuple[str, str, SnmpValue]] = [
    ("1.3.6.1.2.1.1.1.0", "4|edge device", b"edge device"),
    ("1.3.6.1.2.1.1.3.0", "67|4294967295", 4294967295),
    ("1.3.6.1.2.1.1.5.0", "4x|00ff10fe7f80", b"\x00\xff\x10\xfe\x7f\x80"),
    ("1.3.6.1.2.1.2.2.1.1.1", "2|1", 1),
    ("1.3.6.1.2.1.2.2.1.1.2", "2|-2147483648", -2147483648),
    ("1.3.6.1.2.1.2.2.1.1.10", "2|2147483647", 2147483647),
    ("1.3.6.1.2.1.4.20.1.1.10.0.0.1", "64|10.0.0.1", "10.0.0.1"),
    ("1.3.6.1.2.1.31.1.1.1.6.1", "70|18446744073709551615", 18446744073709551615),
    ("1.3.6.1.2.1.31.1.1.1.6.2", "70|9007199254740993", 9007199254740993),
    ("1.3.6.1.2.1.31.1.1.1.15.1", "66|4294967295", 4294967295),
    ("1.3.6.1.2.1.31.1.1.1.16.1", "65|4294967295", 4294967295),
    ("1.3.6.1.4.1.99.1.0", "68x|0102", b"\x01\x02"),
    ("1.3.6.1.4.1.99.2.0", "6|1.3.6.1.4.1.9.1.1", "1.3.6.1.4.1.9.1.1"),
    ("1.3.6.1.4.1.99.3.0", "4|", b""),
]
EDGE_END = "1.3.6.1.4.1.99"  # the last subtree: a walk of it ends at endOfMibView


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    root = tmp_path_factory.mktemp("snmpsim")
    data = root / "data"
    data.mkdir()
    (data / "edge.snmprec").write_text("".join(f"{oid}|{rec}\n" for oid, rec, _ in EDGE_ROWS))
    (data / "generr.snmprec").write_text(
        "1.3.6.1.4.1.98.1.0|2|1\n"
        "1.3.6.1.4.1.98.2.0|2:error|op=any,status=genError\n"
        "1.3.6.1.4.1.98.3.0|2|3\n"
    )
    svc = services.start_snmpsim(root / "work", data)
    yield svc
    svc.stop()


def target(port: int, version: str = "v2c", **keys: Any) -> SnmpTarget:
    if version == "v2c":
        keys = {"community": "public", **keys}
    else:
        user, auth, priv = SNMP_V3_USER
        keys = {"user": user, "auth_key": auth, "priv_key": priv, **keys}
    return SnmpTarget("127.0.0.1", port, version, **keys)  # type: ignore[arg-type]


def run(engine: str, tgt: SnmpTarget, use: Callable[[SnmpClient], Awaitable[T]]) -> T:
    """Open a client of ``engine`` for ``tgt``, await ``use(client)`` and close it."""

    async def main() -> T:
        client = make_client(tgt, engine)  # type: ignore[arg-type]
        try:
            return await use(client)
        finally:
            client.close()

    return asyncio.run(main())


# ---------------------------------------------------------------------------------------------- answers


def assert_walk_between(got: list[tuple[str, SnmpValue]], before: list[tuple[str, SnmpValue]],
                        after: list[tuple[str, SnmpValue]], root: str) -> None:
    """Check a client's walk against net-snmp's walks of the same subtree just before and just after it."""
    keys = [oid_key(oid) for oid, _ in got]
    assert keys == sorted(set(keys)), "OIDs must increase"
    root_key = oid_key(root)
    assert all(k[: len(root_key)] == root_key and len(k) > len(root_key) for k in keys)
    first, last, mine = dict(before), dict(after), dict(got)
    both = [oid for oid in first if oid in last]
    assert both, f"net-snmp found nothing under {root}"
    missing = [oid for oid in both if oid not in mine and not oid.startswith(VOLATILE)]
    assert missing == [], (f"{len(missing)} OIDs that net-snmp saw before and after are missing: {missing[:5]};"
                           f" the client's walk has {len(got)} rows and ends at {got[-1][0] if got else None}")
    strange = [oid for oid in mine if oid not in first and oid not in last and not oid.startswith(VOLATILE)]
    assert strange == [], f"OIDs net-snmp never saw: {strange[:5]}"
    for oid in both:
        low, high, value = first[oid], last[oid], mine[oid]
        if low == high and not oid.startswith(VOLATILE):
            assert value == low, f"{oid}: {value!r} != net-snmp's {low!r}"
        elif isinstance(low, int) and isinstance(high, int):
            assert isinstance(value, int), f"{oid}: {value!r} is not an integer like net-snmp's {low!r}"
        else:
            assert type(value) is type(low) or type(value) is type(high), f"{oid}: {value!r} vs {low!r}"


@pytest.mark.parametrize("root", [SYSTEM, IF_TABLE, IFX_TABLE, MIB2])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("engine", ENGINES)
def test_walk_gives_what_net_snmp_gives(snmpd: services.Service, engine: str, version: str, root: str) -> None:
    args = auth_args(version, snmpd.port)
    before = net_snmp("snmpbulkwalk", args, root)
    got = run(engine, target(snmpd.port, version), lambda c: c.walk(root))
    after = net_snmp("snmpbulkwalk", args, root)
    assert_walk_between(got, before, after, root)


@pytest.mark.parametrize("shape", [
    pytest.param({"bulk": False}, id="getnext"),
    pytest.param({"max_repetitions": 1}, id="getbulk-1"),
    pytest.param({"max_repetitions": 200}, id="getbulk-200"),
])
@pytest.mark.parametrize("engine", ENGINES)
def test_walk_shape_does_not_change_the_answer(snmpd: services.Service, engine: str, shape: dict[str, Any]) -> None:
    args = auth_args("v3", snmpd.port)
    before = net_snmp("snmpbulkwalk", args, IF_TABLE)
    got = run(engine, target(snmpd.port, "v3", **shape), lambda c: c.walk(IF_TABLE))
    after = net_snmp("snmpbulkwalk", args, IF_TABLE)
    assert_walk_between(got, before, after, IF_TABLE)


@pytest.mark.parametrize("repetitions", [10, 25, 100])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("engine", ENGINES)
def test_big_answers_are_walked_whole(snmpd_big: services.Service, engine: str, version: str,
                                      repetitions: int) -> None:
    """Answers bigger than a UDP datagram a client reads, or than the message size a v3 client asks for."""
    expected = net_snmp("snmpbulkwalk", auth_args(version, snmpd_big.port), BIG)
    assert len(expected) == 60 and all(isinstance(v, bytes) and len(v) == 200 for _, v in expected)

    async def twice(client: SnmpClient) -> list[list[tuple[str, SnmpValue]]]:
        return [await client.walk(BIG), await client.walk(BIG)]

    assert run(engine, target(snmpd_big.port, version, max_repetitions=repetitions), twice) == [expected] * 2


GET_OIDS = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.2.2.1.2.1",
            "1.3.6.1.2.1.2.2.1.6.1", "1.3.6.1.2.1.4.20.1.1.127.0.0.1", "1.3.6.1.2.1.1.99.0", "1.3.6.1.2.1.1.5.1"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("engine", ENGINES)
def test_get_gives_what_net_snmp_gives(snmpd: services.Service, engine: str, version: str) -> None:
    expected = dict(net_snmp("snmpget", auth_args(version, snmpd.port), *GET_OIDS))
    got = run(engine, target(snmpd.port, version), lambda c: c.get(GET_OIDS))
    assert got == expected
    assert got["1.3.6.1.2.1.1.99.0"] is None and got["1.3.6.1.2.1.1.5.1"] is None  # noSuchObject, -Instance
    assert run(engine, target(snmpd.port, version), lambda c: c.get([])) == {}


@pytest.mark.parametrize("engine", ENGINES)
def test_edge_values_are_exact(snmpsim: services.Service, engine: str) -> None:
    tgt = target(snmpsim.port, community="edge")
    expected = [(oid, value) for oid, _, value in EDGE_ROWS]

    async def use(client: SnmpClient) -> tuple[Any, ...]:
        return (await client.walk("1.3.6"), await client.walk(EDGE_END), await client.walk("1.3.6.1.4.1.100"),
                await client.get([oid for oid, _ in expected] + ["1.3.6.1.2.1.1.9.0"]))

    everything, tail, beyond, got = run(engine, tgt, use)
    assert everything == expected
    assert tail == [row for row in expected if row[0].startswith(EDGE_END + ".")]  # ends at endOfMibView
    assert beyond == []
    assert got == {**dict(expected), "1.3.6.1.2.1.1.9.0": None}
    net = net_snmp("snmpbulkwalk", ["-v2c", "-c", "edge", f"127.0.0.1:{snmpsim.port}"], "1.3.6.1.2")
    assert everything[: len(net)] == net


@pytest.mark.parametrize("engine", [
    "pysnmp",
    pytest.param("gufo", marks=pytest.mark.xfail(strict=True, reason="gufo-snmp 0.13 drops a response's"
                                                  " error-status: a genErr walk ends early, a GET gives None")),
])
@pytest.mark.parametrize("request_kind", ["walk", "get"])
def test_an_agent_error_is_an_error(snmpsim: services.Service, engine: str, request_kind: str) -> None:
    tgt = target(snmpsim.port, community="generr")

    async def use(client: SnmpClient) -> object:
        if request_kind == "walk":
            return await client.walk("1.3.6.1.4.1.98")
        return await client.get(["1.3.6.1.4.1.98.1.0", "1.3.6.1.4.1.98.2.0"])

    with pytest.raises(SnmpError) as failed:
        run(engine, tgt, use)
    assert not isinstance(failed.value, SnmpTimeout)
    assert "genErr" in str(failed.value)


# ---------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("engine", ENGINES)
def test_a_host_name_is_resolved(snmpd: services.Service, engine: str) -> None:
    tgt = SnmpTarget("localhost", snmpd.port, "v2c", community="public")
    assert run(engine, tgt, lambda c: c.get(["1.3.6.1.2.1.1.5.0"])) == {"1.3.6.1.2.1.1.5.0": b"zw-test-snmpd"}
    unknown = SnmpTarget("no-such-host.invalid", snmpd.port, "v2c", community="public", timeout=0.3, retries=0)
    with pytest.raises(SnmpError, match="no-such-host.invalid"):
        run(engine, unknown, lambda c: c.get(["1.3.6.1.2.1.1.5.0"]))


@pytest.mark.parametrize("engine", ENGINES)
def test_closed_and_silent_ports_time_out(engine: str) -> None:
    """A closed port (the host answers ICMP port unreachable) and a port where nothing ever answers."""
    requests = (lambda c: c.get(["1.3.6.1.2.1.1.3.0"]), lambda c: c.walk(IF_TABLE))
    closed = target(services.free_udp_port(), timeout=0.3, retries=1)
    for use in requests:
        with pytest.raises(SnmpTimeout, match=r"2 tries"):
            run(engine, closed, use)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        quiet = target(silent.getsockname()[1], timeout=0.3, retries=1)
        for use in requests:
            with pytest.raises(SnmpTimeout, match=r"no response in 0\.3s after 2 tries"):
                run(engine, quiet, use)


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_community_times_out(snmpd: services.Service, engine: str) -> None:
    tgt = target(snmpd.port, community="not-the-community-4711", timeout=0.3, retries=0)
    with pytest.raises(SnmpTimeout) as failed:
        run(engine, tgt, lambda c: c.get(["1.3.6.1.2.1.1.3.0"]))
    assert "not-the-community-4711" not in str(failed.value) and "wrong community" in str(failed.value)


@pytest.mark.parametrize("wrong", [
    {"auth_key": "not-the-auth-key-0987"},
    {"priv_key": "not-the-priv-key-0987"},
    {"user": "nobody-here", "auth_key": "not-the-auth-key-0987"},
])
@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_v3_credentials_fail_and_never_leak(snmpd: services.Service, engine: str, wrong: dict[str, str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tgt = target(snmpd.port, "v3", timeout=0.5, retries=0, **wrong)
    for use in (lambda c: c.get(["1.3.6.1.2.1.1.3.0"]), lambda c: c.walk(IF_TABLE)):
        with pytest.raises(SnmpError) as failed:  # an authentication error, or a timeout: never a hang
            run(engine, tgt, use)
        text = f"{failed.value} {failed.value!r} {failed.value.reason} {caplog.text}"
        for secret in (*wrong.values(), *SNMP_V3_USER[1:]):
            if secret != wrong.get("user"):
                assert secret not in text


@pytest.mark.parametrize("engine", ENGINES)
def test_client_recovers_after_a_restart_and_a_freeze(tmp_path: Path, engine: str) -> None:
    """A frozen agent times out, then answers; a restarted one (new v3 engine ID and boots) answers again.

    snmpd makes a new engine ID at each start and drops messages for the old one: gufo learns the new one
    in its retry; pysnmp retries inside its engine, so the request after its timeout learns it.
    """
    svc = services.start_snmpd(tmp_path / "snmpd", v3_user=SNMP_V3_USER)
    tgt = target(svc.port, "v3", timeout=0.5, retries=1)
    name = ["1.3.6.1.2.1.1.5.0"]

    async def use(client: SnmpClient) -> list[object]:
        nonlocal svc
        answers: list[object] = [await client.get(name)]
        svc.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(SnmpTimeout):
                await client.get(name)
        finally:
            svc.proc.send_signal(signal.SIGCONT)
        answers.append(await client.get(name))
        svc = await asyncio.to_thread(restart, svc)
        try:
            answers.append(await client.get(name))
        except SnmpTimeout:
            answers.append("timeout")
        answers.append(await client.get(name))
        answers.append(len(await client.walk(SYSTEM)) > 5)
        return answers

    try:
        answers = run(engine, tgt, use)
    finally:
        svc.stop()
    ok = {name[0]: b"zw-test-snmpd"}
    assert answers[:2] == [ok, ok] and answers[3:] == [ok, True]
    assert answers[2] == ok if engine == "gufo" else answers[2] in (ok, "timeout")


def restart(svc: services.Service) -> services.Service:
    """Stop snmpd and start it again on the same port with the same state (so the next engine boot)."""
    svc.stop()
    argv = [str(a) for a in svc.proc.args]  # type: ignore[union-attr]
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(svc.workdir / "persist")}
    with open(svc.log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=svc.workdir, env=env)
    again = services.Service(svc.name, proc, svc.port, svc.workdir, svc.log)
    probe = ["snmpget", "-v2c", "-c", "public", "-t", "0.3", "-r", "0", f"127.0.0.1:{svc.port}", "1.3.6.1.2.1.1.5.0"]
    try:
        services.wait_for(lambda: subprocess.run(probe, capture_output=True).returncode == 0, 20, "snmpd again")
    except BaseException:
        again.stop()
        raise
    return again


# ---------------------------------------------------------------------------------------------- concurrency


class _Barrier(asyncio.DatagramProtocol):
    """One device's port in front of snmpd: holds requests until every device has sent one, then relays."""

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate
        self.transport: asyncio.DatagramTransport | None = None
        self.relay: asyncio.DatagramTransport | None = None
        self.client: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client = addr
        self.gate.hold(self, data)

    def forward(self, data: bytes) -> None:
        assert self.relay is not None
        self.relay.sendto(data)

    def answer(self, data: bytes) -> None:
        if self.transport is not None and self.client is not None:
            self.transport.sendto(data, self.client)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, port: _Barrier) -> None:
        self.port = port

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.port.answer(data)


class _Gate:
    """Opens when each of ``count`` ports has held a request; from then on everything passes."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.held: dict[_Barrier, list[bytes]] = {}
        self.open = False

    def hold(self, port: _Barrier, data: bytes) -> None:
        if self.open:
            port.forward(data)
            return
        self.held.setdefault(port, []).append(data)
        if len(self.held) == self.count:
            self.open = True
            for waiting, datagrams in self.held.items():
                for datagram in datagrams:
                    waiting.forward(datagram)


def _same(protocol: _Barrier) -> _Barrier:
    return protocol


@asynccontextmanager
async def barrier_ports(count: int, upstream_port: int) -> AsyncIterator[tuple[_Gate, list[int]]]:
    loop = asyncio.get_running_loop()
    gate = _Gate(count)
    transports: list[asyncio.BaseTransport] = []
    ports = []
    try:
        for _ in range(count):
            front = _Barrier(gate)
            transport, _ = await loop.create_datagram_endpoint(partial(_same, front), local_addr=("127.0.0.1", 0))
            relay, _ = await loop.create_datagram_endpoint(partial(_Upstream, front),
                                                           remote_addr=("127.0.0.1", upstream_port))
            front.relay = relay
            transports += [transport, relay]
            ports.append(transport.get_extra_info("sockname")[1])
        yield gate, ports
    finally:
        for opened in transports:
            opened.close()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("engine", ENGINES)
def test_devices_are_polled_concurrently(snmpd: services.Service, engine: str, version: str) -> None:
    """No device answers before every device has asked: a client that waits for another fails here."""
    count = 5

    async def main() -> list[list[tuple[str, SnmpValue]]]:
        async with barrier_ports(count, snmpd.port) as (gate, ports):
            clients = [make_client(target(port, version, timeout=5.0, retries=0), engine)  # type: ignore[arg-type]
                       for port in ports]
            try:
                walks = await asyncio.gather(*(c.walk(IF_TABLE) for c in clients))
            finally:
                for client in clients:
                    client.close()
            assert gate.open
            return list(walks)

    walks = asyncio.run(main())
    assert all(walk and [oid for oid, _ in walk] == [oid for oid, _ in walks[0]] for walk in walks)
