"""Seeds and seed ranges: where each kind of episode draws its randomness.

Evaluations that a report shows use small seeds (``seed + i`` for episode ``i``, from
:data:`REPORT_SEED_BASE`); periodic validation during training uses seeds from
:data:`VALIDATION_SEED_BASE`; training episodes and baseline tuning from
:data:`TRAIN_SEED_BASE`. The ranges do not overlap for any realistic episode count, so a
policy or a tuned baseline is never reported on an episode it was trained or tuned on.
"""

from __future__ import annotations

import numpy as np

REPORT_SEED_BASE = 0
"""Reported evaluations: episode ``i`` of ``--seed s`` is seed ``s + i``."""
VALIDATION_SEED_BASE = 500_000
"""Periodic validation while training (model selection, early stopping)."""
TRAIN_SEED_BASE = 1_000_000
"""Training episodes and baseline tuning."""

EPISODE_SEED_HIGH = 2**63 - 1
"""Episode seeds are drawn uniformly from ``[0, EPISODE_SEED_HIGH)``."""


def draw_episode_seed(rng: np.random.Generator) -> int:
    """The seed of an env's next episode, drawn from the env's ``np_random``.

    The single env, every row of the batched env and the simulated backend draw it here, so
    row ``i`` of a batch seeded ``s + i`` plays exactly the episodes of a single env seeded
    ``s + i``, and a controller on a simulated backend seeded ``s`` the env's episode.
    """
    return int(rng.integers(EPISODE_SEED_HIGH))
