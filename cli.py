"""seqlens command line: `python cli.py --help`. The commands live in the cli/ package (one module per group);
`import cli` (with the repository root on sys.path) imports that package, never this file."""
if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # as before, also under python -P
    from cli import main

    raise SystemExit(main())
