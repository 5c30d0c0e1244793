"""Which environment variables a function's code reads: `python -m tests.support.settings_probe MAIN`.

Runs the function's main.py in an empty environment with shared/settings.py's reader recording every
name it is asked for (required or optional). Every read happens before the reader raises on what is
missing, so the record is complete; prints {name: required} as JSON.
"""

from __future__ import annotations

import json
import runpy
import sys

from shared import settings


def main() -> None:
    read: dict[str, bool] = {}
    optional, required = settings.EnvReader.optional, settings.EnvReader.required

    def record_optional(self, name: str):
        read.setdefault(name, False)
        return optional(self, name)

    def record_required(self, name: str):
        read[name] = True
        return required(self, name)

    settings.EnvReader.optional = record_optional  # type: ignore[method-assign]
    settings.EnvReader.required = record_required  # type: ignore[method-assign]
    try:
        runpy.run_path(sys.argv[1], run_name="main")
    except settings.ConfigurationError:
        pass
    print(json.dumps(read))


if __name__ == "__main__":
    main()
