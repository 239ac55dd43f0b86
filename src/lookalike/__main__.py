"""``python -m lookalike``: the command line (also what ``torchrun -m lookalike`` starts)."""

from lookalike.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
