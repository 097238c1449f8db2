"""The scheduled sweeps: each covers one window (or the current state), exactly one replica at a time,
a page at a time with a checkpoint (`runner`)."""
