"""What a spec asks for: which trials are left to run, what each carries, and what they cost.

Owns the plan of a sweep (``planning``: the trials a spec defines, each built once as its worker
gets it, sampled trials, what Optuna has left, read against the record), search algorithms and
schedulers by name (``search``), the work estimate
(``estimate``, no torch) and the measured one (``measure``, ``validate --measure``). Imports
``sweeper.core``, ``sweeper.spec`` and ``sweeper.record``; no Ray, no training loop.
"""
