"""A warm start for PPO: behaviour cloning of a tuned heuristic (``pretrain:`` of a config).

PPO from random weights on a broad suite spends its first rollouts relearning what any
autoscaler knows (give units to the modules that queue, take them from the idle), and at the
step counts that fit in minutes on two cores a generalist trained so learned next to nothing.
Cloning a tuned heuristic first starts PPO at the heuristic's level, on every member of the
suite, and leaves it to PPO to improve on it (RL from demonstrations, as DQfD or AlphaStar's
supervised start):

1. **Demonstrations.** The ``teacher`` (a heuristic, with the parameters tuned on the same
   suite's train split when ``agents/suites/<suite>[-without-<families>]/`` holds them, as
   :func:`shift_rl.benchmark.baseline_parameters` finds them for the leaderboard; with
   ``leave_out`` and no parameters tuned without those families, the ones tuned on the
   shipped scenarios, so no left-out data reaches the policy through its teacher) acts in a
   copy of the suite's training envs whose rows have seeds of their own
   (:data:`ROW_SEED_OFFSET`), ``rollouts x ppo.n_steps`` ticks per row: whole episodes, since
   ``n_steps`` is a multiple of every member's episode length. Recorded: padded observations
   and masks, the teacher's plan in the policy's levels (:meth:`~shift_rl.suite_training.
   Padder.pad_actions`), the training reward.
2. **Cloning.** ``epochs`` passes of Adam over shuffled minibatches of the actor's negative
   log-likelihood of the teacher's levels (masked as in training; an entry where the teacher
   changes the allocation weighs ``change_weight``, one where it waits 1) plus ``vf_coef``
   times the critic's squared error to the teacher's discounted return-to-go (PPO's
   ``gamma``), so PPO's first advantages are measured against the value of the teacher's
   play, not of a random policy's.
3. **DAgger** (``rounds`` > 1; Ross et al. 2011). A clone errs where its teacher never
   went, and its errors take it further there. Each later round lets the student so far
   play (deterministically) on rows of new seeds, records what the teacher would have done
   in every state it visits, adds those rows to the demonstrations and clones them all
   again. The critic's targets stay the returns of the play recorded.

**Planners as teachers.** ``mpc`` (the causal model-predictive controller) and
``oracle-mpc`` (the same planner on the true demand, bound to its row of the training envs'
simulator: a privileged teacher, the student seeing only the observation, as in "Learning
by Cheating", Chen et al. 2019) make the decisions no heuristic makes: on the Google 2011
members, whose demand exceeds the pool (by 8 % to 96 %, ``benchmarks/overload.py``), they
take units from the modules they cannot serve and complete others, while ``hpa`` and
``potential`` move almost nothing. ``mpc`` changes about 4 % of the plan entries (on the
tests' small suite) and waits on the rest: cloned plainly, the
student learns to wait (1.5 units moved per ``default`` episode after 172,800 PPO steps);
``change_weight`` (8) makes their shifts count (tested: 0.01 -> 0.37 agreement on them), and
the student then triages too (benchmarks/RESULTS.md, "Distilling the planner").

**An advised network** (``network.advisor``) whose teacher is its advisor imitates the advice
its observations carry (:meth:`~shift_rl.suite_training.SuiteTrainingEnv.advice_actions`):
the advisor runs once a tick, not twice.

Only train splits are played, and with training seeds: the warm start sees nothing the
leaderboard reports on. What it costs and gives is in ``configs/train/generalist.yaml`` (a
DAgger student of ``mpc``: the release) and ``configs/train/generalist-hpa-clone.yaml``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shift_rl.config import ScenarioConfig
from shift_rl.scenario import ScenarioParams

logger = logging.getLogger(__name__)

ROW_SEED_OFFSET = 2**32
"""The teacher's rows play base seeds ``seed * 1000 + i + 2**32``: episodes apart from PPO's
rows (``seed * 1000 + i``)."""
ROUND_SEED_STRIDE = 2**24
"""DAgger round ``r`` adds ``r * 2**24`` to them: every round plays episodes of its own."""


@dataclass
class Demonstrations:
    """``T`` ticks of ``n`` rows, time-major: what :func:`clone` learns from."""

    obs: np.ndarray  # (T, n, D) float32, padded
    actions: np.ndarray  # (T, n, E) int64, the policy's levels
    masks: np.ndarray  # (T, n, E * L) bool
    rewards: np.ndarray  # (T, n) float32
    dones: np.ndarray  # (T, n) bool: the episode ended at this tick

    def __add__(self, other: Demonstrations) -> Demonstrations:
        """Both sets, side by side as more rows (DAgger's aggregate): returns stay per row."""
        return Demonstrations(*(np.concatenate([a, b], axis=1) for a, b in
                                zip(self.fields(), other.fields(), strict=True)))  # fmt: skip

    def fields(self) -> tuple[np.ndarray, ...]:
        return self.obs, self.actions, self.masks, self.rewards, self.dones

    def returns(self, gamma: float) -> np.ndarray:
        """(T, n) discounted return-to-go within each episode."""
        out = np.zeros_like(self.rewards, dtype=np.float64)
        acc = np.zeros(self.rewards.shape[1])
        for t in range(self.rewards.shape[0] - 1, -1, -1):
            acc = np.where(self.dones[t], 0.0, acc) * gamma + self.rewards[t]
            out[t] = acc
        return out.astype(np.float32)


def teacher_maker(cfg: Any) -> tuple[Any, dict[str, Any]]:
    """``make(scenario) -> policy`` of the config's teacher and what its parameters are."""
    return heuristic_maker(cfg, cfg.pretrain.teacher)


def heuristic_maker(cfg: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """``make(scenario) -> policy`` of a heuristic with the parameters tuned on the config's
    suite without its ``leave_out`` families (module docstring, step 1), and what they are:
    ``{"params", "tuned_on", ...}`` (the teacher's, and an advisor's: ``network.advisor``)."""
    from shift_rl.agents import SUITE_TUNED_DIR, make_policy
    from shift_rl.benchmark import baseline_parameters
    from shift_rl.suite import left_out_name, load_suite

    suite = load_suite(cfg.suite)
    fams = sorted(set(cfg.leave_out))
    tuned_dir = None
    if fams and not (SUITE_TUNED_DIR / left_out_name(suite.name, fams)).is_dir():
        tuned_dir = "default"  # the suite's own were tuned on the left-out families too
    untuned = {"params": {}, "tuned_on": "untuned (its default parameters)"}
    chosen = baseline_parameters(suite.name, [name], tuned_dir, fams or None).get(name, untuned)
    params = chosen["params"]

    def make(scenario: ScenarioConfig) -> Any:
        return make_policy(name, ScenarioParams.from_config(scenario), **params)

    return make, chosen


def advisor_maker(cfg: Any) -> Any:
    """``make(scenario) -> policy`` of the config's ``network.advisor``, None without one."""
    return None if cfg.network.advisor is None else heuristic_maker(cfg, cfg.network.advisor)[0]


def collect(cfg: Any, selection: Any, student: Any = None, round_: int = 0) -> Demonstrations:
    """The teacher's play on the suite's train members (module docstring, step 1), or, given
    the ``student`` model, the student's deterministic play labelled with what the teacher
    would do in each state it visits (DAgger, step 3). Round ``round_`` plays rows of its own
    seeds."""
    from shift_rl.suite_training import SuiteTrainingEnv

    make, chosen = teacher_maker(cfg)
    first = cfg.seed * 1000 + ROW_SEED_OFFSET + round_ * ROUND_SEED_STRIDE
    env = SuiteTrainingEnv(
        selection.scenarios,
        [first + i for i in range(cfg.n_envs)],
        cfg.suite_max_modules,
        cfg.suite_kinds,
        cfg.suite_amount_levels,
        regret=cfg.reward == "regret",
        advisor=advisor_maker(cfg),
    )
    ticks = cfg.pretrain.rollouts * cfg.ppo.n_steps
    n, width = env.num_envs, env.observation_space.shape[0]
    entries = len(env.action_space.nvec)
    demo = Demonstrations(
        obs=np.empty((ticks, n, width), dtype=np.float32),
        actions=np.empty((ticks, n, entries), dtype=np.int64),
        masks=np.empty((ticks, n, int(env.action_space.nvec.sum())), dtype=bool),
        rewards=np.empty((ticks, n), dtype=np.float32),
        dones=np.empty((ticks, n), dtype=bool),
    )
    started = time.perf_counter()
    own = cfg.network.advisor == cfg.pretrain.teacher  # the advice is the teacher's plan
    maskable = cfg.algo == "maskable_ppo"
    obs = env.reset()
    for t in range(ticks):
        demo.obs[t] = obs
        demo.masks[t] = env.action_masks()
        demo.actions[t] = env.advice_actions() if own else env.teacher_actions(make)
        played = demo.actions[t]
        if student is not None:
            kwargs = {"action_masks": demo.masks[t]} if maskable else {}
            played = student.predict(obs, deterministic=True, **kwargs)[0]
        obs, rewards, dones, _ = env.step(played)
        demo.rewards[t], demo.dones[t] = rewards, dones
    logger.info(
        "pretrain: %d steps played by %s, labelled by %s (%s), in %.0f s",
        ticks * n, "the student" if student is not None else "the teacher",
        cfg.pretrain.teacher, chosen["tuned_on"], time.perf_counter() - started,
    )  # fmt: skip
    return demo


def imitation_loss(
    policy: Any,
    obs: torch.Tensor,
    actions: torch.Tensor,
    no_change: int,
    change_weight: float = 1.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, nll)``: the policy's values of ``obs`` and the mean over rows of the negative
    log-likelihood of the teacher's ``actions``, each plan entry where the teacher changes the
    allocation (level != ``no_change``) weighing ``change_weight``, the others 1."""
    values, log_prob, _ = policy.evaluate_actions(obs, actions, **kwargs)
    if change_weight == 1.0:
        return values, -log_prob.mean()
    # per entry, from the distribution evaluate_actions just built (PaddedMultiCategorical)
    per_entry = policy.action_dist.log_p.gather(2, actions[..., None]).squeeze(2)
    weight = torch.where(actions == no_change, 1.0, change_weight)
    return values, -(per_entry * weight).sum(dim=1).mean()


def clone(model: Any, demo: Demonstrations, cfg: Any) -> dict[str, float]:
    """Fit the model's actor to the teacher's levels and its critic to the teacher's returns
    (module docstring, step 2); the final epoch's mean losses."""
    pc = cfg.pretrain
    policy = model.policy
    obs = torch.as_tensor(demo.obs.reshape(-1, demo.obs.shape[-1]))
    actions = torch.as_tensor(demo.actions.reshape(-1, demo.actions.shape[-1]))
    masks = demo.masks.reshape(-1, demo.masks.shape[-1])
    returns = torch.as_tensor(demo.returns(cfg.ppo.gamma).reshape(-1))
    optimizer = torch.optim.Adam(policy.parameters(), lr=pc.learning_rate, eps=1e-5)
    gen = np.random.default_rng(cfg.seed)
    maskable = cfg.algo == "maskable_ppo"
    no_change = len(cfg.suite_amount_levels)  # level K of 2K + 1
    size = obs.shape[0]
    policy.set_training_mode(True)
    last = {}
    for _ in range(pc.epochs):
        order = gen.permutation(size)
        sums = {"nll": 0.0, "value": 0.0}
        for start in range(0, size, pc.batch_size):
            idx = order[start : start + pc.batch_size]
            kwargs = {"action_masks": masks[idx]} if maskable else {}
            values, nll = imitation_loss(policy, obs[idx], actions[idx], no_change,
                                         pc.change_weight, **kwargs)  # fmt: skip
            value = torch.nn.functional.mse_loss(values.flatten(), returns[idx])
            loss = nll + pc.vf_coef * value
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.ppo.max_grad_norm)
            optimizer.step()
            sums["nll"] += nll.item() * idx.size
            sums["value"] += value.item() * idx.size
        last = {k: v / size for k, v in sums.items()}
    policy.set_training_mode(False)
    return last


def pretrain(model: Any, cfg: Any, selection: Any) -> dict[str, float]:
    """Collect the teacher's play and clone it into ``model``, then ``rounds - 1`` times the
    student's play labelled by the teacher, cloning the aggregate each time (a no-op for
    ``rollouts: 0``)."""
    if not cfg.pretrain.rollouts:
        return {}
    demo, losses = None, {}
    for round_ in range(cfg.pretrain.rounds):
        new = collect(cfg, selection, model if round_ else None, round_)
        demo = new if demo is None else demo + new
        started = time.perf_counter()
        losses = clone(model, demo, cfg)
        logger.info(
            "pretrain: round %d cloned in %.0f s, per-entry nll %.4f, value mse %.4f",
            round_ + 1, time.perf_counter() - started, losses["nll"] / demo.actions.shape[-1],
            losses["value"],
        )  # fmt: skip
    return losses


__all__ = ["ROW_SEED_OFFSET", "Demonstrations", "advisor_maker", "clone", "collect",
           "heuristic_maker",
           "imitation_loss", "pretrain", "teacher_maker"]  # fmt: skip
