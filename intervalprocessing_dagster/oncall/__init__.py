"""What the engineer on call sees and hears: the run-failure and check alerts, the hourly config checks, the run
summary line, a failed run's console output."""
