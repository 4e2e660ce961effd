"""Typed configuration, one dataclass per concern, validated on construction.

Every field maps one-to-one onto a notebook ``parameters`` cell entry and a key of the
``params/*.yaml`` files; :func:`from_flat` builds a config from such a flat dict and
names any unknown key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sftlib.agents import AGENTS, RESET_SCOPES, agent_class, build_config
from sftlib.data.buffer import ONLINE_DATA
from sftlib.data.datasets import validate_dataset_id
from sftlib.data.goals import check_reward_convention
from sftlib.layout import interactive_run_dir
from sftlib.typecheck import Range, check_field_types
from sftlib.variants import SFT_CONTROLS, VARIANTS, Variant

OPE_ESTIMATORS = ("q", "mc", "fqe", "cpe")
REFERENCE_ONLINE_DATA = {"iql": "append", "td3bc": "append", "calql": "mix"}
"""Online-data rule of each base algorithm's reference fine-tuning code: IQL (Kostrikov et
al.'s ``train_finetune.py``; CORL ``iql.py``) and TD3+BC (continued on one replay buffer
holding the offline data, as TD3+BC's follow-ups do) append online transitions to the
offline buffer; Cal-QL (Nakamoto et al.; CORL ``cal_ql.py``) mixes a fixed 50/50 share."""
SELECTIONS = ("argmax", "softmax", "lcb")


LOGGERS = ("none", "tensorboard", "wandb")
"""Choices of the field ``logger``: live curves while a run trains (:mod:`sftlib.training.live`)."""


def _choice(name: str, value: Any, allowed: tuple | list) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


# The ranges of numeric fields. Every number must also be finite (NaN and infinities are
# refused everywhere) and every int must fit in int64: see :class:`sftlib.typecheck.Range`.
POSITIVE = Range(low=0, low_open=True)
"""``> 0``: steps, counts, sizes, learning rates, temperatures, tolerances."""
NON_NEGATIVE = Range(low=0)
"""``>= 0``: seeds, threads (0: torch's default), pessimism widths, margins, "0: off" fields."""
UNIT = Range(low=0, high=1)
"""``[0, 1]``: shares."""


@dataclass
class PretrainConfig:
    """Offline pretraining of a base algorithm on a Minari dataset."""

    dataset_id: str = "local/hopper/medium-v0"
    """Minari dataset id (with version); local or remote."""
    algo: str = "iql"
    """Base algorithm: ``iql`` or ``td3bc`` (``sac`` has no offline update)."""
    offline_steps: int = 2_000
    """Gradient steps on the offline dataset."""
    eval_every: int = 1_000
    """Evaluate the policy every this many steps (and at the end)."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    seed: int = 0
    """Seed of torch, numpy and the environments."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of every network."""
    batch_size: int = 256
    """Transitions per gradient step."""
    agent: dict[str, Any] = field(default_factory=dict)
    """Further fields of the algorithm's config (``IQLConfig``, ``TD3BCConfig``)."""
    reward_convention: str = "raw"
    """Reward shaping of the dataset (and of online rewards in fine-tuning): ``raw``,
    ``minus_one`` (``r - 1``, IQL on AntMaze) or ``calql`` (``10 r - 5``); see
    :data:`sftlib.data.goals.REWARD_CONVENTIONS`."""
    checkpoint_every: int = 5_000
    """Write a resumable checkpoint every this many steps."""
    device: str = "auto"
    """``auto`` (CUDA only where it wins: big enough networks and seed stacks, see
    :func:`sftlib.utils.resolve_device`), ``cpu`` or ``cuda``."""
    threads: int = 1
    """Torch CPU threads (one per process is fastest for sweeps)."""
    torch_compile: str = "auto"
    """Run the update's losses through ``torch.compile``: ``on``, ``off``, ``auto`` (on
    where it was measured to win after its compile time: see :func:`compile_update`) or
    ``reduce-overhead`` (compiled into CUDA graphs on a GPU: :func:`compile_mode`).
    Compiled numbers differ from eager ones by rounding, so this is a run parameter."""
    tf32: bool = False
    """On a CUDA GPU, let float32 matrix products use TF32 (faster on tensor cores, about
    1e-3 relative precision); off by default. No effect on a CPU. A run parameter: it
    changes the numbers on a GPU."""
    logger: str = "none"
    """Live curves while the run trains: ``none``, ``tensorboard`` (event files in
    ``<out_dir>/tensorboard/``) or ``wandb`` (offline unless ``WANDB_MODE`` says otherwise);
    see :mod:`sftlib.training.live`. How the run is watched, not what it computes."""

    RANGES: ClassVar[dict[str, Range]] = {
        "offline_steps": POSITIVE,
        "eval_every": POSITIVE,
        "eval_episodes": POSITIVE,
        "seed": NON_NEGATIVE,
        "hidden": POSITIVE,  # each width
        "batch_size": POSITIVE,
        "checkpoint_every": POSITIVE,
        "threads": NON_NEGATIVE,
    }
    """The allowed values of every numeric field (checked, with the types, on construction)."""

    def __post_init__(self) -> None:
        check_field_types(self, ranges=self.RANGES)
        self.hidden = tuple(self.hidden)
        _choice("algo", self.algo, [a for a in AGENTS if a != "sac"])
        validate_dataset_id(self.dataset_id)
        check_reward_convention(self.reward_convention)
        _choice("torch_compile", self.torch_compile, COMPILE_CHOICES)
        _choice("logger", self.logger, LOGGERS)
        self.agent_config()  # unknown or invalid agent fields fail here, before any compute

    def agent_config(self):
        shadowed = sorted({"hidden", "batch_size"} & set(self.agent))
        if shadowed:
            raise ValueError(
                f"agent must not set {shadowed}: they are PretrainConfig fields of their own; "
                "set them at top level"
            )
        return build_config(
            agent_class(self.algo).config_cls,
            {**self.agent, "hidden": self.hidden, "batch_size": self.batch_size},
        )


@dataclass
class SFTConfig:
    """The SFT mechanisms: switch, comprehensive policy evaluation, periodic reset."""

    variant: str = "sft"
    """One of :data:`VARIANTS`."""
    selection: str = "lcb"
    """How the selector critic picks among candidates: ``argmax`` (the spec's literal rule:
    the higher value, minimum over the ensemble), ``softmax`` (sampled, ``beta``), or ``lcb``:
    the learner's candidate runs only if the lower confidence bound of its advantage over the
    anchor's, ``mean_i(d_i) - lcb_k * std_i(d_i)`` with ``d_i = Q_i(s, a_L) - Q_i(s, a_A)``
    over the selector's ensemble members, is positive (the margin comes from the critic's own
    disagreement, not from a constant)."""
    lcb_k: float = 2.0
    """Width of the lower confidence bound of ``lcb`` selection, in ensemble standard
    deviations. With 2 members, 1 means both must prefer the learner's action; 2 means the
    smaller of the two advantages must also exceed half their disagreement."""
    support_k: float = 0.25
    """Support check while the anchor's critic selects (0: none): the learner's candidate may
    run only if it lies within ``support_k`` of the anchor's action, distance measured per
    action dimension in units of the spread of the dataset's actions around the anchor's
    policy (root mean square over dimensions). The anchor's critic was fit on the data
    alone: outside the anchor's support its values are extrapolation."""
    beta: float = 1.0
    """Inverse temperature of softmax selection."""
    incumbent_margin: float = 0.0
    """Favour the anchor's candidate: the learner's is taken only if the selector critic
    scores it higher by more than this fraction of ``|Q(s, a_anchor)|`` (0: plain argmax)."""
    check_every: int = 500
    """Environment steps between stability checks."""
    drift_tol: float = 0.05
    """Relative drift of the learner's critic on the probe set under which it is calm."""
    patience: int = 3
    """Consecutive calm checks needed (with the evaluation verdict) to switch."""
    mc_veto: bool = True
    """Monte-Carlo veto: a switch or an anchor update that the comprehensive evaluation favours
    is refused when the executed episodes say otherwise: the learner executed less than
    ``mc_min_share`` of the recent training steps (too little evidence for it) or
    ``J_mc(L) < J_mc(A) - margin |J_mc(A)|``."""
    mc_min_share: float = 0.2
    """Share of the recent training steps the learner must have executed for its Monte-Carlo
    estimate to count as evidence (``mc_veto``)."""
    probe_every: int = 3
    """Probes (0: none): before the switch, every ``probe_every``-th training episode the
    learner acts alone, so that its Monte-Carlo return is measured while the anchor keeps the
    executed policy. Evaluation never probes."""
    margin: float = 0.05
    """Tolerance of the comprehensive evaluation, relative to ``|J(A)|``: the switch needs
    ``J(L) >= J(A) - margin |J(A)|``; a reset makes the learner the anchor only if
    ``J(L) > J(A) + margin |J(A)|``."""
    probe_size: int = 512
    """State-action pairs in the probe set (half offline, half online states)."""
    ope: str = "cpe"
    """Estimator for switch and reset: ``q``, ``mc``, ``fqe`` or ``cpe`` (combined);
    the ``sft-*`` variants fix it."""
    kappa: float = 1.0
    """Pessimism of the combined estimate ``mean - kappa * std``."""
    mc_episodes: int = 10
    """Recent online episodes used by the ``mc`` estimator and for start states."""
    fqe_every: int = 1
    """Environment steps per FQE gradient step (each FQE critic)."""
    fqe_lr: float = 3e-4
    """Learning rate of the FQE critics."""
    reset_every: int = 50_000
    """Environment steps between resets (D10: 50k, so that no reset happens within a run of
    50k online steps or fewer; at 5k the reset starved the learner)."""
    reset_start: int = 50_000
    """No reset before this step."""
    reset_scope: str = "last"
    """What a reset re-initialises: ``last`` layers, ``full`` networks, or ``offline`` weights."""
    shrink_alpha: float = 0.8
    """Shrink-and-perturb: ``theta <- alpha * theta + (1 - alpha) * theta_reset``; 0 = hard reset."""
    control: str = "state"
    """Who acts under SFT: ``state`` (per-state selection between anchor and learner actions,
    the selector critic switching when the learner is stable) or ``episode`` (one policy drives
    each training episode; the learner is promoted to executed policy when its Monte-Carlo
    returns beat the anchor's with a confidence bound, demoted when they fall below)."""
    promote_k: float = 1.0
    """``episode``: width of the confidence bound on the difference of mean episode returns
    (learner minus anchor), in standard errors; promotion needs the lower bound above
    ``margin |mean_A|``, demotion the upper bound below ``-margin |mean_A|``."""
    promote_min_episodes: int = 3
    """``episode``: episodes each policy must have driven before a promotion or demotion."""
    mc_promote: bool = False
    """``state``: Monte-Carlo evidence promotes as well as vetoes: a switch or an anchor update
    also happens when the executed episodes show the learner better
    (``J_mc(L) > J_mc(A) + margin |J_mc(A)|`` with at least ``mc_min_share`` of the steps), and
    critic or FQE estimates outside the range of discounted returns observed so far are not
    used to decide."""
    warmup_steps: int = 5_000
    """``warmup``: steps the frozen offline policy collects before the learner's first update
    (WSRL's reference value)."""

    RANGES: ClassVar[dict[str, Range]] = {
        "lcb_k": NON_NEGATIVE,
        "support_k": NON_NEGATIVE,
        "beta": POSITIVE,
        "incumbent_margin": NON_NEGATIVE,
        "check_every": POSITIVE,
        "drift_tol": POSITIVE,
        "patience": POSITIVE,
        "mc_min_share": UNIT,
        "probe_every": NON_NEGATIVE,
        "margin": NON_NEGATIVE,
        "probe_size": POSITIVE,
        "kappa": NON_NEGATIVE,
        "mc_episodes": POSITIVE,
        "fqe_every": POSITIVE,
        "fqe_lr": POSITIVE,
        "reset_every": POSITIVE,
        "reset_start": NON_NEGATIVE,
        "shrink_alpha": Range(low=0, high=1, high_open=True),  # 1 would never reset
        "promote_k": NON_NEGATIVE,
        "promote_min_episodes": POSITIVE,
        "warmup_steps": NON_NEGATIVE,
    }
    """The allowed values of every numeric field (checked, with the types, on construction)."""

    def __post_init__(self) -> None:
        check_field_types(self, ranges=self.RANGES)
        _choice("variant", self.variant, list(VARIANTS))
        _choice("selection", self.selection, SELECTIONS)
        _choice("ope", self.ope, OPE_ESTIMATORS)
        _choice("reset_scope", self.reset_scope, RESET_SCOPES)
        _choice("control", self.control, SFT_CONTROLS)

    @property
    def spec(self) -> Variant:
        return VARIANTS[self.variant]

    @property
    def acting(self) -> str:
        """Who acts (:data:`CONTROLS`): the variant's control, or for SFT's variants the field
        ``control``."""
        control = self.spec.control
        return self.control if control == "sft" else control

    @property
    def estimator(self) -> str:
        """The estimator actually used: the variant's, else ``ope``."""
        return self.spec.ope or self.ope

    @property
    def selection_rule(self) -> str:
        return self.spec.selection or self.selection

    def rule_for(self, deterministic: bool) -> str:
        """The selection rule when collecting (stochastic) or evaluating (deterministic):
        sampling rules (``softmax``) evaluate with ``argmax``; ``lcb`` and ``argmax`` are
        used as they are."""
        rule = self.selection_rule
        return "argmax" if deterministic and rule == "softmax" else rule


@dataclass
class FinetuneConfig:
    """Online fine-tuning from a pretraining checkpoint."""

    pretrain_dir: str = ""
    """Directory of the pretraining run (holds ``agent.pt``)."""
    online_steps: int = 2_000
    """Environment steps of online fine-tuning."""
    online_data: str = "auto"
    """How online transitions enter the learner's batches: ``mix`` (a fixed share
    ``offline_ratio`` of offline data, as RLPD and Cal-QL do), ``append`` (online data appended
    to the offline data, sampled uniformly: the natural ratio, as the IQL and CORL fine-tuning
    code do), or ``auto``: the base algorithm's reference recipe
    (:data:`REFERENCE_ONLINE_DATA`)."""
    offline_ratio: float = 0.5
    """``mix`` only: share of each batch drawn from the offline dataset, in [0, 1]."""
    reset_optimizer: bool = False
    """Clear the learner's Adam moments when fine-tuning starts: a stabiliser for TD3+BC,
    whose actor loss changes scale when the behaviour-cloning term is dropped online."""
    utd_ratio: int = 1
    """Gradient updates of the learner per environment step."""
    eval_every: int = 1_000
    """Evaluate executed and learner policies every this many steps (and at 0 and the end)."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    seed: int = 0
    """Seed of torch, numpy and the environments."""
    buffer_size: int = 1_000_000
    """Capacity of the online replay buffer."""
    checkpoint_every: int = 5_000
    """Write a resumable checkpoint at the first episode end after this many steps."""
    device: str = "auto"
    """``auto`` (CUDA only where it wins: big enough networks and seed stacks, see
    :func:`sftlib.utils.resolve_device`), ``cpu`` or ``cuda``."""
    threads: int = 1
    """Torch CPU threads."""
    torch_compile: str = "auto"
    """``torch.compile`` for the learner's update: ``on``, ``off``, ``auto`` or
    ``reduce-overhead`` (see :func:`compile_update`, :func:`compile_mode`)."""
    tf32: bool = False
    """On a CUDA GPU, TF32 matrix products (see ``PretrainConfig.tf32``); off by default."""
    logger: str = "none"
    """Live curves while the run trains: ``none``, ``tensorboard`` (event files in
    ``<out_dir>/tensorboard/``) or ``wandb`` (offline unless ``WANDB_MODE`` says otherwise);
    see :mod:`sftlib.training.live`. How the run is watched, not what it computes."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """The SFT mechanisms."""

    RANGES: ClassVar[dict[str, Range]] = {
        "online_steps": POSITIVE,
        "offline_ratio": UNIT,
        "utd_ratio": POSITIVE,
        "eval_every": POSITIVE,
        "eval_episodes": POSITIVE,
        "seed": NON_NEGATIVE,
        "buffer_size": POSITIVE,
        "checkpoint_every": POSITIVE,
        "threads": NON_NEGATIVE,
    }
    """The allowed values of every numeric field (checked, with the types, on construction)."""

    def __post_init__(self) -> None:
        check_field_types(self, skip=("sft",), ranges=self.RANGES)
        if isinstance(self.sft, dict):
            self.sft = from_flat(SFTConfig, self.sft)
        _choice("online_data", self.online_data, ["auto", *ONLINE_DATA])
        _choice("torch_compile", self.torch_compile, COMPILE_CHOICES)
        _choice("logger", self.logger, LOGGERS)

    def online_data_for(self, algo: str) -> str:
        """The online-data rule used for base algorithm ``algo``: the variant's (``warmup``
        keeps no offline data), else ``online_data`` with ``auto`` resolved."""
        if self.sft.spec.online_data is not None:
            return self.sft.spec.online_data
        if self.online_data != "auto":
            return self.online_data
        return REFERENCE_ONLINE_DATA.get(algo, "mix")


COMPILE_CHOICES = ("auto", "on", "off", "reduce-overhead")
COMPILE_MIN_UPDATES = 10_000
"""``torch_compile: auto`` compiles only runs of at least this many updates: compiling takes 8-10 s
per loss function on one CPU core and saves 1-2 ms per IQL update (measured, 64-64 and
256-256), so it pays for itself after 5-8k updates."""


def compile_update(choice: str, compile_wins: bool, updates: int) -> bool:
    """Whether a run compiles its learner's update: ``on``/``off`` as said; ``auto`` when the
    algorithm was measured to be faster compiled (``Agent.compile_wins``: IQL yes, TD3+BC
    no) and the run makes at least :data:`COMPILE_MIN_UPDATES` updates; ``reduce-overhead``
    always (:func:`compile_mode`)."""
    if choice == "auto":
        return compile_wins and updates >= COMPILE_MIN_UPDATES
    return choice in ("on", "reduce-overhead")


def compile_mode(choice: str) -> str:
    """``torch.compile``'s mode for a ``torch_compile`` choice: ``reduce-overhead`` captures
    the compiled losses (forward and backward) in CUDA graphs, replayed with one launch each,
    against the GPU's per-kernel launch cost (about 4 ms an update on an H200, measured
    eager; not measured compiled: no GPU was available when it was built). On a CPU it
    compiles as ``on`` does. Every other choice: ``default``."""
    return "reduce-overhead" if choice == "reduce-overhead" else "default"


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_flat(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a flat dict; unknown keys are a clear error."""
    known = field_names(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        loc = f" in {where}" if where else ""
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}{loc}; known keys: {known}")
    return cls(**values)


def pretrain_config(params: dict[str, Any], where: str = "") -> PretrainConfig:
    """A :class:`PretrainConfig` from flat notebook/YAML parameters."""
    return from_flat(PretrainConfig, params, where)


def finetune_config(params: dict[str, Any], where: str = "") -> FinetuneConfig:
    """A :class:`FinetuneConfig` from flat parameters: its own fields plus every
    :class:`SFTConfig` field at top level (``variant``, ``reset_every``, ...)."""
    sft_keys = set(field_names(SFTConfig))
    ft_keys = set(field_names(FinetuneConfig)) - {"sft"}
    unknown = sorted(set(params) - sft_keys - ft_keys)
    if unknown:
        loc = f" in {where}" if where else ""
        raise ValueError(
            f"unknown fine-tuning key(s) {unknown}{loc}; known keys: {sorted(ft_keys | sft_keys)}"
        )
    sft = SFTConfig(**{k: v for k, v in params.items() if k in sft_keys})
    return FinetuneConfig(**{k: v for k, v in params.items() if k in ft_keys}, sft=sft)


def resolved_pretrain(values: dict[str, Any]) -> dict[str, Any]:
    """Every :class:`PretrainConfig` field, defaults filled in, as YAML/JSON primitives."""
    config = pretrain_config(values)
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def resolved_finetune(values: dict[str, Any]) -> dict[str, Any]:
    """Every fine-tuning field (FinetuneConfig + SFTConfig, flat), defaults filled in."""
    config = finetune_config(values)
    out = {
        f.name: _plain(getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name != "sft"
    }
    out.update(
        {f.name: _plain(getattr(config.sft, f.name)) for f in dataclasses.fields(config.sft)}
    )
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    return value


def with_other_seeds(
    config: Any, seeds: Sequence[int], pretrain_dirs: Sequence[str] = ()
) -> list[Any]:
    """``config`` followed by a copy of it per other seed (a batch of seeds run side by side
    in one process); fine-tuning copies take their pretraining runs from ``pretrain_dirs``."""
    if pretrain_dirs and len(pretrain_dirs) != len(seeds):
        raise ValueError(
            f"other_pretrain_dirs must name one pretraining run per other seed: {len(seeds)} "
            f"seeds, {len(pretrain_dirs)} directories"
        )
    changes = [{"seed": seed} for seed in seeds]
    for change, pretrain_dir in zip(changes, pretrain_dirs, strict=False):
        change["pretrain_dir"] = str(pretrain_dir)
    return [config] + [dataclasses.replace(config, **change) for change in changes]


def default_pretrain_dir(seed: int) -> Path:
    """Where notebook 01 writes its default pretraining run (:class:`PretrainConfig`'s
    dataset and algorithm) for ``seed``: notebook 02's default starting point."""
    defaults = PretrainConfig(seed=seed)
    return interactive_run_dir(defaults.dataset_id, defaults.algo, "pretrain", seed)
