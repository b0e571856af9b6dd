"""The IntervalProcessing AWS stack, one module per concern (see README.md for the map)."""
