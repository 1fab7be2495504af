"""Commands: one module (or folder) per CLI command, each a thin pipeline source -> facts ->
checks -> report, plus its presentation (tables). May import callback, report, checks, sources,
probes and the ground floor; only cli.py imports commands."""
