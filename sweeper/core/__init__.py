"""The words every other part of sweeper shares, and the trial's identity.

Owns the trial states and exit codes (``states``), the user-facing errors and how a value is named
in a message (``errors``), ``Trial``/``trial_key`` (``trial``), and the settings read from the
environment, each declared once (``settings``, docs/settings.md), the logging namespace (``logs``)
and environment variables set for a block (``environ``). Imports nothing of sweeper and
nothing heavy, so that every other subpackage may import it (and ``sweeper validate`` stays fast).
"""
