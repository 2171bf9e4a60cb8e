"""`fastcourse sweep --dashboard SWEEP`: optuna-dashboard on a sweep's study, on localhost."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from fastcourse.errors import UsageError
from fastcourse.sweeps.study import JOURNAL, describe_storage, open_storage


def serve(folder: str | Path, storage: Optional[str] = None, port: int = 8080) -> None:
    """Serve the study of the sweep in `folder` (its journal, or the database `storage` names) until Ctrl-C."""
    folder = Path(folder)
    if storage is None and not (folder / JOURNAL).is_file():
        raise UsageError(
            f"{folder}: no {JOURNAL} here; give a sweep folder (sweeps/NAME), or --storage URL for a database study"
        )
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise UsageError("--dashboard needs optuna-dashboard: pip install 'fastcourse[sweep-dashboard]'") from None
    print(f"fastcourse: dashboard of {describe_storage(storage, folder)} on http://127.0.0.1:{port}/ (Ctrl-C stops it)")
    run_server(open_storage(storage, folder), host="127.0.0.1", port=port)
