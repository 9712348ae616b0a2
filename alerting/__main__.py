"""``python -m alerting …`` — the same commands as ``skysentry alert …``."""

from alerting.cli import app

if __name__ == "__main__":
    app(prog_name="python -m alerting")
