"""The lease's claims as the driver reads them: the readers live in sweeper.record.claims (the views
read them too, and may not import the driver); re-exported here for the lease's code."""

from sweeper.record.claims import (Claim, ClaimWatch, claims_in, clock_namespace, holder_in, pid_gone, pid_namespace,
                                   verdict, watch_clock)

__all__ = ["Claim", "ClaimWatch", "claims_in", "clock_namespace", "holder_in", "pid_gone", "pid_namespace", "verdict",
           "watch_clock"]
