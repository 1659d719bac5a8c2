"""``transport-actors check``: validate a config file and print it with every secret masked."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import EXIT_OK, _config


def _cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"OK: {args.config}")
    print(json.dumps(config.redacted(), indent=2))
    for warning in config.gateway.security_warnings():  # valid, but unsafe to expose
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK
