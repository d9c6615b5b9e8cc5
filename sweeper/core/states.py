"""The sweep side's shared words: a trial's states and the CLI's exit codes.

A trial's state is read from its child run by ``sweeper.record.trial_record.state_of`` (the only
place that decides it) and shown by ``status``, ``watch``, the dashboard and the report.
"""

from __future__ import annotations

# --- a trial's state ---------------------------------------------------------------------------

PENDING = "pending"  # no child run yet
RUNNING = "running"
FINISHED = "finished"  # trained every epoch; its final metrics are logged
DIVERGED = "diverged"  # the loss went non-finite: ended, its accuracy is chance
STOPPED_EARLY = "stopped_early"  # an early-stopping scheduler (ASHA) ended it; its last epoch's metrics stand
FAILED = "failed"  # raised, and Ray's retries (max_failures) are spent
INTERRUPTED = "interrupted"  # its driver stopped (Ctrl-C, SIGTERM, killed): the next run resumes it

STATES = (FINISHED, DIVERGED, STOPPED_EARLY, RUNNING, INTERRUPTED, FAILED, PENDING)  # the order tables list them
DONE = (FINISHED, DIVERGED, STOPPED_EARLY)  # never trained again by a re-run of the same spec
# The values of the run's ``status`` tag that this version writes. Runs written by earlier versions
# may carry ``finished`` plus ``sweeper.early_stopped`` = "true", or ``"stopped early"``, for a
# scheduler's stop: readers take those as STOPPED_EARLY too (``trial_record.state_of``).
STATUS_TAG_VALUES = (FINISHED, DIVERGED, STOPPED_EARLY, FAILED)
OLD_STOPPED_EARLY = "stopped early"  # the status word earlier versions showed and read

# --- exit codes of every command ---------------------------------------------------------------

EXIT_OK = 0
EXIT_FAILED = 1  # a trial failed or the driver did; the cause is on the last line printed
EXIT_BAD_INPUT = 2  # a bad spec, flag or store, said in one line; nothing was started
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: the sweep resumes where it stopped
EXIT_LEASE_LOST = 3  # another driver took the sweep over: this one stopped without writing (it is not an error to fix)
