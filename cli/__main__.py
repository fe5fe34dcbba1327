"""`python -m cli ...`: the same as `python cli.py ...`."""
from cli import main

raise SystemExit(main())
