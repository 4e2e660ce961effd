"""Adam on one flat buffer per parameter group: torch's multi-tensor Adam, bit for bit, in a
handful of calls per step.

``torch.optim.Adam(foreach=True)`` runs each of its ~8 operations once per parameter on CPU
(the multi-tensor kernels exist only on GPUs), plus a few scalar conversions per parameter:
for an IQL agent (19 parameters) that is ~200 calls and ~1 ms per step on one thread, as much
as its 64-64 networks' forward and backward passes. :class:`FlatAdam` stores a group's
parameters as views of one contiguous tensor and its moments as one tensor each, so every
operation runs once per group on all elements.

The arithmetic is torch's, operation by operation and scalar by scalar, so an agent steps to
the same numbers as with ``torch.optim.Adam(foreach=True)``; and the optimiser's
``state_dict`` has torch's per-parameter layout, so checkpoints written with either load in
the other, and :mod:`sftlib.agents.seeds` stacks and splits them unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FlatAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (no weight decay, no AMSGrad) on flat per-group buffers.

    On construction every parameter's data moves into its group's flat buffer (the
    ``nn.Parameter`` objects stay the same, so modules are unaffected). Every parameter of a
    group must have a gradient at each :meth:`step`: a group's elements move together.
    """

    def __init__(self, params: list[nn.Parameter] | list[dict[str, Any]], lr: float) -> None:
        super().__init__(params, lr=lr, foreach=True)
        self._flat: list[dict[str, Any]] = []
        for group in self.param_groups:
            members = group["params"]
            data = torch.cat([p.detach().reshape(-1) for p in members])
            self._flat.append({"data": data, "grad": torch.empty_like(data)})
            self._point_params(len(self._flat) - 1)

    def __getstate__(self) -> dict[str, Any]:
        # torch's Optimizer pickles three fields; the flat buffers must travel too, with
        # whether the parameters still live in them (bind_seed may have moved them).
        holds = [self._holds(index) for index in range(len(self.param_groups))]
        return {**super().__getstate__(), "_flat": self._flat, "_holds": holds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A deep copy clones every parameter on its own: point the copies back into the
        # copied buffers (same values), so that the copy trains its own modules. Parameters
        # that lived elsewhere keep their cloned values, and this copy cannot step them.
        holds = state.pop("_holds", None)
        super().__setstate__(state)
        if holds is None:  # torch's load_state_dict sets the two fields it loaded
            return
        for index, held in enumerate(holds):
            if held:
                self._point_params(index)
                if "exp_avg" in self._flat[index]:
                    self._point_state(index)

    def _holds(self, index: int) -> bool:
        """Whether group ``index``'s parameters are (still) views of its flat buffer."""
        return self.param_groups[index]["params"][0].data_ptr() == (
            self._flat[index]["data"].data_ptr()
        )

    def _views(self, flat: torch.Tensor, members: list[nn.Parameter]) -> list[torch.Tensor]:
        views, offset = [], 0
        for p in members:
            views.append(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return views

    def _point_params(self, index: int) -> None:
        """Group ``index``'s parameters as views of its flat buffer (which holds their values)."""
        members = self.param_groups[index]["params"]
        for p, view in zip(members, self._views(self._flat[index]["data"], members), strict=True):
            p.data = view

    def _point_state(self, index: int) -> None:
        """Every parameter's state of group ``index`` as views of the flat moments, with one
        shared step count."""
        members, flat = self.param_groups[index]["params"], self._flat[index]
        avgs = self._views(flat["exp_avg"], members)
        sqs = self._views(flat["exp_avg_sq"], members)
        for p, avg, sq in zip(members, avgs, sqs, strict=True):
            self.state[p] = {"step": flat["step"], "exp_avg": avg, "exp_avg_sq": sq}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        # One step count per parameter, as torch keeps them: a shared tensor would be counted
        # once per parameter by a torch Adam that loads this state.
        state["state"] = {
            key: {**value, "step": value["step"].clone()} for key, value in state["state"].items()
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for index, group in enumerate(self.param_groups):
            states = [self.state.get(p) for p in group["params"]]
            if all(s is None for s in states):
                self._flat[index].pop("exp_avg", None)
                continue
            steps = {float(s["step"]) for s in states if s is not None}
            if any(s is None for s in states) or len(steps) != 1:
                raise ValueError(
                    "this optimiser state has parameters at different Adam steps (or some "
                    "without state); every parameter of a group must have been stepped "
                    "together: the checkpoint was not written by this project's agents"
                )
            flat = self._flat[index]
            for key in ("exp_avg", "exp_avg_sq"):
                flat[key] = torch.cat([s[key].reshape(-1) for s in states])
            flat["step"] = torch.tensor(steps.pop())
            self._point_state(index)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("FlatAdam.step takes no closure")
        for index, group in enumerate(self.param_groups):
            members, flat = group["params"], self._flat[index]
            if not self._holds(index):
                raise RuntimeError(
                    "these parameters no longer live in this optimiser's buffer (bound to "
                    "another agent's): build a new optimiser for them"
                )
            grads = [p.grad for p in members]
            if any(g is None for g in grads):
                raise RuntimeError(
                    "FlatAdam needs a gradient for every parameter of a group at each step"
                )
            torch.cat([g.reshape(-1) for g in grads], out=flat["grad"])
            if "exp_avg" not in flat:
                flat["exp_avg"] = torch.zeros_like(flat["data"])
                flat["exp_avg_sq"] = torch.zeros_like(flat["data"])
                flat["step"] = torch.tensor(0.0)
                self._point_state(index)
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            # torch.optim.adam._multi_tensor_adam (capturable=False), on one tensor per group.
            params, grad = [flat["data"]], [flat["grad"]]
            exp_avgs, exp_avg_sqs = [flat["exp_avg"]], [flat["exp_avg_sq"]]
            torch._foreach_add_([flat["step"]], torch.tensor(1.0), alpha=1.0)
            torch._foreach_lerp_(exp_avgs, grad, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grad, grad, 1 - beta2)
            step = flat["step"].item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = (lr / bias_correction1) * -1
            exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(exp_avg_sq_sqrt, [bias_correction2**0.5])
            torch._foreach_add_(exp_avg_sq_sqrt, eps)
            torch._foreach_addcdiv_(params, exp_avgs, exp_avg_sq_sqrt, [step_size])
