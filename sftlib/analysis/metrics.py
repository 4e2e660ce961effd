"""Stability metrics of a fine-tuning run, from the executed policy's evaluation curve."""

from __future__ import annotations

import numpy as np

METRICS = ("score_offline", "score_final", "score_max", "auc", "dip", "steps_to_recover", "regret")


def stability_metrics(steps: np.ndarray, scores: np.ndarray) -> dict[str, float | int | None]:
    """Metrics of the SFT spec from one curve of normalised scores (0-100).

    ``steps``/``scores``: ``[n_evals]``, the first at step 0 (the offline policy), the rest
    online. ``score_max``, ``auc`` (mean), ``regret`` (mean of ``100 - score``) and the dip
    are over the online evaluations. ``steps_to_recover`` is 0 without a dip, else the first
    step, from the lowest online score on, back at or above ``score_offline`` (``None`` if
    never).
    """
    steps, scores = np.asarray(steps), np.asarray(scores, dtype=np.float64)
    if steps.ndim != 1 or steps.shape != scores.shape or len(steps) < 2 or steps[0] != 0:
        raise ValueError("need a curve starting at step 0 with at least one online evaluation")
    offline, online, online_steps = scores[0], scores[1:], steps[1:]
    dip = max(0.0, offline - online.min())
    recover: int | None = 0
    if dip > 0:
        lowest = int(np.argmin(online))
        back = np.flatnonzero(online[lowest:] >= offline)
        recover = int(online_steps[lowest + back[0]]) if len(back) else None
    return {
        "score_offline": float(offline),
        "score_final": float(online[-1]),
        "score_max": float(online.max()),
        "auc": float(online.mean()),
        "dip": float(dip),
        "steps_to_recover": recover,
        "regret": float(np.mean(100.0 - online)),
    }
