"""The Dagster instance's plumbing, named by ``dagster.yaml`` (local) and ``deploy/dagster.yaml`` (production):
storage with a kept event-log connection, where step outputs live, and the ECS run launcher."""
