"""Data sources: FG-CLIP annotations: a quick sample (annotations), one record's checks (record),
JSON Lines' fast path (bulk), the loader's file formats (formats), the multi-core scan (scan).
Imports the subject's box rules (fgclip.boxes) and the ground floor only."""
