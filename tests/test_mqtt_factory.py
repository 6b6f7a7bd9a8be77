"""``zonewatch.mqtt.make_client``: the one place a paho client is built from an ``MqttConfig``.

paho shows the session options it was given (client id, clean session (3.1.1 only), manual acknowledgement, reconnect
back-off, TLS context) only in private attributes, read here in ``_options`` alone. TLS is checked by what it
does: an in-memory handshake (no socket) against a server with a certificate from the configured CA, which
requires the client's certificate.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.uplink import make_client as agent_client
from collector.alerting.notify.mqtt import MqttPublisher
from tests.tlsbroker import write_client_pki
from zonewatch.mqtt import MqttConfig, make_client


def _options(client: mqtt.Client) -> dict[str, Any]:
    return {"client_id": client._client_id.decode(), "clean_session": getattr(client, "_clean_session", None),
            "manual_ack": client._manual_ack, "reconnect": (client._reconnect_min_delay, client._reconnect_max_delay)}


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("persistent", [False, True])
def test_options_for_either_protocol(protocol: str, persistent: bool) -> None:
    cfg = MqttConfig.model_validate({"protocol": protocol, "client_id": "ignored-here"})
    client = make_client(cfg, "zonewatch-collector", persistent=persistent, manual_ack=persistent)
    assert client.callback_api_version == CallbackAPIVersion.VERSION2
    assert client.protocol == (mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
    # MQTT 5 has no clean session flag (the session is chosen when connecting); 3.1.1 has it, on unless persistent
    assert _options(client) == {"client_id": "zonewatch-collector",
                                "clean_session": None if protocol == "5" else not persistent,
                                "manual_ack": persistent, "reconnect": (1, 120)}   # paho's own back-off
    assert client._ssl_context is None


def test_reconnect_back_off() -> None:
    client = make_client(MqttConfig(), "c", reconnect=(2.5, 60))
    assert _options(client)["reconnect"] == (2.5, 60)


def test_credentials_are_the_configs_or_another_user_name_with_the_configs_password() -> None:
    cfg = MqttConfig.model_validate({"username": "collector", "password": "s3cret"})
    client = make_client(cfg, "c")
    assert (client.username, client.password) == ("collector", "s3cret")
    client = make_client(cfg, "c-urgent", username="collector-urgent")
    assert (client.username, client.password) == ("collector-urgent", "s3cret")
    for no_login in (make_client(MqttConfig(), "c"), make_client(cfg, "c", username="")):
        assert (no_login.username, no_login.password) == (None, None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    files = write_client_pki(tmp_path_factory.mktemp("pki"))
    return {"ca.crt": files.ca, "other-ca.crt": files.other_ca, "server.crt": files.server_cert,
            "server.key": files.server_key, "client.crt": files.client_cert, "client.key": files.client_key}


def _handshake(client: mqtt.Client, pki: dict[str, Path]) -> dict[str, Any] | None:
    """Shake hands in memory with a broker showing ``server.crt`` (for 127.0.0.1) and asking for a client
    certificate from ``ca.crt``; return the client certificate it received (None if none came)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    server_ctx.load_verify_locations(pki["ca.crt"])
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    pipes = [(ssl.MemoryBIO(), ssl.MemoryBIO()) for _ in range(2)]   # (client to server, server to client)
    to_server, to_client = pipes[0][0], pipes[1][0]
    tls_client = client._ssl_context.wrap_bio(to_client, to_server, server_hostname="127.0.0.1")
    tls_server = server_ctx.wrap_bio(to_server, to_client, server_side=True)
    done = {tls_client: False, tls_server: False}
    for _ in range(20):
        for end in done:
            if not done[end]:
                try:
                    end.do_handshake()
                    done[end] = True
                except ssl.SSLWantReadError:
                    pass
        if all(done.values()):
            return tls_server.getpeercert()
    raise AssertionError("the handshake did not finish")


def test_tls_verifies_the_broker_against_the_configured_ca_and_presents_the_client_certificate(
        pki: dict[str, Path]) -> None:
    cfg = MqttConfig.model_validate({"tls": {"ca_file": str(pki["ca.crt"]), "cert_file": str(pki["client.crt"]),
                                             "key_file": str(pki["client.key"])}})
    client = make_client(cfg, "p1")
    assert client._ssl_context.verify_mode == ssl.CERT_REQUIRED
    peer = _handshake(client, pki)
    assert peer is not None and dict(x[0] for x in peer["subject"])["commonName"] == "p1"

    without_cert = make_client(MqttConfig.model_validate({"tls": {"ca_file": str(pki["ca.crt"])}}), "p1")
    assert _handshake(without_cert, pki) is None   # none presented

    other_ca = make_client(MqttConfig.model_validate({"tls": {"ca_file": str(pki["other-ca.crt"])}}), "p1")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(other_ca, pki)


def test_the_callers_keep_their_client_ids_and_options() -> None:
    cfg = MqttConfig.model_validate({"protocol": "3.1.1"})
    agent = agent_client(cfg, "zw-z1-p1")
    assert _options(agent)["client_id"] == "zw-z1-p1" and _options(agent)["clean_session"] is True
    low, high = _options(agent)["reconnect"]
    assert 1.0 <= low <= 3.0 and high == 60
    named = agent_client(cfg.model_copy(update={"client_id": "own"}), "zw-z1-p1")
    assert _options(named)["client_id"] == "own"

    notify = MqttPublisher(cfg.model_copy(update={"client_id": "central"})).client
    assert _options(notify) == {"client_id": "central-notify", "clean_session": True, "manual_ack": False,
                                "reconnect": (1, 30)}
    assert _options(MqttPublisher(cfg).client)["client_id"] == "zonewatch-collector-notify"
