"""The tags this project puts on runs that more than one part reads, defined once."""

#: What started a run: the person (``intervalprocessing-webserver``), ``processToRun`` (the old task definitions),
#: or, set by the instance (``instance/launch_origin.py``), ``schedule:<name>``, ``sensor:<name>``, ``backfill:<id>``,
#: ``retry <n> of <run id>``. The alert policy (``oncall/alerting.py``) reads it.
LAUNCHED_BY_TAG = "intervalprocessing/launched_by"
#: Its value on the runs ``process_to_run`` executes.
LAUNCHED_BY_PROCESS_TO_RUN = "processToRun"
