"""Probes for live runs: cross_entropy, subject, accumulator (device-side statistics read back once
per interval), callback (the TrainerCallback; judged by a function it is given) and record (what
was measured). Imports torch, transformers, the subject and the ground floor; never checks/ or sources/."""
