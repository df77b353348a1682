"""Real mosquitto and redis-server for the tests, on free loopback ports.

RC_TEST_MQTT_URL / RC_TEST_REDIS_URL point the suite at external servers instead (then
the fault tests that stop a server are skipped).
"""

from __future__ import annotations

from responsecentre.servers import Mosquitto, Redis, ServerProcess

__all__ = ["Mosquitto", "Redis", "ServerProcess"]
