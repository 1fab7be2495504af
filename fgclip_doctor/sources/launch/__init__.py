"""Launch sources: bash words (shell), launch scripts (script), args files (args), what a target
gives a training (target), and its flags typed by the real parser (flags). Imports sources.files and
the ground floor only; never code/, checkpoint/ or data/."""
