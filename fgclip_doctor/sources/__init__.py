"""Sources: turn an input into Facts with provenance. launch/ (scripts, args files, typed flags),
code/ (training code, the subject on meta), checkpoint/, data/ read independently of each other;
derived.py and files.py sit under them, run_config.py and live.py over. Never import checks/."""
