"""Execute, clean and check the notebooks under notebooks/ (`make notebooks`, pre-commit).

    python tools/notebooks.py run [--full] [NOTEBOOK ...]   execute in small mode, saved under
                                                            notebooks/.small/ (--full: the whole lesson,
                                                            saved in place, as the committed copies)
    python tools/notebooks.py clean [NOTEBOOK ...]          strip TensorFlow noise and machine paths
    python tools/notebooks.py check [NOTEBOOK ...]          exit 1 naming what `clean` would change
                                                            or what it cannot fix (pre-commit)
    python tools/notebooks.py clean --redact /tmp/nbruns    outputs saved with an absolute
                                                            FASTCOURSE_OUT: that folder shown as $FASTCOURSE_OUT

Saved outputs must not carry the machine that ran them: the kernel runs from the repository root
with runs under the relative runs/notebooks, the repository's absolute path is rewritten to a
relative one, and TensorFlow's start-up and retracing messages, tqdm's progress frames and
warnings that name site-packages are removed. Whatever absolute path is left fails `check`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# the environment a notebook executes in: quiet TensorFlow, relative run folders
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # not TF_ENABLE_ONEDNN_OPTS=0: it silences one notice and makes convolutions ~20x slower on a
    # CPU (2 epochs of the ladder's CNN on the sample: 82.9 s against 3.7 s)
    "PYTHONWARNINGS": "ignore",
    "FASTCOURSE_OUT": "runs/notebooks",
}

# stderr/stdout lines that are TensorFlow's or a library's noise, not the lesson's output
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ \S+\.(cc|h):\d+\]"  # absl C++ log lines (cuInit, oneDNN, cudart)
    r"|WARNING:tensorflow:"  # retracing and other tf.logging warnings
    r"|WARNING:absl:"
    r"|.*site-packages/.*(Warning|warn)"  # a library's warning naming its file
    r"|\s+from \.autonotebook import"  # the line tqdm's IProgress warning quotes
    r"|\s*warnings\.warn\("
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|This TensorFlow binary is optimized"
    r")"
)
# absolute paths of a machine: anything left after cleaning fails `check`
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|root|home|tmp|private|Users|var/folders|mnt|opt)/[^\s'\"]*")


def redact(nb, folder: str) -> bool:
    """Show the absolute runs folder `folder` in `nb`'s outputs as $FASTCOURSE_OUT (what it was)."""
    folder = folder.rstrip("/")
    changed = False
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for holder, key in [(out, "text")] + [(out.get("data", {}), k) for k in ("text/plain", "text/html")]:
                text = holder.get(key)
                if isinstance(text, str) and folder in text:
                    holder[key] = re.sub(re.escape(folder) + r"(?=[/\s'\";:,)]|$)", "$FASTCOURSE_OUT", text)
                    changed = True
    return changed


def clean_text(text: str, root: str = str(ROOT)) -> str:
    """One stream's text: progress-bar frames reduced to their last, noise lines dropped, the
    repository's absolute path made relative."""
    lines = []
    for line in text.split("\n"):
        line = line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
        if not NOISE.match(line):
            lines.append(line)
    text = "\n".join(lines)
    for prefix in (root + "/", root):
        text = text.replace(prefix, "" if prefix.endswith("/") else ".")
    return text


def _merge_streams(outputs: list) -> list:
    """Consecutive outputs of one stream as one (the kernel sends a progress bar in many pieces)."""
    merged: list = []
    for out in outputs:
        if (
            out.get("output_type") == "stream"
            and merged
            and merged[-1].get("output_type") == "stream"
            and merged[-1]["name"] == out["name"]
        ):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def clean_notebook(nb, root: str = str(ROOT)) -> bool:
    """Clean `nb` in place; True when anything changed. Repeated until nothing changes, so that
    `check` after `clean` (or after `run`) always passes."""
    changed = False
    for _ in range(5):
        if not _clean_once(nb, root):
            break
        changed = True
    return changed


def _clean_once(nb, root: str) -> bool:
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = _merge_streams([dict(o) for o in cell.outputs])
        new = []
        for out in outputs:
            if out.get("output_type") == "stream":
                text = clean_text(out["text"], root)
                if text.strip():
                    new.append(nbformat.from_dict({**out, "text": text}))
                continue
            data = out.get("data", {})
            if "text/plain" in data:
                data["text/plain"] = clean_text(data["text/plain"], root)
            if "text/html" in data:
                data["text/html"] = clean_text(data["text/html"], root)
            new.append(nbformat.from_dict(out))
        new = [nbformat.from_dict(o) for o in _merge_streams(new)]  # streams a dropped one had kept apart
        if new != cell.outputs:
            cell.outputs = new
            changed = True
    return changed


def problems(nb) -> list[str]:
    """What `clean` cannot fix: absolute machine paths and noise left in the outputs, errors."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: an error output ({out.get('ename')})")
            texts = [out.get("text", "")] + [out.get("data", {}).get(k, "") for k in ("text/plain", "text/html")]
            for text in texts:
                text = "".join(text) if isinstance(text, list) else text
                for path in MACHINE_PATH.findall(text):
                    found.append(f"cell {i}: a machine path in the outputs: {path[:80]}")
                for line in text.split("\n"):
                    if NOISE.match(line):
                        found.append(f"cell {i}: noise in the outputs: {line[:80]}")
    return found


def output_bytes(nb) -> int:
    """Bytes of all outputs, as saved (images base64-encoded)."""
    return sum(
        len(
            nbformat.writes(
                nbformat.from_dict(
                    {"cell_type": "code", "source": "", "metadata": {}, "outputs": c.outputs, "execution_count": None}
                )
            )
        )
        for c in nb.cells
        if c.cell_type == "code"
    )


def saved_path(path: Path, small: bool) -> Path:
    """Where `run` saves an executed notebook: in place after a full run (how the committed copies
    are made); under .small/ beside it (notebooks/.small/, gitignored) in small mode, so a quick
    run never replaces a full run's saved outputs with small-mode figures."""
    return path.parent / ".small" / path.name if small else path


def save_executed(nb, path: Path, small: bool) -> Path:
    """Clean `nb` (executed from `path`) and write it where saved_path says; returns that path."""
    target = saved_path(path, small)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_notebook(nb)
    nbformat.write(nb, target)
    return target


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def execute(path: Path, small: bool, timeout: int) -> None:
    """Run every cell from the repository root with the quiet environment; save the cleaned result
    (small mode: under notebooks/.small/, never over the committed full-run outputs)."""
    import nbclient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, **QUIET_ENV, "FASTCOURSE_SMALL": "1" if small else "0"}
    env.pop("MPLBACKEND", None)  # plots inline, as a user sees them
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    start = time.perf_counter()
    try:
        nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
        ).execute()
    except nbclient.exceptions.CellExecutionError:
        target = save_executed(nb, path, small)  # saved with the error, to read it in Jupyter
        print(f"{_shown(path)}: failed; the outputs so far are in {_shown(target)}")
        raise
    finally:
        os.environ.clear()
        os.environ.update(saved)
    target = save_executed(nb, path, small)
    print(
        f"{_shown(path)}: executed ({'small' if small else 'full'} mode) in "
        f"{time.perf_counter() - start:.0f} s, outputs {output_bytes(nb) / 1e3:.0f} kB -> {_shown(target)}"
    )


def _paths(names: list[str]) -> list[Path]:
    return [Path(n).resolve() for n in names] if names else sorted(NOTEBOOKS.glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute and save (small mode, into notebooks/.small/, unless --full)")
    run.add_argument("--full", action="store_true", help="the whole lesson, saved in place (the committed copies)")
    run.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    clean = sub.add_parser("clean", help="strip noise and machine paths in place")
    clean.add_argument(
        "--redact",
        metavar="FOLDER",
        action="append",
        default=[],
        help="an absolute FASTCOURSE_OUT the outputs were saved with: shown as $FASTCOURSE_OUT",
    )
    for p in (run, clean, sub.add_parser("check", help="exit 1 if a notebook needs cleaning or holds machine paths")):
        p.add_argument("notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    args = parser.parse_args(argv)
    bad = 0
    for path in _paths(args.notebooks):
        if args.command == "run":
            execute(path, small=not args.full, timeout=args.timeout)
            continue
        nb = nbformat.read(path, as_version=4)
        changed = clean_notebook(nb)
        for folder in getattr(args, "redact", []):
            changed = redact(nb, folder) or changed
        if args.command == "clean":
            if changed:
                nbformat.write(nb, path)
                print(f"{path.name}: cleaned")
        elif changed:
            bad += 1
            print(f"{path.name}: outputs hold noise or machine paths; run `python tools/notebooks.py clean`")
        for problem in problems(nb):
            bad += 1
            print(f"{path.name}: {problem}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
