"""``nextok-consolidate``: a sharded (FSDP2) checkpoint folder -> one checkpoint file
(:mod:`nextok.checkpoint.consolidate` does the work; this is the argument handling):

    nextok-consolidate runs/x/checkpoints/last.ckpt                 # -> last.consolidated.pt
    nextok-consolidate runs/x/checkpoints/last.ckpt out.ckpt --dtype bfloat16
    python -m nextok.cli.consolidate ...                            # same without the script
"""

from __future__ import annotations

import argparse
import sys

from nextok.checkpoint.consolidate import consolidate
from nextok.cli.errors import one_line_errors
from nextok.dtypes import DTYPES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="nextok-consolidate",
        description="Consolidate a sharded FSDP checkpoint folder into one checkpoint file.",
    )
    p.add_argument(
        "checkpoint", help="sharded checkpoint folder, e.g. runs/x/checkpoints/last.ckpt"
    )
    p.add_argument(
        "output",
        nargs="?",
        default=None,
        help="output file (default: <folder minus .ckpt>.consolidated.pt)",
    )
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="cast floating-point weights (default: keep the saved fp32 master weights)",
    )
    args = p.parse_args(argv)
    with one_line_errors("nextok-consolidate"):
        out = consolidate(args.checkpoint, args.output, args.dtype)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
