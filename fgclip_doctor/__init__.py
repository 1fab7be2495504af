"""fgclip-doctor: a training-health doctor for FG-CLIP and CLIP-style contrastive training.

Layers, each importing only those below (pyproject [tool.importlinter]): cli > commands > callback >
report > checks | sources > probes > ground floor (facts, settings, vocabulary, units, series,
environment > errors).
"""

__version__ = "0.1.0"
