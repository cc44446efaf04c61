"""Shared pieces of the benchmarks: test photos as JPEG bytes, timing, process memory, table printing."""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def photo_jpegs(count: int, size: tuple[int, int] = (640, 480)) -> list[bytes]:
    """`count` JPEG files of real photos shipped with scikit-image, scikit-learn and matplotlib, at
    `size` (a phone photo scaled for chat), repeated as needed."""
    from PIL import Image

    paths = _photo_paths()
    out = []
    for i in range(count):
        image = Image.open(paths[i % len(paths)]).convert("RGB").resize(size)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _photo_paths() -> list[Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    paths = [data / n for n in ("astronaut.png", "rocket.jpg", "chelsea.png", "coffee.png", "motorcycle_left.png",
                                "hubble_deep_field.jpg", "camera.png")]
    for module, names in (("sklearn.datasets", ("images/china.jpg", "images/flower.jpg")),
                          ("matplotlib", ("mpl-data/sample_data/grace_hopper.jpg",))):
        try:
            base = Path(__import__(module, fromlist=["_"]).__file__).parent
        except ImportError:
            continue
        paths += [base / n for n in names if (base / n).is_file()]
    return [p for p in paths if p.is_file()]


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """min / median / p95 of timings, in milliseconds."""
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"min_ms": round(ordered[0] * 1000, 1), "median_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1), "runs": len(ordered)}


def rss_mb(pid: int | None = None) -> dict[str, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM) of a process, in MiB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024}


def machine() -> dict[str, object]:
    """What the numbers came from."""
    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "avx512_vnni": "avx512_vnni" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx": any(f.startswith("amx") for f in flags), "load_average": load,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def save(name: str, payload: dict) -> Path:
    """Write results as JSON under bench/results/ (latest run per name)."""
    return write_json(RESULTS / f"{name}.json", payload)


def write_json(path: Path, payload: dict) -> Path:
    """Write results as JSON to `path` (its folder made if missing); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (pastes into docs/performance.md as is)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
