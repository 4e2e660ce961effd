"""The variants a sweep can name, in one table (:data:`VARIANTS`): who acts in each and
which SFT mechanisms it switches on. Every other list of variants derives from it or is
checked against it (``tests/test_architecture.py``)."""

from __future__ import annotations

from dataclasses import dataclass

CONTROLS = ("learner", "expansion", "warmup", "state", "episode")
"""Who acts (:mod:`sftlib.sft.control`): the learner alone, policy expansion, the learner after a
warm-up by the frozen offline policy, or SFT's control: per-state selection with switch,
evaluation and reset (``state``), or one policy per training episode with Monte-Carlo promotion
(``episode``)."""
SFT_CONTROLS = ("state", "episode")
"""The choices of SFT's ``control`` field."""


@dataclass(frozen=True)
class Variant:
    """What a named variant switches on. See the variants table of the SFT spec."""

    control: str
    """Who acts, one of :data:`CONTROLS`, or ``sft``: as the field ``control`` says
    (:data:`SFT_CONTROLS`)."""
    switch: bool
    """The anchor's critic selects until the learner is stable (False: the learner's always)."""
    reset: bool
    """Periodic reset of the learner (and anchor update)."""
    ope: str | None
    """Estimator of the comprehensive evaluation forced by the variant (None: ``ope``)."""
    selection: str | None = None
    """Selection rule forced by the variant (None: ``selection``)."""
    baseline: bool = False
    """A baseline SFT is compared against (figures and statistics)."""
    online_data: str | None = None
    """Online-data rule forced by the variant (None: ``online_data``)."""

    def __post_init__(self) -> None:
        if self.control not in (*CONTROLS, "sft"):
            raise ValueError(f"control must be one of {[*CONTROLS, 'sft']}, got {self.control!r}")


VARIANTS: dict[str, Variant] = {
    "direct": Variant("learner", switch=False, reset=False, ope=None, baseline=True),
    "pex": Variant(
        "expansion", switch=False, reset=False, ope=None, selection="softmax", baseline=True
    ),
    "warmup": Variant(
        "warmup", switch=False, reset=False, ope=None, baseline=True, online_data="online"
    ),
    "sft": Variant("sft", switch=True, reset=True, ope="cpe"),
    "sft-noswitch": Variant("sft", switch=False, reset=True, ope="cpe"),
    "sft-q": Variant("sft", switch=True, reset=True, ope="q"),
    "sft-mc": Variant("sft", switch=True, reset=True, ope="mc"),
    "sft-fqe": Variant("sft", switch=True, reset=True, ope="fqe"),
    "sft-noreset": Variant("sft", switch=True, reset=False, ope="cpe"),
    "sft-episode": Variant("episode", switch=True, reset=True, ope=None),
}
"""Every variant a sweep can name: the one table the other lists of variants derive from or
are checked against (tests/test_architecture.py)."""

__all__ = ["CONTROLS", "SFT_CONTROLS", "VARIANTS", "Variant"]
