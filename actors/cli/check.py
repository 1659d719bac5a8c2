"""``transport-actors check``: validate a config file and print it with every secret masked."""

from __future__ import annotations

import argparse
import json

from ._common import EXIT_OK, _config


def _cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"OK: {args.config}")
    print(json.dumps(config.redacted(), indent=2))
    return EXIT_OK
