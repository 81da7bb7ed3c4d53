"""The simulator: pool, modules, demand, faults (see :mod:`shift_rl.sim.simulator`)."""

from shift_rl.sim.simulator import Simulator

__all__ = ["Simulator"]
