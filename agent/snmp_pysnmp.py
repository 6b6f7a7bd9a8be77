"""``SnmpClient`` over pysnmp 7's v3arch asyncio API (v2c, or v3 authPriv): the portable engine.

pysnmp is pure Python: it runs wherever Python does, and the trap receiver uses it too. Its BER decoder
(pyasn1) costs about 70-110 us of CPU per varbind, so ``agent.snmp_gufo`` is the default where its wheels
exist; see ``agent.snmpclient.make_client``.

Engines: pysnmp wants one ``SnmpEngine`` per process. ``PysnmpClient`` shares one engine among all
clients of the running event loop (the agent has one loop, so one engine), creates it at the first
request and closes it when the last client closes. The one exception is pysnmp's USM table, which holds
one set of keys per v3 user name: a client whose user name is already in use with different keys gets
an engine of its own, so that two devices never swap keys mid-request.
"""

from __future__ import annotations

import asyncio
import warnings
import weakref
from collections.abc import Sequence
from typing import Any, Final

from agent._compat import pysnmp as pysnmp_compat
from agent.snmpclient import SnmpError, SnmpTarget, SnmpTimeout, SnmpValue, _under, oid_key

# pysnmp 7.1 calls pysmi names that pysmi 2 deprecates, when pysmi happens to be installed (the [demo]
# extra brings it; a probe does not have it). The warnings are about pysnmp's own code, cannot be fixed
# from here and are silenced for pysnmp's compiler module only, at import and in ``_new_engine``.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pysnmp\.smi\.compiler")
    from pyasn1.error import PyAsn1Error
    from pyasn1.type import univ
    from pysnmp.error import PySnmpError
    from pysnmp.hlapi.v3arch.asyncio import (
        USM_AUTH_HMAC96_MD5,
        USM_AUTH_HMAC96_SHA,
        USM_AUTH_HMAC192_SHA256,
        USM_PRIV_CBC56_DES,
        USM_PRIV_CFB128_AES,
        USM_PRIV_CFB256_AES_BLUMENTHAL,
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        bulk_cmd,
        get_cmd,
        next_cmd,
    )
    from pysnmp.hlapi.varbinds import CommandGeneratorVarBinds
    from pysnmp.proto import errind, rfc1902, rfc1905
    from pysnmp.smi.compiler import add_mib_compiler

__all__ = ["PysnmpClient"]

_AUTH: Final[dict[str, Any]] = {
    "SHA": USM_AUTH_HMAC96_SHA,
    "SHA256": USM_AUTH_HMAC192_SHA256,
    "MD5": USM_AUTH_HMAC96_MD5,
}
# AES256 is the draft-blumenthal key extension, as net-snmp's "AES-256" (not Cisco's "AES-256-C").
_PRIV: Final[dict[str, Any]] = {
    "AES": USM_PRIV_CFB128_AES,
    "AES256": USM_PRIV_CFB256_AES_BLUMENTHAL,
    "DES": USM_PRIV_CBC56_DES,
}

_VARBINDS = CommandGeneratorVarBinds()
_NO_SUCH_NAME: Final = 2
_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_SharedEngine]]
_ENGINES = weakref.WeakKeyDictionary()


def _new_engine() -> Any:
    """Create an SnmpEngine whose MIB view is ready, so that requests never touch the MIB compiler."""
    engine = SnmpEngine()
    # pysnmp attaches its MIB compiler on the first request; doing it here, once, keeps its pysmi
    # deprecation warnings (see the import above) out of the request path.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pysnmp\.smi\.compiler")
        view = _VARBINDS.get_mib_view_controller(engine.cache)
        add_mib_compiler(view.mibBuilder, ifAvailable=True, ifNotAdded=True)
    return engine


class _SharedEngine:
    """One SnmpEngine, the number of clients using it and the v3 users registered in it."""

    def __init__(self) -> None:
        self.engine = _new_engine()
        self.clients = 0
        self.users: dict[str, tuple[tuple[str | None, ...], int]] = {}

    def accepts(self, user: str | None, keys: tuple[str | None, ...]) -> bool:
        return user is None or user not in self.users or self.users[user][0] == keys

    def add(self, user: str | None, keys: tuple[str | None, ...]) -> None:
        self.clients += 1
        if user is not None:
            count = self.users[user][1] if user in self.users else 0
            self.users[user] = (keys, count + 1)

    def remove(self, user: str | None) -> bool:
        """Drop one client; return True when none is left and the engine was closed."""
        self.clients -= 1
        if user is not None and user in self.users:
            keys, count = self.users[user]
            if count > 1:
                self.users[user] = (keys, count - 1)
            else:
                del self.users[user]
        if self.clients > 0:
            return False
        pysnmp_compat.close(self.engine)
        return True


def _acquire(target: SnmpTarget) -> tuple[asyncio.AbstractEventLoop, _SharedEngine]:
    loop = asyncio.get_running_loop()
    pool = _ENGINES.setdefault(loop, [])
    user = target.user if target.version == "v3" else None
    keys = (target.auth_protocol, target.auth_key, target.priv_protocol, target.priv_key)
    shared = next((s for s in pool if s.accepts(user, keys)), None)
    if shared is None:
        shared = _SharedEngine()
        pool.append(shared)
    shared.add(user, keys)
    return loop, shared


def _release(loop: asyncio.AbstractEventLoop, shared: _SharedEngine, target: SnmpTarget) -> None:
    if shared.remove(target.user if target.version == "v3" else None):
        pool = _ENGINES.get(loop, [])
        if shared in pool:
            pool.remove(shared)
        if not pool:
            _ENGINES.pop(loop, None)


def _value(value: Any) -> SnmpValue:
    """Return the plain Python value of a pysnmp response value."""
    if isinstance(value, (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView, univ.Null)):
        return None
    if isinstance(value, rfc1902.IpAddress):
        return ".".join(str(b) for b in value.asNumbers())
    if isinstance(value, univ.OctetString):
        return bytes(value.asOctets())
    if isinstance(value, univ.ObjectIdentifier):
        return ".".join(str(n) for n in value.asTuple())
    if isinstance(value, univ.Integer):
        return int(value)
    return None


class PysnmpClient:
    """``SnmpClient`` over pysnmp's v3arch asyncio API (v2c, or v3 authPriv)."""

    def __init__(self, target: SnmpTarget) -> None:
        self.target = target
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shared: _SharedEngine | None = None
        self._transport: Any = None
        if target.version == "v2c":
            if not target.community:
                raise ValueError(f"{target.label}: v2c needs a community")
            self._auth: Any = CommunityData(target.community, mpModel=1)
        else:
            if not (target.user and target.auth_key and target.priv_key):
                raise ValueError(f"{target.label}: v3 authPriv needs a user, an auth key and a priv key")
            self._auth = UsmUserData(
                target.user,
                authKey=target.auth_key,
                privKey=target.priv_key,
                authProtocol=_AUTH[target.auth_protocol],
                privProtocol=_PRIV[target.priv_protocol],
            )
        self._context = ContextData()

    def __repr__(self) -> str:
        return f"PysnmpClient({self.target!r})"

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]:
        """GET ``oids`` in one request."""
        for oid in oids:
            oid_key(oid)
        if not oids:
            return {}
        engine, transport = await self._session()
        request = [_request(oid) for oid in oids]
        call = get_cmd(engine, self._auth, transport, self._context, *request, lookupMib=False)
        response = await self._call(call)
        if len(response) != len(oids):
            raise SnmpError(self.target.label, f"asked for {len(oids)} values, got {len(response)}")
        return {oid: _value(value) for oid, (_, value) in zip(oids, response, strict=True)}

    async def walk(self, root: str) -> list[tuple[str, SnmpValue]]:
        """Walk the subtree under ``root`` with GETBULK (or GETNEXT), in OID order."""
        root_key = oid_key(root)
        engine, transport = await self._session()
        out: list[tuple[str, SnmpValue]] = []
        last = root_key
        while True:
            request = _request(".".join(map(str, last)))
            if self.target.bulk:
                call = bulk_cmd(engine, self._auth, transport, self._context, 0, self.target.max_repetitions,
                                request, lookupMib=False)
            else:
                call = next_cmd(engine, self._auth, transport, self._context, request, lookupMib=False)
            response = await self._call(call, walking=True)
            if not response:
                return out
            for name, value in response:
                key = tuple(name.asTuple())
                if isinstance(value, rfc1905.EndOfMibView) or not _under(key, root_key):
                    return out
                if key <= last:
                    raise SnmpError(self.target.label, f"walking {root}, the agent returned {_dotted(key)}"
                                    f" after {_dotted(last)} (OIDs must increase)")
                out.append((_dotted(key), _value(value)))
                last = key

    def close(self) -> None:
        """Give back the shared engine; the last client of an event loop closes it."""
        shared, loop = self._shared, self._loop
        self._shared = self._loop = self._transport = None
        if shared is not None and loop is not None:
            _release(loop, shared, self.target)

    async def _session(self) -> tuple[Any, Any]:
        """Return the engine and the transport target, creating them at the first request."""
        if self._shared is None:
            self._loop, self._shared = _acquire(self.target)
        elif self._loop is not asyncio.get_running_loop():
            raise RuntimeError(f"{self!r} was opened on another event loop")
        if self._transport is None:
            target = self.target
            try:
                self._transport = await UdpTransportTarget.create(
                    (target.host, target.port), timeout=target.timeout, retries=target.retries
                )
            except PySnmpError as exc:
                raise SnmpError(target.label, target.scrub(str(exc))) from None
        return self._shared.engine, self._transport

    async def _call(self, call: Any, walking: bool = False) -> Sequence[tuple[Any, Any]]:
        """Await one pysnmp command; return its var-binds or raise SnmpError/SnmpTimeout."""
        target = self.target
        try:
            indication, status, index, varbinds = await call
        except (PySnmpError, PyAsn1Error) as exc:
            raise SnmpError(target.label, target.scrub(f"{type(exc).__name__}: {exc}")) from None
        if indication:
            if isinstance(indication, errind.RequestTimedOut):
                if target.version == "v3" and self._shared is not None and self._transport is not None:
                    _forget_peer(self._shared.engine, self._transport.transport_address)
                self._transport = None  # resolve the host again next time: its address may have moved
                hint = "wrong community?" if target.version == "v2c" else "wrong priv key?"
                raise SnmpTimeout(
                    target.label,
                    f"no response in {target.timeout:g}s after {target.retries + 1} tries"
                    f" (host down, port closed or {hint})",
                )
            raise SnmpError(target.label, target.scrub(str(indication)))
        if status and walking and int(status) == _NO_SUCH_NAME:
            return []  # an SNMPv1 agent behind a v2c proxy ends a walk this way
        if status:
            where = ""
            if index and 0 < int(index) <= len(varbinds):
                where = f" at {_dotted(tuple(varbinds[int(index) - 1][0].asTuple()))}"
            raise SnmpError(target.label, target.scrub(f"agent answered {_pretty(status)}{where}"))
        return list(varbinds)


def _forget_peer(engine: Any, address: object) -> None:
    """Drop the engine ID pysnmp learnt for ``address``, so that the next request learns it again.

    An agent that restarts may come back with a new engine ID and then drops every message for the old
    one; pysnmp would keep sending those for minutes. The cache is private to pysnmp's SNMPv3 message
    processing model (7.1); if it is not there, nothing is done.
    """
    model = engine.message_processing_subsystems.get(3)
    cache = getattr(model, "_SnmpV3MessageProcessingModel__engineIdCache", None)
    if isinstance(cache, dict):
        for key in [key for key in cache if isinstance(key, tuple) and key[1:] == (address,)]:
            del cache[key]


def _request(oid: str) -> Any:
    return ObjectType(ObjectIdentity(oid))


def _pretty(value: Any) -> str:
    pretty = getattr(value, "prettyPrint", None)
    return str(pretty() if callable(pretty) else value)


def _dotted(key: tuple[int, ...]) -> str:
    return ".".join(map(str, key))
