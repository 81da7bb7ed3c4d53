"""Training on a suite's train members of different layouts: one padded VecEnv.

:class:`SuiteTrainingEnv` is an SB3 ``VecEnv`` over scenarios of different module counts
(and amount levels), for the modular network (:mod:`shift_rl.modular`), which runs on any
module count but needs one observation and action shape per rollout buffer:

- **Grouping.** The scenarios are grouped by layout (:func:`~shift_rl.scenario.
  layout_differences` empty against the group's first): one
  :class:`~shift_rl.plane.PlaneBatch` per group, its scenarios as the batch's variants.
- **Rows.** The ``n`` envs are split over the groups in proportion to the number of
  scenarios in each, at least one row per group, by largest remainder (ties to the earlier
  group) (:func:`split_rows`); so ``n`` must be at least the number of groups. Row ``i``
  (global order: group by group) has base seed ``base_seeds[i]``; its episode ``k`` plays
  the group's scenario and seed :func:`~shift_rl.training_envs.episode_plan` of
  ``(base_seeds[i], k, scenarios in the group)``, seeded as ``ResourceShiftEnv.reset`` seeds
  (:func:`~shift_rl.seeds.draw_episode_seed`), exactly as
  :class:`~shift_rl.training_envs.BatchedTrainingEnv` draws; the regret reward subtracts the
  oracle bound of the same tick, as there.
- **Padded observation** (:func:`padded_names`): the observation layout of
  :func:`~shift_rl.observation.feature_layout` for ``max_modules`` modules named
  ``m0 .. m{M-1}`` (per-module blocks, ``time.*``, ``pool.*``), then one ``m{i}.present``
  flag per slot and one ``pool.present.<kind>`` per kind. A scenario's module ``j`` sits in
  slot ``j``; slots past its module count are zero with ``present`` 0, and so are the kinds
  it lacks (a ``[cpu]`` scenario in a ``[cpu, mem]`` layout). The modular network reads the
  flags (by name) and leaves padding out of its pooling, critic and actions
  (:func:`shift_rl.modular.forward`): its head is per kind and does not know which kind it
  reads, so one- and two-kind scenarios train the same weights.
- **Padded action**: ``MultiDiscrete([2K + 1] * (max_modules * R))`` for the policy's amount
  levels ``K``; a scenario's entry ``j * R_s + s`` is the padded entry ``j * R + r`` of its
  kind ``s`` (:attr:`Padder.entry_index`). Its masks are the scenario's; a padding entry
  allows only "no change" (level ``K``).

**Teacher actions** (:meth:`SuiteTrainingEnv.teacher_actions`): a heuristic per row acts on
the row's own observation and mask; its plan, in the policy's levels
(:meth:`Padder.pad_actions`), is what the warm start of :mod:`shift_rl.pretrain` imitates.

**Advice** (``advisor``, ``network.advisor`` of a config): a heuristic per row acts the same
way after every reset and step, and its plan goes into the observation, one
``m{i}.advice.<kind>`` feature per padded entry after the presence flags
(:meth:`Padder.advise`; padding entries 0, no change); the terminal observation carries the
advice on it. An advised network reads it as a token feature and leans on it
(:class:`shift_rl.modular.ModularWeights`); at inference the exported policy runs the same
advisor itself.

**Restrictions** (scenarios outside them are left out with a note, :attr:`SuiteSelection.
dropped`): the resource kinds must be ``kinds`` or some of them in the same order (default
``[cpu]``: the suite's two-kind members are not trained on; ``[cpu, mem]`` trains on both),
at most ``max_modules`` modules, plan actions, and
amount levels that hold the policy's ``amount_levels`` (default ``[1, 2, 4]``). A scenario
with more levels (``large``: ``[1, 2, 4, 8]``) is trained on through the level map
:meth:`shift_rl.modular.ModularPolicy.bind_levels` uses at inference: the policy's levels go
to the matching ones, the others are never chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from shift_rl.config import ConfigError, ScenarioConfig
from shift_rl.modular import (
    ADVICE,
    KIND_PRESENT,
    PRESENT,
    decode_advice,
    encode_advice,
    level_map,
    policy_levels,
)
from shift_rl.observation import feature_layout
from shift_rl.plane import PlaneBatch
from shift_rl.scenario import ScenarioParams, layout_differences
from shift_rl.training_envs import InProcessVecEnv, start_episodes

DEFAULT_KINDS = ("cpu",)
DEFAULT_LEVELS = (1, 2, 4)


def padded_features(
    max_modules: int, kinds: Sequence[str], advised: bool = False
) -> list[tuple[str, float, float]]:
    """``(name, low, high)`` of the padded observation, in order (see the module docstring)."""
    slots = [f"m{i}" for i in range(max_modules)]
    out = [(f.name, float(f.low), float(f.high)) for f in feature_layout(slots, list(kinds))]
    out += [(f"{m}.{PRESENT}", 0.0, 1.0) for m in slots]
    out += [(f"{KIND_PRESENT}{k}", 0.0, 1.0) for k in kinds]
    if advised:  # entry order: slot by slot, kind by kind
        out += [(f"{m}.{ADVICE}.{k}", -1.0, 1.0) for m in slots for k in kinds]
    return out


def padded_names(max_modules: int, kinds: Sequence[str], advised: bool = False) -> list[str]:
    """The padded observation's feature names (what :mod:`shift_rl.modular` reads)."""
    return [n for n, _, _ in padded_features(max_modules, kinds, advised)]


class Padder:
    """One scenario's observations, masks and actions in the padded layout."""

    def __init__(
        self,
        scenario: ScenarioConfig,
        max_modules: int,
        kinds: Sequence[str] = DEFAULT_KINDS,
        amount_levels: Sequence[int] = DEFAULT_LEVELS,
        advised: bool = False,
    ) -> None:
        params = ScenarioParams.from_config(scenario)
        self.kinds = tuple(kinds)
        self.num_modules = m = len(scenario.modules)
        own = list(scenario.resource_names)
        if not set(own) <= set(self.kinds) or sorted(own, key=self.kinds.index) != own:
            raise ValueError(f"resource kinds {own}, not {list(self.kinds)} or some in order")
        if m > max_modules:
            raise ValueError(f"{m} modules, above max_modules {max_modules}")
        if scenario.action.mode != "plan":
            raise ValueError(f"action.mode {scenario.action.mode!r}, not plan")
        self.level_map = level_map(amount_levels, params.amount_levels)
        self.to_policy = policy_levels(amount_levels, params.amount_levels)
        self.levels = 2 * len(amount_levels) + 1
        self.scenario_levels = 2 * len(params.amount_levels) + 1
        feats = padded_features(max_modules, kinds, advised)
        at = {n: i for i, (n, _, _) in enumerate(feats)}
        self.width = len(feats)
        real = [f.name for f in feature_layout([x.name for x in scenario.modules], own)]
        slot = {x.name: f"m{j}" for j, x in enumerate(scenario.modules)}
        index = []
        for name in real:
            head, _, rest = name.partition(".")
            index.append(at[f"{slot[head]}.{rest}"] if head in slot else at[name])
        self.obs_index = np.array(index, dtype=np.int64)
        self.template = np.zeros(self.width, dtype=np.float32)
        self.template[[at[f"m{j}.{PRESENT}"] for j in range(m)]] = 1.0
        self.template[[at[f"{KIND_PRESENT}{k}"] for k in own]] = 1.0
        r = len(self.kinds)
        self.entries, self.total_entries = m * len(own), max_modules * r
        # the scenario's plan entry j * R_s + s is the padded entry j * R + (kind s's place)
        place = [self.kinds.index(k) for k in own]
        self.entry_index = np.array([j * r + q for j in range(m) for q in place], dtype=np.int64)
        mask = np.zeros((self.total_entries, self.levels), dtype=bool)
        mask[:, self.levels // 2] = True  # padding: only "no change"
        self.mask_template = mask.reshape(-1)
        # the advice feature of each of the scenario's entries (advised layouts)
        self.advice_index = (np.array([at[f"m{e // r}.{ADVICE}.{self.kinds[e % r]}"]
                                       for e in self.entry_index], dtype=np.int64)
                             if advised else None)  # fmt: skip

    def advise(self, padded: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Write an advisor's plans (``(B, E)``, the scenario's levels) into padded observations
        ``(B, D_padded)`` in place (in the policy's levels, :func:`policy_levels`, encoded as
        :func:`~shift_rl.modular.encode_advice`); padding entries keep 0 (no change)."""
        if self.advice_index is None:
            raise ValueError("this padded layout has no advice features")
        a = self.to_policy[np.asarray(actions, dtype=np.int64).reshape(-1, self.entries)]
        padded[:, self.advice_index] = encode_advice(a, self.levels // 2)
        return padded

    def obs(self, obs: np.ndarray) -> np.ndarray:
        """``(B, D_padded)`` float32 of the scenario's observations ``(B, D)``."""
        x = np.asarray(obs).reshape(-1, self.obs_index.size)
        out = np.repeat(self.template[None], x.shape[0], axis=0)
        out[:, self.obs_index] = x
        return out

    def masks(self, masks: np.ndarray) -> np.ndarray:
        """``(B, E_padded * L)`` bool of the scenario's flat masks ``(B, E * L_s)``."""
        mk = np.asarray(masks, dtype=bool).reshape(-1, self.entries, self.scenario_levels)
        if self.level_map is not None:
            mk = mk[:, :, self.level_map]
        out = np.repeat(self.mask_template[None], mk.shape[0], axis=0)
        out = out.reshape(mk.shape[0], self.total_entries, self.levels)
        out[:, self.entry_index] = mk
        return out.reshape(mk.shape[0], -1)

    def actions(self, actions: np.ndarray) -> np.ndarray:
        """The scenario's ``(B, E)`` actions of padded ones ``(B, E_padded)``."""
        a = np.asarray(actions, dtype=np.int64).reshape(-1, self.total_entries)[:, self.entry_index]
        return a if self.level_map is None else self.level_map[a]

    def unpad_obs(self, obs: np.ndarray) -> np.ndarray:
        """The scenario's ``(B, D)`` observations of padded ones (what :meth:`obs` made)."""
        return np.asarray(obs).reshape(-1, self.width)[:, self.obs_index]

    def pad_actions(self, actions: np.ndarray) -> np.ndarray:
        """Padded ``(B, E_padded)`` actions of the scenario's ``(B, E)`` (a teacher's), each
        level the policy's nearest at or below it (:func:`policy_levels`); padding: no change."""
        a = np.asarray(actions, dtype=np.int64).reshape(-1, self.entries)
        out = np.full((a.shape[0], self.total_entries), self.levels // 2, dtype=np.int64)
        out[:, self.entry_index] = self.to_policy[a]
        return out


@dataclass
class SuiteSelection:
    """The scenarios a suite trains on (in expansion order) and the ones left out, with why."""

    scenarios: list[ScenarioConfig]
    members: list[str]  # ``member/variant`` of each scenario
    families: list[str]
    dropped: list[str] = field(default_factory=list)


def select_scenarios(
    expansion: Any,
    max_modules: int,
    kinds: Sequence[str] = DEFAULT_KINDS,
    amount_levels: Sequence[int] = DEFAULT_LEVELS,
) -> SuiteSelection:
    """The scenarios of an :class:`~shift_rl.suite.Expansion` the padded env can train on."""
    out = SuiteSelection([], [], [], [f"skipped: {s}" for s in expansion.skipped])
    for s in expansion.scenarios:
        try:
            Padder(s.scenario, max_modules, kinds, amount_levels)
        except ValueError as err:
            out.dropped.append(f"{s.key} ({s.family}): {err}")
            continue
        out.scenarios.append(s.scenario)
        out.members.append(s.key)
        out.families.append(s.family)
    return out


def group_by_layout(scenarios: Sequence[ScenarioConfig]) -> list[list[int]]:
    """Indices of ``scenarios`` grouped by layout (first-come order; one batch per group)."""
    groups: list[list[int]] = []
    for i, sc in enumerate(scenarios):
        for g in groups:
            if not layout_differences(scenarios[g[0]], sc):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def split_rows(sizes: Sequence[int], n: int) -> list[int]:
    """Rows per group: proportional to ``sizes``, at least one each, largest remainder."""
    k = len(sizes)
    if n < k:
        raise ConfigError(
            f"n_envs {n} is below the {k} scenario layouts of the suite (one row each at least)"
        )
    rows = [1] * k
    spare = n - k
    total = float(sum(sizes))
    want = [spare * s / total for s in sizes]
    extra = [int(w) for w in want]
    rows = [r + e for r, e in zip(rows, extra, strict=True)]
    left = spare - sum(extra)
    order = sorted(range(k), key=lambda i: (-(want[i] - extra[i]), i))
    for i in order[:left]:
        rows[i] += 1
    return rows


@dataclass
class _Heuristics:
    """A heuristic's instances per (row, scenario) and the episode each last played."""

    policies: dict[tuple[int, int], Any] = field(default_factory=dict)
    episode: dict[int, tuple[tuple[int, int], int]] = field(default_factory=dict)


@dataclass
class _Group:
    scenarios: list[ScenarioConfig]
    plane: PlaneBatch
    rows: np.ndarray  # global rows
    padder: Padder
    bound: np.ndarray  # (rows, episode_ticks)


class SuiteTrainingEnv(InProcessVecEnv):
    """Rows playing scenarios of different layouts, padded to one observation and action
    shape (module docstring). SB3's ``VecEnv`` API as :class:`~shift_rl.training_envs.
    BatchedTrainingEnv` gives it (infos: ``TimeLimit.truncated``, ``episode``,
    ``terminal_observation``; ``reset_infos[i]["episode_seed"]``); ``env_method
    ("action_masks")`` gives the padded masks. :attr:`observation_names` is the padded layout.
    """

    def __init__(
        self,
        scenarios: Sequence[ScenarioConfig],
        base_seeds: Sequence[int],
        max_modules: int,
        kinds: Sequence[str] = DEFAULT_KINDS,
        amount_levels: Sequence[int] = DEFAULT_LEVELS,
        start_episode: int | Sequence[int] = 0,
        regret: bool = True,
        advisor: Callable[[ScenarioConfig], Any] | None = None,
    ) -> None:
        if not scenarios:
            raise ConfigError("the suite leaves no scenario to train on")
        n = len(base_seeds)
        self.kinds, self.max_modules = tuple(kinds), int(max_modules)
        self.amount_levels = [int(v) for v in amount_levels]
        advised = advisor is not None
        feats = padded_features(self.max_modules, self.kinds, advised)
        self.observation_names = [f for f, _, _ in feats]
        low = np.array([lo for _, lo, _ in feats], dtype=np.float32)
        high = np.array([hi for _, _, hi in feats], dtype=np.float32)
        levels = 2 * len(self.amount_levels) + 1
        action_space = gym.spaces.MultiDiscrete(np.full(self.max_modules * len(kinds), levels))
        self.layouts = group_by_layout(scenarios)
        counts = split_rows([len(g) for g in self.layouts], n)
        self.groups: list[_Group] = []
        first = 0
        for idx, rows in zip(self.layouts, counts, strict=True):
            scs = [scenarios[i] for i in idx]
            plane = PlaneBatch(scs[0], rows, variants=scs)
            padder = Padder(scs[0], self.max_modules, kinds, amount_levels, advised)
            bound = np.zeros((rows, plane.params.episode_ticks))
            self.groups.append(_Group(scs, plane, np.arange(first, first + rows), padder, bound))
            first += rows
        self.base_seed = [int(s) for s in base_seeds]
        self.episode = np.zeros(n, dtype=np.int64)
        self.episode[:] = np.asarray(start_episode, dtype=np.int64)
        self.variant = np.zeros(n, dtype=np.int64)
        self.regret = regret
        self.render_mode = None
        self._obs = np.zeros((n, len(feats)), dtype=np.float32)
        self._ret = np.zeros(n)
        self._len = np.zeros(n, dtype=np.int64)
        self._actions = np.zeros((n, len(action_space.nvec)), dtype=np.int64)
        self._teacher = _Heuristics()
        self._advisor = None if advisor is None else (advisor, _Heuristics())
        self._advice_cols = np.array([self.observation_names.index(f"m{i}.{ADVICE}.{k}")
                                      for i in range(self.max_modules) for k in self.kinds]
                                     if advised else [], dtype=np.int64)  # fmt: skip
        super().__init__(n, gym.spaces.Box(low, high, dtype=np.float32), action_space)

    @property
    def episode_ticks(self) -> np.ndarray:
        """(n,) episode length of each row (its group's)."""
        return np.concatenate(
            [np.full(g.rows.size, g.plane.params.episode_ticks) for g in self.groups]
        )

    def reset(self) -> np.ndarray:
        for i, s in enumerate(self._seeds):
            if s is not None:
                self.base_seed[i] = int(s)
        for g in self.groups:
            self._start(g, np.arange(g.rows.size))
        self._reset_seeds()
        self._reset_options()
        return self._obs.copy()

    def _start(self, g: _Group, local: np.ndarray) -> None:
        """Next episodes of the group's rows ``local``: draw, reset, bound, padded obs."""
        rows = g.rows[local]
        obs, seeds, picks = start_episodes(
            g.plane, len(g.scenarios), self.base_seed, self.episode, rows, local,
            g.bound if self.regret else None,
        )  # fmt: skip
        self.variant[rows] = picks
        self._ret[rows] = 0.0
        self._len[rows] = 0
        self._obs[rows] = g.padder.obs(np.asarray(obs)[local])
        self._advise(g, local)
        for i, s in zip(rows, seeds, strict=True):
            self.reset_infos[i] = {"episode_seed": s}

    def _advise(self, g: _Group, local: np.ndarray) -> None:
        """The advisor's plans on the group's rows ``local`` into their observations."""
        if self._advisor is not None:
            make, players = self._advisor
            plans = self._plans(g, local, make, players)
            self._obs[g.rows[local]] = g.padder.advise(self._obs[g.rows[local]], plans)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        n = self.num_envs
        rewards = np.zeros(n)
        dones = np.zeros(n, dtype=bool)
        infos: list[dict[str, Any]] = [{} for _ in range(n)]
        for g in self.groups:
            res = g.plane.step(g.padder.actions(self._actions[g.rows]))
            self._ret[g.rows] += res.reward
            self._len[g.rows] += 1
            r = res.reward
            if self.regret:
                r = r - g.bound[np.arange(g.rows.size), g.plane.sim.t - 1]
            rewards[g.rows] = r
            done = np.asarray(res.truncated, dtype=bool)  # never terminated
            dones[g.rows] = done
            self._obs[g.rows] = g.padder.obs(res.obs)
            self._advise(g, np.arange(g.rows.size))
            for j in np.flatnonzero(done):
                i = int(g.rows[j])
                infos[i]["episode"] = {"r": float(self._ret[i]), "l": int(self._len[i]), "t": 0.0}
                infos[i]["terminal_observation"] = self._obs[i].copy()
            if done.any():
                self._start(g, np.flatnonzero(done))
        for info, d in zip(infos, dones.tolist(), strict=True):
            info["TimeLimit.truncated"] = d
        return self._obs.copy(), rewards.astype(np.float32), dones, infos

    def teacher_actions(self, make: Callable[[ScenarioConfig], Any]) -> np.ndarray:
        """``(n, max_modules * R)`` padded actions a heuristic takes on each row's current
        observation and mask (what :mod:`shift_rl.pretrain` imitates; :meth:`_plans`), levels
        mapped by :meth:`Padder.pad_actions`."""
        out = np.empty((self.num_envs, self.max_modules * len(self.kinds)), dtype=np.int64)
        for g in self.groups:
            plans = self._plans(g, np.arange(g.rows.size), make, self._teacher)
            out[g.rows] = g.padder.pad_actions(plans)
        return out

    def advice_actions(self) -> np.ndarray:
        """``(n, max_modules * R)`` the advisor's plans in the current observations, in the
        policy's levels (as :meth:`teacher_actions` gives a teacher's; padding: no change)."""
        if self._advisor is None:
            raise ValueError("these training envs have no advisor")
        return decode_advice(self._obs[:, self._advice_cols], len(self.amount_levels))

    def _plans(self, g: _Group, local: np.ndarray, make: Callable[[ScenarioConfig], Any],
               players: _Heuristics) -> np.ndarray:  # fmt: skip
        """``(len(local), E)`` plans, in the scenario's levels, of a heuristic on the group's
        rows ``local`` (their own observations and masks): ``make(scenario)`` builds one per
        row and scenario, reset at each of the row's episodes (heuristics keep state over an
        episode; ``oracle-mpc`` is bound to the row's simulator, the truth it plans on)."""
        raw = g.padder.unpad_obs(self._obs[g.rows[local]])
        masks = g.plane.action_masks()
        acts = np.empty((local.size, g.padder.entries), dtype=np.int64)
        for n, j in enumerate(local.tolist()):
            i = int(g.rows[j])
            v = int(self.variant[i])
            player = players.policies.get((i, v))
            if player is None:  # made once per row and scenario, not every tick
                player = players.policies[(i, v)] = make(g.scenarios[v])
                if getattr(player, "reads_truth", False):  # a privileged teacher
                    player.bind_row(g.plane.sim, j)
            episode = (int(self.base_seed[i]), int(self.episode[i]))
            if players.episode.get(i) != (episode, v):
                player.reset()
                players.episode[i] = (episode, v)
            acts[n] = player.act(raw[n], masks[j])
        return acts

    def action_masks(self) -> np.ndarray:
        """(n, max_modules * R * (2K + 1)) padded masks, one row per env."""
        out = np.zeros((self.num_envs, int(self.action_space.nvec.sum())), dtype=bool)
        for g in self.groups:
            out[g.rows] = g.padder.masks(g.plane.action_masks())
        return out


class PaddedSB3Policy:
    """An SB3 model trained on padded observations, acting on one real scenario (what the
    periodic validation of :func:`shift_rl.train.train` runs): pads the observation and the
    mask, reads the scenario's entries of the action (deterministic)."""

    name = "sb3-padded"

    def __init__(self, model: Any, padder: Padder, advisor: Any = None) -> None:
        self.model, self.padder, self.advisor = model, padder, advisor
        self.masked = type(model).__name__ == "MaskablePPO"

    def reset(self) -> None:
        """Memoryless; an advisor (built for the scenario) starts a new episode."""
        if self.advisor is not None:
            self.advisor.reset()

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        obs = self.padder.obs(observation)
        if self.advisor is not None:
            self.padder.advise(obs, self.advisor.act(observation, action_mask)[None])
        kwargs = {}
        if self.masked and action_mask is not None:
            kwargs["action_masks"] = self.padder.masks(action_mask)
        action, _ = self.model.predict(obs, deterministic=True, **kwargs)
        return self.padder.actions(action)[0]


def suite_selection(cfg: Any) -> SuiteSelection:
    """The train scenarios of a training config's ``suite`` (without ``leave_out``)."""
    from shift_rl.suite import expand_suite

    expansion = expand_suite(cfg.suite, "train", leave_out=cfg.leave_out)
    sel = select_scenarios(expansion, cfg.suite_max_modules, cfg.suite_kinds,
                           cfg.suite_amount_levels)  # fmt: skip
    if not sel.scenarios:
        raise ConfigError(
            f"suite {cfg.suite!r}: no train scenario fits kinds {cfg.suite_kinds}, at most "
            f"{cfg.suite_max_modules} modules and amount levels {cfg.suite_amount_levels} "
            f"({'; '.join(sel.dropped[:5])})"
        )
    return sel


def make_suite_env(
    cfg: Any, sel: SuiteSelection, done_steps: int = 0, advisor: Any = None
) -> SuiteTrainingEnv:
    """The suite's training envs: row ``i`` has base seed ``seed * 1000 + i``; resuming at
    ``done_steps`` starts each row at the episode it reached (whole episodes per rollout)."""
    env = SuiteTrainingEnv(
        sel.scenarios,
        [cfg.seed * 1000 + i for i in range(cfg.n_envs)],
        cfg.suite_max_modules,
        cfg.suite_kinds,
        cfg.suite_amount_levels,
        regret=cfg.reward == "regret",
        advisor=advisor,
    )
    if done_steps:
        env.episode[:] = (done_steps // cfg.n_envs) // env.episode_ticks
    return env


__all__ = [
    "PaddedSB3Policy",
    "Padder",
    "SuiteSelection",
    "SuiteTrainingEnv",
    "group_by_layout",
    "level_map",
    "make_suite_env",
    "padded_names",
    "policy_levels",
    "select_scenarios",
    "split_rows",
    "suite_selection",
]
