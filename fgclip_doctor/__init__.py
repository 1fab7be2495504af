"""fgclip-doctor: a training-health doctor for FG-CLIP and CLIP-style contrastive training.

Layers, each importing only those below (pyproject [tool.importlinter]): cli > commands > callback >
report > checks | sources > probes > ground floor (facts, settings, vocabulary, units, series,
casebook, environment > errors). `casebook` is plain data: the casebook's cases, which
`rules NAME` names and bench/casebook.py runs; `environment` says which transformers is here.
"""

__version__ = "0.1.0"
