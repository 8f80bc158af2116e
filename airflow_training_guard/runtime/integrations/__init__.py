"""Integrations of the runtime contract with training libraries (optional extras, imported lazily).

Each module imports its library when it is imported itself, never before; nothing in
:mod:`airflow_training_guard` or :mod:`airflow_training_guard.runtime` imports them, so a program
that does not use a library never needs it installed (a test pins this).

- :mod:`~airflow_training_guard.runtime.integrations.torch` (extra ``torch``): save and restore
  model, optimizer, LR scheduler, grad scaler, RNG states and the data position through the
  :class:`~airflow_training_guard.runtime.Checkpointer`; multi-rank aware (rank 0 writes, every
  rank loads, shards complete or the checkpoint is skipped).
- :mod:`~airflow_training_guard.runtime.integrations.hf` (extra ``hf``): a ``TrainerCallback`` for the
  Hugging Face ``Trainer`` and the newest *valid* ``checkpoint-N`` folder to resume from.
- :mod:`~airflow_training_guard.runtime.integrations.lightning` (extra ``lightning``): a Lightning
  ``Callback`` with the same behaviours.

How to use each: ``docs/trainers.md``.
"""

from __future__ import annotations
