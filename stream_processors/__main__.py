"""``python -m stream_processors vision|audio [...]`` — the same as ``skysentry process ...``."""

from stream_processors.cli import app

if __name__ == "__main__":
    app(prog_name="python -m stream_processors")
