"""The Dagster instance's plugins, named by ``dagster.yaml`` (local) and ``deploy/dagster.yaml`` (production): storage
with a kept event-log connection, runs stored under the code location and tagged with what started them, the
re-execution that plans every automation, the ECS run launcher; and the viewers' read-only Postgres role. Nothing
here imports the code location."""
