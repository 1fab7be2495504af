"""Thin typer commands; placeholder until the core lands."""
from typing import Annotated, Optional

import typer

from fgclip_doctor import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fgclip-doctor {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True)] = None) -> None:
    """A training-health doctor for FG-CLIP and CLIP-style contrastive training."""
