"""The SFT mechanisms, one module each, named as in the paper:

- :mod:`~sftlib.sft.selection`: action selection by the selector critic, with its support check;
- :mod:`~sftlib.sft.switch`: stability of the learner's critic, and the switch of selector;
- :mod:`~sftlib.sft.policy_evaluation`: comprehensive policy evaluation (Monte-Carlo returns,
  cross-evaluated critics, FQE, the pessimistic aggregate) and the Monte-Carlo veto;
- :mod:`~sftlib.sft.fqe`: Fitted Q Evaluation critics (trained side by side as a stack);
- :mod:`~sftlib.sft.reset`: periodic reset and anchor update;
- :mod:`~sftlib.sft.control`: who acts, one object per variant (``direct``, ``pex``), and
  :mod:`~sftlib.sft.state_control`: SFT's per-state selection, tying the mechanisms together.
"""
