"""Training trees the code reader reads as text: never imported, never collected as tests."""
collect_ignore_glob = ["*"]
