"""Notebook parameters as one source of truth with the config dataclasses.

A phase notebook's ``parameters`` cell holds one flat primitive per config field (the test
``tests/test_notebook_parameters.py`` checks the cell against the fields). The notebook
does not re-list them to build its config: it opens a :class:`ParameterScope` just before
the parameters cell and collects the values after it (papermill injects its values in a
cell right after the parameters cell, so they are collected too)::

    scope = ParameterScope(globals(), "finetune")     # last line of the imports cell
    # parameters cell: variant = "sft" ...
    config = finetune_config(scope.collect())         # the config cell

A name defined in between that is no config field (a typo in ``-p reset_evry 10``, say) is an
error naming it and the known fields, before any compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sftlib.config import FinetuneConfig, PretrainConfig, SFTConfig, field_names

EXTRAS = {
    "pretrain": ("out_dir", "other_seeds", "other_out_dirs"),
    "finetune": ("out_dir", "other_seeds", "other_out_dirs", "other_pretrain_dirs"),
}
"""Parameters of the phase notebooks that are no config field: where the run is written, and
the other seeds trained in the same process with their run directories (and, fine-tuning,
their pretraining runs)."""


def config_fields(kind: str) -> list[str]:
    """The flat parameter names of a phase notebook: ``pretrain`` (notebook 01) is every
    :class:`PretrainConfig` field, ``finetune`` (notebook 02) every :class:`FinetuneConfig`
    field but ``sft`` plus every :class:`SFTConfig` field."""
    if kind == "pretrain":
        return field_names(PretrainConfig)
    if kind == "finetune":
        return [f for f in field_names(FinetuneConfig) if f != "sft"] + field_names(SFTConfig)
    raise ValueError(f"kind must be 'pretrain' or 'finetune', got {kind!r}")


class ParameterScope:
    """Collects the parameters a notebook defines after this object is created.

    ``namespace`` is the notebook's ``globals()``; the names present now are not parameters.
    The first :meth:`collect` fixes which names are parameters, so running cells again
    interactively (which defines more globals) never turns later variables into parameters.
    """

    def __init__(
        self, namespace: dict[str, Any], kind: str, extras: Sequence[str] | None = None
    ) -> None:
        self.namespace = namespace
        self.kind = kind
        self.fields = config_fields(kind)
        self.extras = tuple(EXTRAS[kind] if extras is None else extras)
        self._before = set(namespace)
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        """Parameter names defined since the scope opened (fixed at the first call)."""
        if self._names is None:
            self._names = [
                name
                for name, value in self.namespace.items()
                if name not in self._before
                and not name.startswith("_")
                and not isinstance(value, ParameterScope)
            ]
        return self._names

    def collect(self) -> dict[str, Any]:
        """``{field: value}`` for every config field the notebook defines.

        Raises:
            ValueError: a parameter names no config field (and is no extra such as
                ``out_dir``); the message lists the known fields.
        """
        known = set(self.fields) | set(self.extras)
        unknown = [name for name in self.names() if name not in known]
        if unknown:
            raise ValueError(
                f"parameter(s) {unknown} name no {self.kind} config field; known: "
                f"{sorted(self.fields)} (and {list(self.extras)})"
            )
        return {name: self.namespace[name] for name in self.fields if name in self.namespace}
