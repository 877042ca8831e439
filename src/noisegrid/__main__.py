"""``python -m noisegrid`` runs the CLI."""

from .cli import app

app()
