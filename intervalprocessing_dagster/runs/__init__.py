"""How a run is started and which instant it stands for: the run stamp shared by retries, and the old
``processToRun`` entry point that starts a job from the old ECS task definitions."""
