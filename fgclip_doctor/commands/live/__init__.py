"""`fgclip-doctor live`: resolve the launch, run it in-process (or under torchrun) with the probes,
judge the measurements with the L rules, report. Part of commands/: may import everything below it."""
