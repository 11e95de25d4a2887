"""How fast ``prepare cxr-lt`` turns a CXR-LT sized CSV into a datalist, and how fast the datalist loads.

Generates a 380,000-row CSV in the style of the CXR-LT challenge (dicom_id, subject_id, study_id, fpath and the
26 labels of ``cxr_lt_2023`` drawn at their published frequencies, about 65,000 patients) in a temporary folder,
then runs, each in a fresh process so peak memory is its own:

1. ``python -m pipeline prepare cxr-lt --no-check-files`` (the images do not exist);
2. loading the written datalist with ``pipeline.data.load_datalist`` (what training start-up does before it
   touches an image).

Goals: prepare under 30 s and 2 GiB peak resident memory. Prints measured values and their ratio to the goal
(below 1.0 meets it).

    python bench/prepare_speed.py [--rows 380000] [--patients 65000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.data import load_label_set  # noqa: E402

GOAL_SECONDS = 30.0
GOAL_MEMORY_GIB = 2.0

_MEASURE = r"""
import json, resource, sys, time
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": elapsed, "peak_gib": peak_kib / 2**20}}))
"""

_PREPARE = """
from pipeline.cli import main
code = main(sys.argv[1:])
assert code == 0, code
"""

_LOAD = """
from pipeline.data import load_datalist
datalist = load_datalist(sys.argv[1])
assert sum(len(datalist[s]) for s in ("training", "validation", "test")) > 0
"""


def make_csv(path: Path, rows: int, patients: int, seed: int = 0) -> None:
    """Write a synthetic CXR-LT style CSV with ``rows`` images of ``patients`` patients."""
    rng = np.random.default_rng(seed)
    label_set = load_label_set("cxr_lt_2023")
    frequencies = np.array([label_set.train_counts[label] / label_set.train_total for label in label_set.labels])

    subject = np.sort(rng.integers(0, patients, size=rows)) + 10_000_000
    study = 50_000_000 + np.arange(rows) // 2
    dicom = pd.Series(rng.integers(0, 2**63 - 1, size=rows, dtype=np.int64)).map("{:016x}".format)
    subject_text = pd.Series(subject).astype(str)
    fpath = (
        "files/p"
        + subject_text.str[:2]
        + "/p"
        + subject_text
        + "/s"
        + pd.Series(study).astype(str)
        + "/"
        + dicom
        + ".jpg"
    )
    frame = pd.DataFrame({"dicom_id": dicom, "subject_id": subject, "study_id": study, "fpath": fpath})
    labels = (rng.random((rows, len(frequencies))) < frequencies).astype(np.int8)
    frame = pd.concat([frame, pd.DataFrame(labels, columns=list(label_set.labels))], axis=1)
    frame.to_csv(path, index=False)


def measure(body: str, *args: str) -> dict[str, float]:
    """Run ``body`` in a fresh interpreter; return its own time and peak resident memory."""
    wall_start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE.format(body=body), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - wall_start
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"benchmark step failed with exit code {result.returncode}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["wall_seconds"] = wall
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=380_000)
    parser.add_argument("--patients", type=int, default=65_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prepare_speed_") as tmp:
        csv_path = Path(tmp) / "cxr_lt_train.csv"
        out_path = Path(tmp) / "datalist.json"
        start = time.perf_counter()
        make_csv(csv_path, args.rows, args.patients)
        print(
            f"generated {args.rows} rows, {args.patients} patients ({csv_path.stat().st_size / 2**20:.0f} MiB CSV) "
            f"in {time.perf_counter() - start:.1f} s"
        )

        prepare = measure(
            _PREPARE, "prepare", "cxr-lt", "--labels", str(csv_path), "--out", str(out_path), "--no-check-files"
        )
        load = measure(_LOAD, str(out_path))
        size_mib = out_path.stat().st_size / 2**20

    print(f"\n{'step':<34}{'seconds':>9}{'goal':>8}{'ratio':>8}{'peak GiB':>10}{'goal':>7}{'ratio':>8}")
    rows = [
        ("prepare cxr-lt (in process)", prepare["seconds"], prepare["peak_gib"]),
        ("prepare cxr-lt (whole command)", prepare["wall_seconds"], prepare["peak_gib"]),
    ]
    for name, seconds, peak in rows:
        print(
            f"{name:<34}{seconds:>9.2f}{GOAL_SECONDS:>8.0f}{seconds / GOAL_SECONDS:>8.2f}"
            f"{peak:>10.2f}{GOAL_MEMORY_GIB:>7.0f}{peak / GOAL_MEMORY_GIB:>8.2f}"
        )
    print(f"{'load datalist (in process)':<34}{load['seconds']:>9.2f}{'':>16}{load['peak_gib']:>10.2f}")
    print(f"{'load datalist (whole command)':<34}{load['wall_seconds']:>9.2f}")
    print(f"datalist size: {size_mib:.0f} MiB")


if __name__ == "__main__":
    main()
