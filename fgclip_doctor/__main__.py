"""`python -m fgclip_doctor` = the `fgclip-doctor` command."""

from fgclip_doctor.cli import app

app(prog_name="fgclip-doctor")
