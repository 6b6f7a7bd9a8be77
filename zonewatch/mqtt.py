"""How either side reaches the MQTT broker (the ``mqtt:`` section of the agent and collector configs), and the one
place a paho client is built from it (``make_client``): ``zonewatch.mqtt_socket.BufferedClient``, paho's client
reading its socket 64 KiB at a time.

paho is imported only when a client is built: loading a configuration does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from zonewatch.strict import Duration, Secret, Strict

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt


class MqttTls(Strict):
    """TLS to the broker: the server certificate is always verified against ``ca_file``."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


class MqttConfig(Strict):
    """A broker address and the credentials to use there."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: Secret | None = None
    client_id: str | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: Duration = 30.0
    tls: MqttTls | None = None


def make_client(cfg: MqttConfig, client_id: str, *, username: str | None = None, persistent: bool = False,
                manual_ack: bool = False, reconnect: tuple[float, float] | None = None) -> mqtt.Client:
    """Return a paho client (callback API 2, not connected) for the broker session ``client_id`` described by ``cfg``.

    - Protocol ``cfg.protocol``, MQTT 5 or 3.1.1. ``persistent``: the broker keeps the session and its queue while
      the client is away (3.1.1: ``clean_session`` off; over MQTT 5 that is chosen when connecting, by the caller's
      ``clean_start`` and session expiry interval). Otherwise a 3.1.1 session is clean.
    - Credentials: ``username`` (``cfg.username`` if None) with ``cfg.password``; none without a user name.
    - TLS when ``cfg.tls``: the broker's certificate verified against ``ca_file``; the client certificate and key
      if given.
    - ``manual_ack``: a received QoS 1 message is acknowledged when the caller says (``client.ack``), not on
      receipt.
    - ``reconnect``: paho's reconnect back-off, the first and the longest wait in seconds (None: paho's own, 1 s
      doubling to 120 s).
    """
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from zonewatch.mqtt_socket import BufferedClient

    v5 = cfg.protocol == "5"
    client = BufferedClient(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                            clean_session=None if v5 else not persistent, manual_ack=manual_ack)
    login = cfg.username if username is None else username
    if login:
        client.username_pw_set(login, cfg.password.get_secret_value() if cfg.password else None)
    if cfg.tls:
        client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file, keyfile=cfg.tls.key_file,
                       cert_reqs=ssl.CERT_REQUIRED)
    if reconnect is not None:
        client.reconnect_delay_set(min_delay=reconnect[0], max_delay=reconnect[1])  # type: ignore[arg-type]
    return client
