"""Install torch for `make run` / `make test` before camserver's own dependencies, and say which build.

On a machine with an NVIDIA GPU (`nvidia-smi` on the PATH, or /proc/driver/nvidia) nothing is done here:
pip then takes torch from the default index with ultralytics, which on Linux is the CUDA build. Without
one, on Linux, the CUDA build would bring about 3 GB of NVIDIA libraries nobody uses, so torch's CPU
build is installed from its own index (https://download.pytorch.org/whl/cpu, or $TORCH_CPU_INDEX) when
that index answers; when it does not (offline, a proxy, a mirror only) or pip fails there, the default
index is used after all, and this says so. A torch already installed is left alone (a working venv is
never changed behind its owner's back). Elsewhere (macOS, Windows) the default wheels are CPU builds.

Standard library only: it runs before anything else is installed. Exit 0 whatever it decided, so the
install goes on; it prints one line saying what it did.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PACKAGES = ("torch", "torchvision")  # what ultralytics needs of the torch family
PROBE_TIMEOUT_S = 10.0


def has_nvidia_gpu(nvidia_smi: str = "nvidia-smi", proc: Path = Path("/proc/driver/nvidia")) -> bool:
    """Whether this machine has an NVIDIA driver: its tool on the PATH or its /proc entry."""
    return shutil.which(nvidia_smi) is not None or proc.exists()


def reachable(index: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the index answers for torch (its /torch/ page), else why not."""
    url = index.rstrip("/") + "/torch/"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout_s) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason) or type(exc).__name__


def torch_installed(python: str) -> bool:
    """Whether `python` (the venv's) can already import torch (checked without importing it)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def decide(gpu: bool, linux: bool, installed: bool) -> str:
    """What to do: "keep" (torch is there), "default" (the default index: GPU, or not Linux) or "cpu"."""
    if installed:
        return "keep"
    if gpu or not linux:
        return "default"
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    """Decide, install, and print one line saying which build torch comes from."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", default=sys.executable, help="the venv's python (default: this one)")
    p.add_argument("--index", default=os.environ.get("TORCH_CPU_INDEX", CPU_INDEX), help="torch's CPU index")
    p.add_argument("--nvidia-smi", default="nvidia-smi", help=argparse.SUPPRESS)  # tests: a name not on the PATH
    p.add_argument("--nvidia-proc", type=Path, default=Path("/proc/driver/nvidia"), help=argparse.SUPPRESS)
    p.add_argument("--platform", default=sys.platform, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    gpu = has_nvidia_gpu(args.nvidia_smi, args.nvidia_proc)
    choice = decide(gpu, args.platform.startswith("linux"), torch_installed(args.python))
    if choice == "keep":
        print("torch: already installed; leaving it as it is")
        return 0
    if choice == "default":
        print("torch: from the default index" + (" (an NVIDIA GPU is here: the CUDA build)" if gpu else ""))
        return 0
    why = reachable(args.index)
    if why is None:
        pip = [args.python, "-m", "pip", "install", "-q", "--index-url", args.index, *PACKAGES]
        if subprocess.run(pip).returncode == 0:
            print(f"torch: no NVIDIA GPU here, so installed torch's CPU build from {args.index}")
            return 0
        why = "pip could not install from it"
    print(f"torch: no NVIDIA GPU here, but torch's CPU index {args.index} is not reachable ({why}); falling back "
          "to the default index (the CUDA build, about 3 GB more in .venv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
