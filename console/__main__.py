"""``python -m console`` — the same as ``skysentry console``."""

from console.cli import app

if __name__ == "__main__":
    app(prog_name="python -m console")
