"""Stability metrics of a fine-tuning run, from the executed policy's evaluation curve."""

from __future__ import annotations

import numpy as np

METRICS = ("score_offline", "score_final", "score_max", "auc", "dip", "steps_to_recover", "regret")
"""The keys :func:`stability_metrics` returns (each described in
:data:`sftlib.analysis.metric_table.METRICS`)."""


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


def online_cost(
    lengths: np.ndarray, normalized_returns: np.ndarray
) -> dict[str, float | int | None]:
    """What the agent earned while it interacted: over the training episodes (``lengths``
    in steps, ``normalized_returns`` 0-100, ``[n_episodes]``), the *online regret*, the
    step-weighted mean of ``100 - normalised return``, and the worst training episode's
    normalised return (``None`` without a finished episode)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    normalized_returns = np.asarray(normalized_returns, dtype=np.float64)
    if len(lengths) == 0:
        return {"online_regret": None, "worst_training_episode": None, "training_episodes": 0}
    regret = float(np.dot(lengths, 100.0 - normalized_returns) / lengths.sum())
    return {
        "online_regret": regret,
        "worst_training_episode": float(normalized_returns.min()),
        "training_episodes": len(lengths),
    }


DECISIONS = ("switch", "promote", "demote", "anchor_update")
"""The events that hand control to another policy, judged by :func:`decision_calls`."""


def decision_calls(evals: list[dict], events: list[dict]) -> list[bool]:
    """For each decision (:data:`DECISIONS`) in ``events`` (rows with ``step``, ``event``),
    whether it was right, judged by the evaluations (rows with ``step``, ``executed_score``,
    ``learner_score``, ``anchor_score``) at or after it: the frozen anchor's score is known
    from its own evaluations.

    - ``switch``/``promote`` (the learner takes over): right if the next executed score is at
      least the anchor's;
    - ``demote`` (the anchor takes back): right if the next anchor score is at least the
      learner's;
    - ``anchor_update`` (a learner snapshot replaces the anchor): right if the new anchor's
      next score is at least the old anchor's last one.

    A decision with no evaluation after it (or before it, for an anchor update) is not judged.
    """
    calls = []
    for event in events:
        if event["event"] not in DECISIONS:
            continue
        after = [row for row in evals if row["step"] >= event["step"]]
        before = [row for row in evals if row["step"] < event["step"]]
        if not after or after[0].get("anchor_score") is None:
            continue
        nxt = after[0]
        if event["event"] in ("switch", "promote"):
            calls.append(nxt["executed_score"] >= nxt["anchor_score"])
        elif event["event"] == "demote":
            calls.append(nxt["anchor_score"] >= nxt["learner_score"])
        elif before:
            calls.append(nxt["anchor_score"] >= before[-1]["anchor_score"])
    return calls
