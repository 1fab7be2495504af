"""check-data sources: FG-CLIP annotation files, their layouts, and one record's checks."""
