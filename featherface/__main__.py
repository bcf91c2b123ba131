"""``python -m featherface``: the command line (what torchrun starts in every process)."""

from featherface.cli import app

if __name__ == "__main__":
    app()
