"""What every run shares, whatever its job: the instant it stands for (the run stamp shared by retries), the tags
more than one part reads, where step outputs are kept, the summary line and console output every run ends with."""
