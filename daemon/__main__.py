"""`python -m daemon` runs the command-line interface."""

import sys

from daemon import _early

_early.install()  # before the heavy imports: a SIGTERM during start-up is a clean stop

from daemon.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
