"""snmpsim variation module ``zonewatch``: the simulated devices' changing values (``agent.sim.device`` has them).

snmpsim runs every ``.py`` file of its variation folder with globals of its own (this folder holds only this
one), calls ``init``, ``variate`` and ``shutdown``, and puts the requested device's own context into those
globals before each ``variate``; the hooks read it from there.
"""

from __future__ import annotations

from agent.sim.device import snmpsim_hooks

init, variate, shutdown = snmpsim_hooks(globals())
