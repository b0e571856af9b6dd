"""What is kept of Dagster's own history, and the daily job that deletes the rest."""
