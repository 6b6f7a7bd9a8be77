"""How either side reaches the MQTT broker (the ``mqtt:`` section of the agent and collector configs)."""

from __future__ import annotations

from typing import Literal

from zonewatch.strict import Duration, Secret, Strict


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
