"""The MLflow record: how a sweep lives in the tracking store, and the only code that talks to it.

Owns every tag, param and metric name sweeper writes (``names``), the store itself (``tracking``:
experiment, parent run, child runs by trial key, paging, retries, buffered logging), a trial's
state (``trial_record``: the one reader and writer), the run index and bulk reads (``run_index``,
``readback``), study versions (``versions``), the parent run as dashboard and its live state
(``dashboard``, ``live``), the child run's short params and note (``child_run``), a trial's gamma
histogram artifact (``gamma_figure``), UI links
(``links``) and the checks before a store is used (``preflight``). Imports ``sweeper.core`` only
(and mlflow); never Ray, never a view or the driver.
"""
