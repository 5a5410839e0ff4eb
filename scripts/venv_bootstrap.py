"""Run a script with the project's virtualenv even when it was started with another Python: a new user's
`python scripts/x.py` (or `python agent.py`) just works after `bash scripts/setup_env.sh`."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def ensure_project_python(script: str) -> None:
    """Re-run `script` under .venv/bin/python when batchops is not importable here; exit with one line
    saying what to do when there is no .venv yet."""
    try:
        import batchops  # noqa: F401
    except ModuleNotFoundError:
        venv = Path(__file__).resolve().parents[1] / ".venv"
        venv_python = venv / "bin" / "python"
        if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
            os.execv(str(venv_python), [str(venv_python), script, *sys.argv[1:]])
        sys.exit("error: the batchops package is not installed for this Python; run `bash scripts/setup_env.sh` "
                 "once (it creates .venv), then run this again")
