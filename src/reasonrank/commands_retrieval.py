"""CLI: `reasonrank index` and `reasonrank retrieve`."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add this module's subcommands to the `reasonrank` parser."""
    del sub


__all__ = ["argparse", "register"]
