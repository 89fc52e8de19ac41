"""The native vector env: N episodes of one text task stepped with NumPy arrays.

``gym.make_vec("TextSummarization-v0", num_envs=N, vectorization_mode="vector_entry_point")`` (or with no
``vectorization_mode``: Gymnasium then prefers the registered ``vector_entry_point``, as for CartPole) returns a
:class:`TextGenerationVectorEnv`. Per token it does a few array operations on ``(N, T)`` arrays instead of N
Python ``step`` calls; the episodes that end in a step are decoded and scored in one batch
(``reward.compute`` on all their texts at once); the rows that reset draw their examples from per-row generators.

**Same episodes as N single envs.** Row ``i`` reset with seed ``s + i`` draws the same examples, in the same
order, as ``gym.make(id).reset(seed=s + i)`` followed by auto-resets (each row has its own
``numpy.random.Generator`` and draws its example indices in blocks of 256, as the single env does), so the
observations, rewards, terminations and final ``info`` match those of ``SyncVectorEnv`` / SB3's ``DummyVecEnv``
over single envs exactly (``tests/test_vector_env.py`` compares every array). Rewards computed in one batch are
equal to one-at-a-time ones for the lexical metrics; a model-based reward (``"semantic"``, ``"learned"``) may
differ at float-rounding level between batch compositions.

**Auto-reset.** ``autoreset_mode`` is Gymnasium's: ``NEXT_STEP`` (the default, as ``SyncVectorEnv``'s: the step
after an episode ends resets that row, ignores its action and returns reward 0, ``terminated=False`` and the reset
``info``), ``SAME_STEP`` (the row is reset in the step that ended it; the final observation and info are in
``infos["final_obs"]`` / ``infos["final_info"]``: this is SB3's ``VecEnv`` semantics, which
``sb3_ext.vec_env.TextVecEnv`` uses) or ``DISABLED`` (the caller resets finished rows with
``reset(options={"reset_mask": mask})``).

**Group sampling** (``group_size=k``, ``N`` a multiple of ``k``): rows ``[g*k, (g+1)*k)`` form group ``g`` and write
for the same example in each of their episodes (the same prompt, independent samples: what GRPO, RLOO and the other
group algorithms of ``sb3_ext`` compare). Group ``g`` draws its examples with the generator of its first row
(``seed + g*k``), so groups draw different example sequences and ``group_size=1`` is the behaviour above exactly.
The rows of a group stay in lockstep on episodes: a row whose text is finished resets at once to its group's next
example (its observation is that fresh episode's) and then *waits*, its actions ignored (reward 0, not terminated),
until every row of its group has finished; the group then writes its next texts together. ``idle_rows`` says which
rows the next step ignores. In every auto-reset mode a group's example sequence and its texts (for the same actions
of the rows that write) are the same.

:class:`text_envs.wrappers.vector.VectorBaseline` is the batched counterpart of
:class:`text_envs.wrappers.SelfCriticalReward` (a per-prompt baseline reward, the same values).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from text_envs.core import TextGenerationEnv, registered_id, score_texts
from text_envs.errors import TextEnvsError, accepted_keywords, check_keywords
from text_envs.state import StateError, attribute_state, set_attribute_state

__all__ = ["TextGenerationVectorEnv", "StepResult", "load_entry_point"]

_DRAW_BLOCK = 256  # example indices drawn per generator call, as TextGenerationEnv.reset draws them
_OBS_KEYS = ("prompt_ids", "prompt_mask", "generated_ids", "generated_mask")


@dataclass
class StepResult:
    """One vector step in arrays (what :meth:`TextGenerationVectorEnv.step_arrays` returns).

    ``final_rows`` are the rows whose episode ended in this step, in increasing order; ``final_infos`` and
    ``final_obs`` (each key an array of ``len(final_rows)`` rows) belong to them. ``reset_rows`` are the rows that
    started a new episode in this step (``SAME_STEP``: the finished ones; ``NEXT_STEP``: those that ended in the
    previous step), ``reset_indices`` their example indices.
    """

    obs: dict[str, np.ndarray]
    rewards: np.ndarray
    terminated: np.ndarray
    final_rows: np.ndarray
    final_infos: list[dict[str, Any]]
    final_obs: dict[str, np.ndarray] | None
    reset_rows: np.ndarray
    reset_indices: np.ndarray


def load_entry_point(entry_point: str) -> Any:
    """The object a ``"package.module:name"`` entry point names (imported on demand)."""
    module, _, attr = entry_point.partition(":")
    return getattr(importlib.import_module(module), attr)


def _overrides(env: TextGenerationEnv, name: str) -> bool:
    return getattr(type(env), name) is not getattr(TextGenerationEnv, name)


class TextGenerationVectorEnv(VectorEnv):
    """``num_envs`` episodes of one text task, stepped as arrays (see the module docstring).

    Spaces, rewards, episode ends and ``info`` are those of :class:`text_envs.core.TextGenerationEnv`, batched:
    ``observation_space`` is the batched ``Dict`` (each key ``(N, P)`` or ``(N, T)``, ``int64``), ``action_space``
    ``MultiDiscrete([V] * N)``; rewards are ``float64``, ``truncated`` is always False.

    :param num_envs: ``N``, the episodes stepped side by side.
    :param group_size: ``k``, rows writing for the same example in lockstep (see the module docstring); ``N`` must
        be a multiple of it. 1: every row draws its own examples.
    :param autoreset_mode: Gymnasium's ``AutoresetMode`` (or its value as a string); see the module docstring.
    :param env: a built single env of the task to take the data, tokenizer and reward from (its episode state is
        not used); default: one built from ``task_kwargs`` with the class's ``task_entry_point``.
    :param task_kwargs: the task's keyword arguments (``split``, ``difficulty``, ``reward``, ``max_new_tokens``...),
        as for ``gym.make``.
    """

    #: "module:Class" of the single-env task this vector env batches (set by the per-task subclasses).
    task_entry_point: str | None = None
    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}
    #: what :meth:`get_state` saves: each row's episode in progress, random generator and draws, the groups' next
    #: examples and waiting rows (the prompt cache and the rows' ``Example`` objects are rebuilt on demand; the
    #: rows draw from their own generators, never from the vector env's ``np_random``)
    STATE_ATTRIBUTES: tuple[str, ...] = (
        "_prompt_ids", "_prompt_mask", "_gen_ids", "_gen_mask", "_t", "_potential", "_index", "_needs_reset",
        "_started", "_rngs", "_draws", "_draw_pos", "_waiting", "_group_next",
    )

    def __init__(self, num_envs: int = 1, *, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 env: TextGenerationEnv | None = None, group_size: int = 1, **task_kwargs: Any) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise TextEnvsError(f"num_envs must be a positive integer, got {num_envs!r}.")
        if not isinstance(group_size, (int, np.integer)) or group_size < 1 or num_envs % group_size:
            raise TextEnvsError(f"group_size must be a positive integer that divides num_envs={num_envs}, got "
                                f"{group_size!r}: use num_envs = (number of prompts per batch) * group_size.")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise TextEnvsError(f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, "
                                f"got {autoreset_mode!r}.") from None
        if env is None:
            if self.task_entry_point is None:
                raise TextEnvsError("TextGenerationVectorEnv needs env=<a single text env> or a task subclass "
                                    "(e.g. TextSummarizationVectorEnv); use make_vector_env(env_id, num_envs).")
            task_kwargs.pop("max_episode_steps", None)  # make_vec passes the spec's (None for our ids)
            task = load_entry_point(self.task_entry_point)
            task_id = registered_id(task)
            check_keywords(task_kwargs, accepted_keywords(task) + accepted_keywords(type(self), skip=("env",)),
                           f"gym.make_vec({task_id!r}, ...)" if task_id else f"{type(self).__name__}(...)")
            env = task(**task_kwargs)
        elif task_kwargs:
            raise TextEnvsError(f"pass the task's keyword arguments or a built env, not both "
                                f"(got {sorted(task_kwargs)}).")
        env = env.unwrapped
        if not isinstance(env, TextGenerationEnv):
            raise TextEnvsError(f"expected a text_envs TextGenerationEnv, got {type(env).__name__}.")
        self._check_supported(env)
        self.single_env = env
        self.num_envs = int(num_envs)
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        if env.render_mode not in (None, "ansi"):
            raise TextEnvsError(f"the native vector env renders text only: render_mode 'ansi' or None, got "
                                f"{env.render_mode!r} (for frames use vectorization_mode='sync').")
        self.render_mode = env.render_mode
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = batch_space(env.observation_space, self.num_envs)
        self.action_space = spaces.MultiDiscrete(np.full(self.num_envs, env.vocab_size, dtype=np.int64))

        N, P, T = self.num_envs, env.max_prompt_tokens, env.max_new_tokens
        self.max_prompt_tokens, self.max_new_tokens = P, T
        self.eos_token_id, self.pad_token_id, self.vocab_size = env.eos_token_id, env.pad_token_id, env.vocab_size
        self._prompt_ids = np.full((N, P), self.pad_token_id, dtype=np.int64)
        self._prompt_mask = np.zeros((N, P), dtype=np.int64)
        self._gen_ids = np.full((N, T), self.pad_token_id, dtype=np.int64)
        self._gen_mask = np.zeros((N, T), dtype=np.int64)
        self._t = np.zeros(N, dtype=np.int64)
        self._potential = np.zeros(N, dtype=np.float64)  # dense_reward: phi of each row's prefix
        self._dense = bool(env.dense_reward and env.reward is not None)
        self._index = np.full(N, -1, dtype=np.int64)
        self._needs_reset = np.ones(N, dtype=bool)  # NEXT_STEP: ended last step; always: before the first reset
        self._started = False
        self._rngs: list[np.random.Generator | None] = [None] * N
        self._draws = np.zeros((N, _DRAW_BLOCK), dtype=np.int64)
        self._draw_pos = np.full(N, _DRAW_BLOCK, dtype=np.int64)  # == _DRAW_BLOCK: no draws left
        self._row_examples: list[Any] = [None] * N
        self._prompt_cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._prompt_cache_size = max(4096, 4 * N)
        self._rows = np.arange(N)
        self.group_size = int(group_size)
        self._waiting = np.zeros(N, dtype=bool)  # reset to the group's next example, waiting for the group's others
        self._group_next = np.full(N // self.group_size, -1, dtype=np.int64)  # the group's next example (-1: none)

    # ------------------------------------------------------------------ task hooks (TextCopyVectorEnv overrides)
    _HOOKS = ("token_reward", "extra_metrics", "_prompt_arrays", "step", "reset", "_finish", "_score", "_observation")

    def _check_supported(self, env: TextGenerationEnv) -> None:
        overridden = [name for name in self._HOOKS if _overrides(env, name)]
        if overridden:
            raise TextEnvsError(
                f"{type(env).__name__} overrides {overridden}, which the native vector env does not batch: use "
                "gymnasium's SyncVectorEnv / SB3's DummyVecEnv (text-envs train: --vec-env dummy), or subclass "
                "TextGenerationVectorEnv and override _token_rewards/_extra_metrics/_prompt_rows "
                "(see TextCopyVectorEnv).")

    def _token_rewards(self, rows: np.ndarray, t: np.ndarray, tokens: np.ndarray) -> np.ndarray | None:
        """Per-token rewards of ``tokens`` written at positions ``t`` by ``rows`` (None: all zero)."""
        return None

    def _extra_metrics(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Task-specific final metrics of the episodes of ``rows`` (none here)."""
        return [{} for _ in range(len(rows))]

    def _on_reset_rows(self, rows: np.ndarray, indices: np.ndarray) -> None:
        """Per-row task state to reset (none here)."""

    def _prompt_rows(self, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(prompt_ids, prompt_mask)`` of examples ``indices`` as ``(k, P)`` arrays (tokenized once, cached)."""
        env, cache = self.single_env, self._prompt_cache
        ids_out = np.empty((len(indices), self.max_prompt_tokens), dtype=np.int64)
        mask_out = np.empty_like(ids_out)
        for k, (index, row) in enumerate(zip(indices.tolist(), rows.tolist())):
            cached = cache.get(index)
            if cached is None:
                example = env.source[index]
                if row >= 0:
                    self._row_examples[row] = example
                cached = env.encode_prompt(example.prompt)
                cache[index] = cached
                if len(cache) > self._prompt_cache_size:
                    cache.popitem(last=False)
            elif row >= 0:
                self._row_examples[row] = None
            ids_out[k], mask_out[k] = cached
        return ids_out, mask_out

    # ------------------------------------------------------------------ data access (shared with the baseline)
    def prompt(self, index: int) -> np.ndarray:
        """Example ``index``'s prompt ids, unpadded (tokenized with the cache the resets use)."""
        ids, mask = self._prompt_rows(np.array([index]), np.array([-1]))
        return ids[0][mask[0] == 1]

    def upcoming_examples(self, row: int, n: int) -> list[int]:
        """The example indices the next resets of ``row`` will draw, as far as already drawn (at most ``n``)."""
        n = max(0, int(n))
        if self.group_size == 1:
            pos = int(self._draw_pos[row])
            return self._draws[row, pos: pos + n].tolist()
        group = row // self.group_size
        leader = group * self.group_size
        pos = int(self._draw_pos[leader])
        pending = [] if self._group_next[group] < 0 or self._waiting[row] else [int(self._group_next[group])]
        return (pending + self._draws[leader, pos: pos + n].tolist())[:n]

    @property
    def idle_rows(self) -> np.ndarray:
        """(N,) bool: the rows whose action the next step ignores (waiting for their group to finish, or, in
        ``NEXT_STEP`` mode, resetting)."""
        return self._waiting | self._needs_reset

    @property
    def example_indices(self) -> np.ndarray:
        """The current example index of each row (-1 before the first reset)."""
        return self._index.copy()

    def _example(self, row: int) -> Any:
        example = self._row_examples[row]
        if example is None:
            example = self._row_examples[row] = self.single_env.source[int(self._index[row])]
        return example

    # ------------------------------------------------------------------ state (text_envs.state.Stateful)
    def get_state(self) -> dict[str, Any]:
        """Every row's episode in progress and data-sampling position, as data (see :data:`STATE_ATTRIBUTES`);
        :meth:`set_state` puts it back into a vector env built with the same arguments."""
        return attribute_state(self, self.STATE_ATTRIBUTES)

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a state :meth:`get_state` returned: the next steps are the saved env's.

        :raises StateError: for a state saved from another number of envs or group size.
        """
        expected = {"_t": (self.num_envs,), "_group_next": (self.num_envs // self.group_size,)}
        wrong = {key: np.shape(state[key]) for key, shape in expected.items()
                 if key in state and np.shape(state[key]) != shape}
        if wrong:
            raise StateError(f"the saved vector env state is for another num_envs or group_size (shapes {wrong}, "
                             f"expected {expected}): build the env with the saved num_envs and group_size")
        set_attribute_state(self, self.STATE_ATTRIBUTES, state)
        self._row_examples = [None] * self.num_envs  # fetched again from the source on first use

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset every row (or those of ``options["reset_mask"]``); ``seed``: None, an int (row ``i`` gets
        ``seed + i``) or one seed per row. Returns the batched observation and
        ``{"example_index", "_example_index"}``."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            super().reset(seed=int(seed))
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise TextEnvsError(f"expected {self.num_envs} seeds (one per env), got {len(seeds)}.")
        mask = np.ones(self.num_envs, dtype=bool)
        options = dict(options or {})
        if "reset_mask" in options:
            mask = np.asarray(options.pop("reset_mask"))
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise TextEnvsError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), "
                                    f"got {mask.dtype} {mask.shape}.")
        if options:
            raise TextEnvsError(f"unknown reset options {sorted(options)}: the vector env takes only 'reset_mask'.")
        rows = np.flatnonzero(mask)
        for row in rows.tolist():
            if seeds[row] is not None:
                self._rngs[row], _ = seeding.np_random(seeds[row])
                self._draw_pos[row] = _DRAW_BLOCK  # a seeded reset forgets the draws (as the single env does)
                if row % self.group_size == 0:
                    self._group_next[row // self.group_size] = -1
            elif self._rngs[row] is None:
                self._rngs[row], _ = seeding.np_random(None)
        indices = self._reset_rows(rows)
        self._started = True
        info: dict[str, Any] = {}
        if len(rows):
            info = {"example_index": np.zeros(self.num_envs, dtype=int), "_example_index": mask.copy()}
            info["example_index"][rows] = indices
        return self._observation(), info

    def _reset_rows(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0, dtype=np.int64)
        if self.group_size == 1:
            indices = self._draw(rows)
        else:
            indices = self._group_examples(rows)
        self._index[rows] = indices
        self._prompt_ids[rows], self._prompt_mask[rows] = self._prompt_rows(indices, rows)
        self._gen_ids[rows] = self.pad_token_id
        self._gen_mask[rows] = 0
        self._t[rows] = 0
        self._potential[rows] = 0.0
        self._needs_reset[rows] = False
        self._on_reset_rows(rows, indices)
        if self.group_size > 1:
            self._start_complete_groups(rows)
        return indices

    def _draw(self, rows: np.ndarray) -> np.ndarray:
        """The next example index of each row's generator (rows distinct)."""
        n = self.single_env.num_examples
        for row in rows[self._draw_pos[rows] >= _DRAW_BLOCK].tolist():  # one generator call per 256 episodes
            self._draws[row] = self._rngs[row].integers(n, size=_DRAW_BLOCK)
            self._draw_pos[row] = 0
        indices = self._draws[rows, self._draw_pos[rows]]
        self._draw_pos[rows] += 1
        return indices

    def _group_examples(self, rows: np.ndarray) -> np.ndarray:
        """The next example of each row's group, drawn by the group's first row when the group has none pending."""
        groups = rows // self.group_size
        new = np.unique(groups[self._group_next[groups] < 0])
        if len(new):
            self._group_next[new] = self._draw(new * self.group_size)
        return self._group_next[groups]

    def _start_complete_groups(self, rows: np.ndarray) -> None:
        """Rows just reset wait; a group all of whose rows have reset starts its next episode together."""
        self._waiting[rows] = True
        k = self.group_size
        for group in np.unique(rows // k).tolist():
            members = slice(group * k, (group + 1) * k)
            if self._waiting[members].all():
                self._waiting[members] = False
                self._group_next[group] = -1

    # ------------------------------------------------------------------ step
    def step(self, actions: Any):
        """Step every row with its token; Gymnasium's vector API (infos batched with ``_key`` masks)."""
        res = self.step_arrays(actions)
        infos: dict[str, Any] = {}
        per_row: dict[int, list[dict[str, Any]]] = {}
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        for k, row in enumerate(res.final_rows.tolist()):
            if same_step:
                final_obs = {key: res.final_obs[key][k] for key in _OBS_KEYS}
                per_row.setdefault(row, []).append({"final_obs": final_obs, "final_info": res.final_infos[k]})
            else:
                per_row.setdefault(row, []).append(res.final_infos[k])
        for row, index in zip(res.reset_rows.tolist(), res.reset_indices.tolist()):
            per_row.setdefault(row, []).append({"example_index": index})
        for row in sorted(per_row):  # in row order, as SyncVectorEnv builds them
            for info in per_row[row]:
                infos = self._add_info(infos, info, row)
        truncated = np.zeros(self.num_envs, dtype=bool)
        return res.obs, res.rewards, res.terminated, truncated, infos

    def step_arrays(self, actions: Any) -> StepResult:
        """One step as arrays (see :class:`StepResult`); :meth:`step` and the SB3 adapter format it."""
        if not self._started:
            raise TextEnvsError("step() called before reset(): call reset() first.")
        actions = self._check_actions(actions)
        N = self.num_envs
        rewards = np.zeros(N, dtype=np.float64)
        terminated = np.zeros(N, dtype=bool)
        reset_rows = np.zeros(0, dtype=np.int64)
        reset_indices = reset_rows
        if self._needs_reset.any():
            if self.autoreset_mode != AutoresetMode.NEXT_STEP:
                raise TextEnvsError("step() called on rows whose episode ended: with autoreset_mode DISABLED, reset "
                                    "them first (reset(options={'reset_mask': mask})).")
            active = ~(self._needs_reset | self._waiting)  # before the resets: a group starting now starts next step
            reset_rows = np.flatnonzero(self._needs_reset)
            reset_indices = self._reset_rows(reset_rows)
            rows = np.flatnonzero(active)
        elif self._waiting.any():
            rows = np.flatnonzero(~self._waiting)
        else:
            rows = self._rows
        t = self._t[rows]
        tokens = actions[rows]
        self._gen_ids[rows, t] = tokens
        self._gen_mask[rows, t] = 1
        self._t[rows] = t + 1
        by_eos = tokens == self.eos_token_id
        ended = by_eos | (t + 1 >= self.max_new_tokens)
        token_rewards = self._token_rewards(rows, t, tokens)
        if token_rewards is not None:
            rewards[rows] = token_rewards
        final_rows = rows[ended]
        if self._dense:  # potential-based shaping of the rows still writing: their prefixes scored in one batch
            self._shape(rows[~ended], rewards)
        final_infos: list[dict[str, Any]] = []
        final_obs = None
        if len(final_rows):
            final_infos = self._finish_rows(final_rows, by_eos[ended])
            finals = np.array([info["reward"] for info in final_infos], dtype=np.float64)
            rewards[final_rows] += finals - self._potential[final_rows] if self._dense else finals
            terminated[final_rows] = True
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                final_obs = {
                    "prompt_ids": self._prompt_ids[final_rows], "prompt_mask": self._prompt_mask[final_rows],
                    "generated_ids": self._gen_ids[final_rows], "generated_mask": self._gen_mask[final_rows],
                }  # fancy indexing: copies
                reset_rows = final_rows
                reset_indices = self._reset_rows(final_rows)
            else:
                self._needs_reset[final_rows] = True
        return StepResult(self._observation(), rewards, terminated, final_rows, final_infos, final_obs,
                          reset_rows, reset_indices)

    def _check_actions(self, actions: Any) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise TextEnvsError(f"expected one token id per env, an array of shape ({self.num_envs},), got shape "
                                f"{a.shape}.")
        if not np.issubdtype(a.dtype, np.integer):
            if np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)):
                a = a.astype(np.int64)
            else:
                raise TextEnvsError(f"expected integer token ids, got dtype {a.dtype}.")
        if a.size and (a.min() < 0 or a.max() >= self.vocab_size):
            bad = a[(a < 0) | (a >= self.vocab_size)][0]
            raise TextEnvsError(f"Action {bad} is outside the vocabulary: expected 0 <= action < {self.vocab_size}.")
        return a.astype(np.int64, copy=False)

    def _decode_rows(self, rows: np.ndarray, lengths: np.ndarray) -> list[str]:
        seqs = [self._gen_ids[r, :n].tolist() for r, n in zip(rows.tolist(), lengths.tolist())]
        return self.single_env.decode_many(seqs)

    def _score_rows(self, rows: np.ndarray, texts: list[str], examples: list[Any]) -> list[dict[str, float]]:
        """The task reward's values of ``texts`` (those of ``rows``), one ``reward.compute`` call."""
        return score_texts(self.single_env.reward, texts, examples, [int(self._index[r]) for r in rows.tolist()])

    def _shape(self, rows: np.ndarray, rewards: np.ndarray) -> None:
        if not len(rows):
            return
        texts = self._decode_rows(rows, self._t[rows])
        scores = self._score_rows(rows, texts, [self._example(r) for r in rows.tolist()])
        name = self.single_env.reward.name
        potential = np.array([s[name] for s in scores], dtype=np.float64)
        rewards[rows] += self.single_env.shaping_gamma * potential - self._potential[rows]
        self._potential[rows] = potential

    def _finish_rows(self, rows: np.ndarray, by_eos: np.ndarray) -> list[dict[str, Any]]:
        """Decode and score, in one batch, the episodes of ``rows`` that just ended; their final infos."""
        env = self.single_env
        lengths = self._t[rows]
        texts = self._decode_rows(rows, lengths - by_eos.astype(np.int64))
        examples = [self._example(r) for r in rows.tolist()]
        indices = self._index[rows].tolist()
        scores: list[dict[str, float]] = [{} for _ in rows]
        if env.reward is not None:
            scores = self._score_rows(rows, texts, examples)
        extra = self._extra_metrics(rows)
        reward_name = env.reward.name if env.reward is not None else None
        infos = []
        for k, example in enumerate(examples):
            metrics = scores[k]
            metrics.update(extra[k])
            eos = bool(by_eos[k])
            info: dict[str, Any] = {
                "prompt_text": example.prompt,
                "generated_text": texts[k],
                "references": list(example.references),
                "finish_reason": "eos" if eos else "budget_exhausted",
                "budget_exhausted": not eos,
                "generated_length": int(lengths[k]),
                "example_index": indices[k],
                "reward": metrics[reward_name] if reward_name is not None else 0.0,
                "metrics": metrics,
            }
            for name, value in metrics.items():
                info[f"metric/{name}"] = value
            infos.append(info)
        return infos

    def _observation(self) -> dict[str, np.ndarray]:
        # fresh arrays every step: SB3 and users keep what they are given
        return {"prompt_ids": self._prompt_ids.copy(), "prompt_mask": self._prompt_mask.copy(),
                "generated_ids": self._gen_ids.copy(), "generated_mask": self._gen_mask.copy()}

    def render(self) -> tuple[str, ...] | None:
        """``render_mode="ansi"``: each row's prompt and text so far."""
        if self.render_mode != "ansi":
            gym.logger.warn('render() needs render_mode="ansi" (the only mode of the native vector env).')
            return None
        env = self.single_env
        return tuple(
            f"Prompt    : {self._example(r).prompt}\nGenerated : {env.decode(self._gen_ids[r, : self._t[r]])}"
            if self._index[r] >= 0 else "(no episode yet: call reset())" for r in range(self.num_envs))

    def close_extras(self, **kwargs: Any) -> None:
        cache = vars(self).get("_prompt_cache")  # absent when __init__ failed (Gymnasium's __del__ still closes)
        if cache is not None:
            cache.clear()
