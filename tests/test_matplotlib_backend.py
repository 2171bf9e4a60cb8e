"""Library plots never switch matplotlib's backend nor leave figures in pyplot: after fastcourse
has saved its figures, a notebook's inline backend (here a stand-in, svg) and the user's own
`plt.plot(); plt.show()` work as before."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds


def test_plots_keep_the_users_backend(tmp_path):
    script = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        import numpy as np
        import fastcourse
        from fastcourse.run import plots
        from fastcourse.results import views
        from fastcourse.data import augment
        from fastcourse.train.lr_find import LRFinderResult

        out = {str(tmp_path)!r}
        plots.plot_learning_curves({{"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}}, out + "/c.png", split="valid")
        plots.plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], out + "/m.png")
        views.plot_grid([[(np.zeros((8, 8, 3), np.uint8), "x")]], out + "/g.png")
        augment.preview(None, np.zeros((8, 8, 3), np.uint8), out + "/p.png", n=2)
        LRFinderResult(np.array([1e-3, 1e-2, 1e-1]), np.array([1.0, 0.5, 2.0]), 1e-2, 1e-2).plot(out + "/l.png")
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        assert plt.get_fignums() == [], plt.get_fignums()  # nothing of ours is left for plt.show()
        plt.plot([1, 2, 3])
        plt.savefig(out + "/mine.svg")
        plt.show()
        print("ok", matplotlib.get_backend())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok svg")
    for name in ["c.png", "m.png", "g.png", "p.png", "l.png", "mine.svg"]:
        assert (tmp_path / name).stat().st_size > 0, name
