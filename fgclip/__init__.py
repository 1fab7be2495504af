"""fgclip: compact FG-CLIP fine-tuning code (the doctor's subject)."""
