"""The tags this project puts on runs that more than one part reads, defined once."""

#: What started a run: the person (``intervalprocessing-webserver``), ``processToRun`` (the old task definitions),
#: or, set by the instance (``instance/launch_origin.py``), ``schedule:<name>``, ``sensor:<name>``, ``backfill:<id>``,
#: ``retry <n> of <run id>``. The alert policy (``oncall/alerting.py``) reads it.
LAUNCHED_BY_TAG = "intervalprocessing/launched_by"
#: Its value on the runs ``process_to_run`` executes.
LAUNCHED_BY_PROCESS_TO_RUN = "processToRun"

# Dagster's own run tags, as every run page shows them. Dagster exports no constants for them (they live in
# ``dagster._core.storage.tags``); their values are what its UI, retries and backfills read, and
# ``tests/test_dagster_internals.py`` fails if a Dagster version changes one.
BACKFILL_ID_TAG = "dagster/backfill"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
ROOT_RUN_ID_TAG = "dagster/root_run_id"
RETRY_NUMBER_TAG = "dagster/retry_number"
WILL_RETRY_TAG = "dagster/will_retry"
RUN_FAILURE_REASON_TAG = "dagster/failure_reason"
SCHEDULE_NAME_TAG = "dagster/schedule_name"
SENSOR_NAME_TAG = "dagster/sensor_name"
AUTO_MATERIALIZE_TAG = "dagster/auto_materialize"
AUTOMATION_CONDITION_TAG = "dagster/from_automation_condition"
CODE_LOCATION_TAG = "dagster/code_location"
