"""What a person sees: the live view of a run, status tables, `validate`'s table.

Owns the terminal (``terminal``: the real stdout while Ray's prints go to a log), the live view
(``progress``), ``status`` and ``status --watch`` (``status``, ``watch``) and ``validate``'s
output (``validate``). Views read the record and the plan; they write nothing to the store
except through ``sweeper.record``. Imports ``core``, ``spec``, ``record`` and ``plan``; never the
driver or the report.
"""
