"""What a spec asks for: which trials are left to run, what each carries, and what they cost.

Owns the plan of a sweep (``planning``: the trials a spec defines, sampled trials, what Optuna has
left, read against the record), the payload a trial travels with (``payload``), the work estimate
(``estimate``, no torch) and the measured one (``measure``, ``validate --measure``). Imports
``sweeper.core``, ``sweeper.spec`` and ``sweeper.record``; no Ray, no training loop.
"""
