"""What the engineer on call sees and hears: the run-failure alert, the hourly config checks, the run summary line."""
