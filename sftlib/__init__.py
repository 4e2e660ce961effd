"""sftlib: Improved Stable Fine-Tuning (SFT) for offline-to-online reinforcement learning.

Modules, one job each: ``agents`` (IQL, TD3+BC/TD3, SAC), ``buffer`` (transitions and
normalisation), ``data`` (Minari datasets), ``factory``/``behaviour`` (D4RL-style local
datasets), ``pretrain`` (offline phase), ``sft`` (the mechanisms), ``finetune`` (online
phase, every variant), ``metrics`` (stability metrics), ``params``/``sweep`` (studies on
papermill and Dask), ``results`` (tables), ``stats`` (aggregates with bootstrap intervals),
``report`` (verdicts, LaTeX), ``figures``/``run_figures`` (figures), ``cli``.
"""

__version__ = "0.1.0"
