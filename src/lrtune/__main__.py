"""``python -m lrtune`` is the ``lrtune`` command."""

from lrtune.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
