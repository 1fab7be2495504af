"""Probes for live runs: statistics kept on the device inside hooks, read back once per interval."""
