"""The simulator: pool, modules, demand, faults (see :mod:`shift_rl.sim.simulator`)."""

from shift_rl.sim.params import ScenarioParams
from shift_rl.sim.simulator import Simulator

__all__ = ["ScenarioParams", "Simulator"]
