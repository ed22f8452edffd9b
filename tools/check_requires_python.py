"""Fail if an installed distribution's Requires-Python excludes this interpreter.

`pip install --ignore-requires-python` is needed for tfx 1.16 (declared <3.11, pure
Python, runs here); it would also admit releases that need a newer Python and break at
import. Only the two known TFX distributions are allowed through.
"""

import platform
import sys
from importlib.metadata import distributions

from packaging.specifiers import SpecifierSet

ALLOWED = {"tfx", "ml-pipelines-sdk"}


def main() -> int:
    here = platform.python_version()
    bad = []
    for dist in distributions():
        name = dist.metadata["Name"]
        spec = dist.metadata.get("Requires-Python")
        if spec and name.lower() not in ALLOWED and not SpecifierSet(spec).contains(here):
            bad.append(f"{name} {dist.version} requires Python {spec}")
    for line in bad:
        print(f"error: {line}; this venv runs Python {here}: pin a release that supports it", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
