"""Checkpoint sources: lazy safetensors, weights layouts (layout), weights-only pickles (pickles),
trainer_state history and LR state (history), weight facts (weights), what a resume restores
(resume), one checkpoint as facts (read). Imports sources.derived / sources.files and the ground floor."""
