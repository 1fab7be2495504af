"""fgclip-doctor: a training-health doctor for FG-CLIP and CLIP-style contrastive training."""

__version__ = "0.1.0"
