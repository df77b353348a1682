"""Device simulator: a pure seeded core (`simulator`) and an MQTT shell (`mqtt`).

`responsecentre sim ...` runs `responsecentre.sim.mqtt.main(argv)`.
"""

from responsecentre.sim.homes import SimDevice, SimHome, build_homes, load_homes
from responsecentre.sim.simulator import Publish, Simulator

__all__ = ["Publish", "SimDevice", "SimHome", "Simulator", "build_homes", "load_homes"]
