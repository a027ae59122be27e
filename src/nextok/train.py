"""``python -m nextok.train``: the same app as ``nextok-train`` (see :mod:`nextok.cli.train`)."""

from nextok.cli.train import main

if __name__ == "__main__":
    main()
