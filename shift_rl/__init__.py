"""shift_rl: learn the shift algorithm of a self-optimizing control plane."""

from gymnasium.envs.registration import register, registry

from shift_rl.config import ConfigError, ScenarioConfig, load_scenario

__version__ = "0.1.0"
ENV_ID = "shift_rl/ResourceShift-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="shift_rl.env:ResourceShiftEnv",
        vector_entry_point="shift_rl.vector:ResourceShiftVectorEnv",
    )

__all__ = ["ENV_ID", "ConfigError", "ScenarioConfig", "__version__", "load_scenario"]
