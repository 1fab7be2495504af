"""fgclip: compact FG-CLIP fine-tuning code (the doctor's subject).

Imports torch and transformers only; never fgclip_doctor (a contract in pyproject.toml).
"""
