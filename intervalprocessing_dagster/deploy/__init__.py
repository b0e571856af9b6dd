"""What only the deployed Dagster instance loads: the run launcher ``deploy/dagster.yaml`` names."""
