"""The SNMP client seam without sockets: engine choice, validation, secrets, and GufoClient's own logic.

GufoClient's retries, report handling and OID checks are driven here through a scripted stand-in for
gufo-snmp's session; the answers of real agents are in tests/integration/test_snmpclient.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import pytest
from gufo.snmp import SnmpAuthError, SnmpDecodeError

from agent import snmp_gufo, snmpclient
from agent.snmp_gufo import GufoClient
from agent.snmp_pysnmp import PysnmpClient
from agent.snmpclient import SnmpError, SnmpTarget, SnmpTimeout, SnmpValue, make_client

T = TypeVar("T")
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
COMMUNITY, AUTH, PRIV = "s3cret-community", "s3cret-auth-key", "s3cret-priv-key"
V2C = SnmpTarget("192.0.2.10", 161, "v2c", community=COMMUNITY, retries=1)
V3 = SnmpTarget("192.0.2.10", 161, "v3", user="zw", auth_key=AUTH, priv_key=PRIV, retries=1)


# ---------------------------------------------------------------------------------------------- engines


def test_engines_are_named_and_gufo_is_the_default_where_installed() -> None:
    assert snmpclient.ENGINES == ("auto", "pysnmp", "gufo")
    assert snmpclient.gufo_available()
    assert type(make_client(V2C)) is GufoClient
    assert type(snmpclient.default_client_factory(V3)) is GufoClient
    assert type(make_client(V2C, "gufo")) is GufoClient
    assert type(make_client(V3, "pysnmp")) is PysnmpClient


def test_auto_falls_back_to_pysnmp_without_gufo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snmpclient, "gufo_available", lambda: False)
    assert type(make_client(V2C)) is PysnmpClient
    assert type(snmpclient.default_client_factory(V3)) is PysnmpClient


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown SNMP engine 'netsnmp'; expected one of auto, pysnmp, gufo"):
        make_client(V2C, "netsnmp")  # type: ignore[arg-type]


def test_client_classes_are_importable_from_the_seam() -> None:
    assert snmpclient.PysnmpClient is PysnmpClient
    assert snmpclient.GufoClient is GufoClient
    with pytest.raises(AttributeError):
        snmpclient.NoSuchClient  # noqa: B018


def test_importing_the_seam_loads_no_engine() -> None:
    code = "import sys, agent.snmpclient; print(sorted(m for m in ('pysnmp', 'pyasn1', 'gufo') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("engine", ["pysnmp", "gufo"])
@pytest.mark.parametrize(("target", "message"), [
    (SnmpTarget("192.0.2.10", 161, "v2c"), "v2c needs a community"),
    (SnmpTarget("192.0.2.10", 161, "v3", user="zw", auth_key=AUTH), "v3 authPriv needs a user, an auth key"),
    (SnmpTarget("192.0.2.10", 161, "v3", auth_key=AUTH, priv_key=PRIV), "v3 authPriv needs a user, an auth key"),
])
def test_construction_checks_credentials(engine: str, target: SnmpTarget, message: str) -> None:
    with pytest.raises(ValueError, match=message) as failed:
        make_client(target, engine)  # type: ignore[arg-type]
    assert "192.0.2.10:161" in str(failed.value) and AUTH not in str(failed.value)


@pytest.mark.parametrize("engine", ["pysnmp", "gufo"])
@pytest.mark.parametrize("target", [V2C, V3])
def test_repr_and_construction_keep_secrets_and_do_no_io(engine: str, target: SnmpTarget) -> None:
    client = make_client(target, engine)  # type: ignore[arg-type]  # no event loop, no socket: just objects
    for secret in (COMMUNITY, AUTH, PRIV):
        assert secret not in repr(client)
    client.close()
    client.close()


# ---------------------------------------------------------------------------------------------- GufoClient


END = "end"  # a GETBULK answer whose varbinds were all NULL, noSuch* or endOfMibView (or an error answer)


class Script:
    """A stand-in for gufo-snmp's session and socket: each request takes the next step.

    A step is a result (a dict for GET, a list of rows ending with None at the subtree's end for GETBULK, a
    row for GETNEXT), ``END``, or an error to raise.
    """

    def __init__(self, steps: Iterable[object] = (), refreshes: Iterable[object] = ()) -> None:
        self.steps = list(steps)
        self.refresh_steps = list(refreshes)
        self.requests: list[tuple[str, object]] = []
        self.refreshes = 0
        self._sock = self

    def _next(self, steps: list[object]) -> object:
        step = steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    async def get_many(self, oids: Sequence[str]) -> dict[str, object]:
        self.requests.append(("get", list(oids)))
        answer = self._next(self.steps)
        assert isinstance(answer, dict)
        return answer

    async def _send(self, sender: Callable[[], None]) -> None:
        sender()

    async def _recv(self, receiver: Callable[[], T]) -> T:
        return receiver()

    def send_get_bulk(self, ctx: object) -> None:
        self.requests.append(("getbulk", ctx))

    def recv_get_bulk(self, ctx: object) -> object:
        answer = self._next(self.steps)
        if answer == END:
            raise StopAsyncIteration
        return answer

    def getnext(self, oid: str) -> Rows:
        self.requests.append(("getnext", oid))
        return Rows(self)

    async def refresh(self) -> None:
        self.refreshes += 1
        if self.refresh_steps:
            self._next(self.refresh_steps)


class Rows:
    """The async iterator of a GETNEXT walk: one step per ``__anext__``; StopAsyncIteration when out of steps."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def __aiter__(self) -> Rows:
        return self

    async def __anext__(self) -> object:
        if not self.script.steps:
            raise StopAsyncIteration
        return self.script._next(self.script.steps)


@pytest.fixture(autouse=True)
def readable_get_iter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the walk's GETBULK cursor a plain (oid, max-repetitions) tuple, so requests can be checked."""
    monkeypatch.setattr(snmp_gufo, "GetIter", lambda oid, repetitions=None: (oid, repetitions))


def scripted(target: SnmpTarget, script: Script, fresh_v3: bool = True) -> GufoClient:
    client = GufoClient(target)
    client._session = script  # type: ignore[assignment]
    if fresh_v3:
        client._used_at = time.monotonic()  # the v3 engine was just learnt
    return client


def run(client: GufoClient, use: Callable[[GufoClient], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(use(client))


def bulk(requests: list[tuple[str, object]]) -> list[object]:
    return [ctx for kind, ctx in requests if kind == "getbulk"]


def test_walk_returns_rows_with_exact_values_and_uses_the_target_shape() -> None:
    rows: list[tuple[str, SnmpValue]] = [(f"{IF_DESCR}.1", b"lo"), (f"{IF_DESCR}.2", b"\x00\xff"),
                                         (f"{IF_DESCR}.10", 18446744073709551615), (f"{IF_DESCR}.11", "10.0.0.1")]
    script = Script([rows[:2], [*rows[2:], None]])
    target = SnmpTarget("192.0.2.10", 161, "v2c", community=COMMUNITY, max_repetitions=40)
    assert run(scripted(target, script), lambda c: c.walk(IF_DESCR)) == rows
    assert bulk(script.requests) == [(IF_DESCR, 40)] * 2  # one cursor, asked twice

    script = Script(rows[:1])
    target = SnmpTarget("192.0.2.10", 161, "v2c", community=COMMUNITY, bulk=False)
    assert run(scripted(target, script), lambda c: c.walk(IF_DESCR)) == rows[:1]
    assert script.requests == [("getnext", IF_DESCR)]


def test_walk_gives_none_for_a_value_it_cannot_represent() -> None:
    script = Script([[(f"{IF_DESCR}.1", 1.5), None]])
    assert run(scripted(V2C, script), lambda c: c.walk(IF_DESCR)) == [(f"{IF_DESCR}.1", None)]


@pytest.mark.parametrize("oids", [
    pytest.param(["1.3.6.1.2.1.2.2.1.2.2", "1.3.6.1.2.1.2.2.1.2.1"], id="last-arc-back"),
    pytest.param(["1.3.6.1.2.1.2.2.1.2.2", "1.3.6.1.2.1.2.2.1.2.2"], id="same-oid-again"),
    pytest.param(["1.3.6.1.2.1.2.2.1.2.1.5", "1.3.6.1.2.1.2.2.1.2.1"], id="to-the-parent"),
    pytest.param(["1.3.6.1.2.1.2.2.1.2.9", "1.3.6.1.2.1.2.2.1.2.10", "1.3.6.1.2.1.2.2.1.2.3.1"], id="into-an-earlier"),
])
def test_walk_refuses_oids_that_do_not_increase(oids: list[str]) -> None:
    script = Script([[(oid, 1)] for oid in oids] + [[(f"{IF_DESCR}.99", 1)]] * 3)
    with pytest.raises(SnmpError, match=f"walking {IF_DESCR}, the agent returned {oids[-1]} after"):
        run(scripted(V2C, script), lambda c: c.walk(IF_DESCR))


def test_an_answer_too_big_for_the_buffer_halves_max_repetitions_and_keeps_no_duplicate() -> None:
    rows = [(f"{IF_DESCR}.{i}", i) for i in range(1, 6)]
    script = Script([rows[:2], SnmpDecodeError("incomplete"), [*rows, None], [*rows, None]])
    client = scripted(V2C, script)

    async def use(c: GufoClient) -> list[object]:
        return [await c.walk(IF_DESCR), await c.walk(IF_DESCR)]

    assert run(client, use) == [rows, rows]
    assert bulk(script.requests) == [(IF_DESCR, 25), (IF_DESCR, 25), (IF_DESCR, 12), (IF_DESCR, 12)]


def test_an_empty_answer_is_the_end_only_if_the_agent_names_no_next_oid() -> None:
    rows = [(f"{IF_DESCR}.{i}", i) for i in range(1, 4)]
    # the empty answer was an error (tooBig): the agent names a next OID, so ask again for fewer
    script = Script([rows[:1], END, [None], [*rows, None]])
    assert run(scripted(V2C, script), lambda c: c.walk(IF_DESCR)) == rows
    assert bulk(script.requests) == [(IF_DESCR, 25), (IF_DESCR, 25), (f"{IF_DESCR}.1", 1), (IF_DESCR, 12)]
    # the end of the agent's MIB view: nothing after the last row
    script = Script([rows, END, END])
    assert run(scripted(V2C, script), lambda c: c.walk(IF_DESCR)) == rows
    assert bulk(script.requests) == [(IF_DESCR, 25), (IF_DESCR, 25), (f"{IF_DESCR}.3", 1)]


def test_an_answer_that_never_fits_is_an_error() -> None:
    target = SnmpTarget("192.0.2.10", 161, "v2c", community=COMMUNITY, max_repetitions=2)
    script = Script([SnmpDecodeError("incomplete")] * 2)
    with pytest.raises(SnmpError, match="does not fit in one response"):
        run(scripted(target, script), lambda c: c.walk(IF_DESCR))


def test_walk_accepts_numeric_order_that_is_not_text_order() -> None:
    oids = [f"{IF_DESCR}.9", f"{IF_DESCR}.10", f"{IF_DESCR}.10.1", f"{IF_DESCR}.11", f"{IF_DESCR}.100"]
    script = Script([[(oid, 0) for oid in oids], END, END])
    assert [oid for oid, _ in run(scripted(V2C, script), lambda c: c.walk(IF_DESCR))] == oids


def test_walk_sends_a_step_again_after_a_timeout() -> None:
    script = Script([[(f"{IF_DESCR}.1", b"lo")], TimeoutError(), [(f"{IF_DESCR}.2", b"eth0"), None]])
    assert run(scripted(V2C, script), lambda c: c.walk(IF_DESCR)) == [(f"{IF_DESCR}.1", b"lo"),
                                                                        (f"{IF_DESCR}.2", b"eth0")]


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_get_tries_exactly_retries_plus_one_times(retries: int) -> None:
    target = SnmpTarget("192.0.2.10", 161, "v2c", community=COMMUNITY, timeout=0.5, retries=retries)
    script = Script([TimeoutError()] * (retries + 1) + [{}])
    with pytest.raises(SnmpTimeout, match=rf"no response in 0\.5s after {retries + 1} tries .*wrong community"):
        run(scripted(target, script), lambda c: c.get(["1.3.6.1.2.1.1.3.0"]))
    assert len(script.requests) == retries + 1 and len(script.steps) == 1


def refused() -> TimeoutError:
    """Return the error gufo-snmp raises for an ICMP port unreachable: a bare one, caused by the refusal."""
    error = TimeoutError()
    error.__cause__ = TimeoutError("connection refused")
    return error


def test_a_closed_port_is_told_apart_from_silence() -> None:
    script = Script([refused(), TimeoutError("connection refused")])
    with pytest.raises(SnmpTimeout, match="port 161 unreachable: the host answered .ICMP. that nothing listens"
                                          " there, 2 tries"):
        run(scripted(V2C, script), lambda c: c.get(["1.3.6.1.2.1.1.3.0"]))


def test_get_answers_every_requested_oid_once() -> None:
    script = Script([{"1.3.6.1.2.1.1.3.0": 42}])
    got = run(scripted(V2C, script), lambda c: c.get(["1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.99.0", "1.3.6.1.2.1.1.3.0"]))
    assert got == {"1.3.6.1.2.1.1.3.0": 42, "1.3.6.1.2.1.1.99.0": None}
    assert script.requests == [("get", ["1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.99.0"])]
    assert run(scripted(V2C, Script()), lambda c: c.get([])) == {}
    with pytest.raises(ValueError, match="not a numeric OID"):
        run(scripted(V2C, Script()), lambda c: c.get([".1.3.6.1.2.1.1.3.0"]))


def test_v3_learns_the_engine_first_and_again_after_two_idle_minutes() -> None:
    script = Script([{"1.3.6.1.2.1.1.3.0": 1}, {"1.3.6.1.2.1.1.3.0": 2}, {"1.3.6.1.2.1.1.3.0": 3}])
    client = scripted(V3, script, fresh_v3=False)

    async def use(c: GufoClient) -> list[int]:
        learnt = []
        await c.get(["1.3.6.1.2.1.1.3.0"])
        learnt.append(script.refreshes)
        await c.get(["1.3.6.1.2.1.1.3.0"])
        learnt.append(script.refreshes)
        c._used_at -= 121
        await c.get(["1.3.6.1.2.1.1.3.0"])
        learnt.append(script.refreshes)
        return learnt

    assert run(client, use) == [1, 1, 2]


def test_a_v3_report_makes_the_client_learn_the_engine_and_retry_once() -> None:
    script = Script([SnmpAuthError("authentication failed"), {"1.3.6.1.2.1.1.3.0": 7}])
    assert run(scripted(V3, script), lambda c: c.get(["1.3.6.1.2.1.1.3.0"])) == {"1.3.6.1.2.1.1.3.0": 7}
    assert script.refreshes == 1


def test_a_second_report_is_an_authentication_error_without_secrets() -> None:
    script = Script([SnmpAuthError("authentication failed")] * 2)
    with pytest.raises(SnmpError, match="authentication failed") as failed:
        run(scripted(V3, script), lambda c: c.get(["1.3.6.1.2.1.1.3.0"]))
    assert not isinstance(failed.value, SnmpTimeout)
    assert all(secret not in str(failed.value) for secret in (AUTH, PRIV))


def test_an_undecodable_answer_is_an_error() -> None:
    script = Script([SnmpDecodeError("invalid data")])
    with pytest.raises(SnmpError, match="192.0.2.10:161: bad response: invalid data"):
        run(scripted(V2C, script), lambda c: c.get(["1.3.6.1.2.1.1.3.0"]))


def test_a_socket_error_is_an_error_and_the_socket_is_opened_again() -> None:
    script = Script([OSError(101, "Network is unreachable")])
    client = scripted(V2C, script)
    with pytest.raises(SnmpError, match="cannot send: .*Network is unreachable"):
        run(client, lambda c: c.get(["1.3.6.1.2.1.1.3.0"]))
    assert client._session is None


def test_close_drops_the_session() -> None:
    client = scripted(V2C, Script())
    client.close()
    assert client._session is None
    client.close()
