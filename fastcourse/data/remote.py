"""Where `fastcourse data get` fetches each dataset from, and how a download is checked.

SOURCES is a plain module-level dict so tests (and users with a local copy) can swap an entry;
every HTTP base URL is also overridden by the environment variable FASTCOURSE_MIRROR (one base
URL under which the files keep their names), or by `get(..., mirror=...)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Optional

MIRROR_ENV = "FASTCOURSE_MIRROR"
KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclass(frozen=True)
class Remote:
    """One file on a server and the published facts it is checked against.

    `md5_head` is fastai's own check: the md5 of the first MiB plus the exact `size`
    (fastai/data/external.py `_check_file` reads `f.read(2**20)`); it is all fastai publishes.
    """

    file: str
    base: str
    sha256: Optional[str] = None
    md5: Optional[str] = None
    size: Optional[int] = None
    md5_head: Optional[str] = None

    def url(self, mirror: Optional[str] = None) -> str:
        base = mirror or os.environ.get(MIRROR_ENV) or self.base
        return base.rstrip("/") + "/" + self.file


@dataclass(frozen=True)
class Source:
    """A dataset `fastcourse data get` knows: an archive over HTTP, Keras cache files, or Kaggle."""

    name: str
    kind: Literal["archive", "keras", "kaggle"]
    files: tuple[Remote, ...] = ()
    keras_path: str = ""  # keras: the path under $KERAS_HOME/datasets keras.datasets reads
    competition: str = ""  # kaggle
    split: dict = field(default_factory=dict)  # make_split arguments after the download
    about: str = ""


SOURCES: dict[str, Source] = {
    "dogscats": Source(
        "dogscats",
        "archive",
        # The course's http://files.fast.ai/data/dogscats.zip is gone and had no published hash.
        # fastai's URLs.DOGS is this tgz; size and md5-of-first-MiB from fastai/fastai
        # fastai/data/checks.txt (commit 29be53d7ccaf7405320e2e47db8f35182abeff0a), which lists
        # the same [839285364, "3e483c8d..."] for http://files.fast.ai/data/examples/dogscats.tgz.
        (
            Remote(
                "dogscats.tgz",
                "https://s3.amazonaws.com/fast-ai-sample/",
                size=839_285_364,
                md5_head="3e483c8d6ef2175e9d395a6027eb92b7",
            ),
        ),
        # the course's layout: 1,000 valid images per class, a small sample/ for quick runs
        split={"method": "stratified", "valid": 2000, "sample_train": 200, "sample_valid": 100, "seed": 0},
        about="Kaggle dogs vs cats as the course laid it out (fast.ai's archive, 840 MB)",
    ),
    "statefarm": Source(
        "statefarm",
        "kaggle",
        competition="state-farm-distracted-driver-detection",
        # the course held out 3,478 images by driver; same numbers as configs/statefarm/*.yaml
        split={"method": "grouped", "valid": 3478, "sample_train": 1500, "sample_valid": 1000, "seed": 0},
        about="Kaggle State Farm distracted drivers (4 GB; needs a Kaggle account and the rules accepted)",
    ),
    "mnist": Source(
        "mnist",
        "keras",
        # URL and sha256 as in keras/src/datasets/mnist.py (keras 3.15)
        (Remote("mnist.npz", KERAS_BASE, sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),),
        keras_path="mnist.npz",
        about="MNIST digits, into the Keras cache keras.datasets.mnist reads (11 MB)",
    ),
    "fashion_mnist": Source(
        "fashion_mnist",
        "keras",
        # URLs as in keras/src/datasets/fashion_mnist.py, which checks no hash; the md5s are the
        # ones zalandoresearch/fashion-mnist README.md publishes for the same four files.
        (
            Remote("train-images-idx3-ubyte.gz", KERAS_BASE, md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            Remote("train-labels-idx1-ubyte.gz", KERAS_BASE, md5="25c81989df183df01b3e8a0aad5dffbe"),
            Remote("t10k-images-idx3-ubyte.gz", KERAS_BASE, md5="bef4ecab320f06d8554ea6380940ec79"),
            Remote("t10k-labels-idx1-ubyte.gz", KERAS_BASE, md5="bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        keras_path="fashion-mnist",
        about="Fashion-MNIST, into the Keras cache keras.datasets.fashion_mnist reads (30 MB)",
    ),
}


def get_command(name: str | None, path: str | os.PathLike) -> Optional[str]:
    """The `fastcourse data get` command that makes dataset `name`'s folder `path` (None when
    `name` is not one `data get` knows). Statefarm's configs read `<to>_split`, which it writes."""
    from pathlib import Path

    source = SOURCES.get(name or "")
    if source is None or source.kind == "keras":
        return None
    to = Path(path).expanduser()
    if source.kind == "kaggle" and to.name.endswith("_split"):
        to = to.with_name(to.name.removesuffix("_split"))
    default = Path("data") / source.name
    return f"fastcourse data get {source.name}" + ("" if to == default else f" --to {to}")
