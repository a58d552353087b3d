"""The ``reconciler`` CLI, killed with SIGKILL right after the N-th step of this process ends (crash tests).

``python -m tests.crashing_cli N apply --config ... --yes``: the one place the executor's ``after_step``
hook is armed, so nothing in the product reads a test switch.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys

from reconciler import cli


def main(argv: list[str]) -> int:
    after = int(argv[0])
    ended = itertools.count(1)  # next() on a count is atomic: regions run in parallel threads

    def after_step() -> None:
        if next(ended) == after:
            os.kill(os.getpid(), signal.SIGKILL)

    return cli.main(argv[1:], after_step=after_step)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
