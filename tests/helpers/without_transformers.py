"""The fgclip-doctor CLI as it runs where transformers is not installed: `python without_transformers.py ARGS...`.

`sys.modules["transformers"] = None` makes every `import transformers` (and `from transformers ...`)
raise ImportError, as in an environment without it; the rest of the environment stays as it is.
"""

import sys

sys.modules["transformers"] = None

from fgclip_doctor.cli import app  # noqa: E402 (after the block, which is the point)

sys.argv[0] = "fgclip-doctor"
app()
