"""What PyTriton's Triton server needs from this Python environment, set up in code.

PyTriton 0.7.0 starts `tritonserver`, whose Python backend runs a stub process
(`triton_python_backend_stub`) that embeds Python. Two things go wrong with camserver's
environment, and both are fixed here, before the server starts, for the child processes only:

1. **The stub loads the wrong libpython.** It is linked against `libpython3.X.so`; when the
   interpreter's own library is not on the loader's path (pyenv, a Python built from source), the
   loader picks the system's libpython3.X, whose patch level differs from the standard library
   the stub then imports, and the model fails to load with `'_thread.RLock' object has no attribute
   '_recursion_count'`. Fix: prepend the interpreter's LIBDIR to `LD_LIBRARY_PATH` in the
   environment the Triton process inherits.
2. **The stub cannot use numpy 2.** It is built with a pybind11 that reads numpy 1's array layout:
   with numpy 2 every output tensor arrives empty (size 0) and a BYTES input crashes the stub
   (measured with PyTriton 0.7.0 and numpy 2.4). camserver itself needs numpy 2 (OpenCV 5 requires
   it). The stub runs the Python of whichever environment PyTriton names, so it gets its own small
   environment: a venv with only numpy<2 in it, and a `.pth` line that appends this environment's
   site-packages (pyzmq, PyTriton's proxy code). The infer functions still run here, on numpy 2; the
   two sides exchange raw buffers with a dtype string, which both numpy versions read alike.

`python -m camserver.infer --prepare` (and `make test`) creates that environment; it downloads
numpy<2 once (about 18 MB) with pip.

A third change is for the service's own log: PyTriton prints every line of Triton's output to
stdout and keeps all of it in a string for the life of the process; here the lines go to the
`tritonserver` logger instead (errors and warnings as warnings, the rest at debug level), kept nowhere.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

log = logging.getLogger(__name__)
server_log = logging.getLogger("tritonserver")

STUB_NUMPY = "numpy>=1.24,<2"
PTH_NAME = "camserver-parent-env.pth"
# error and warning lines Triton prints at every start on a machine without a GPU, and one PyTriton
# always causes; logged at debug level so that a real warning stands out
HARMLESS_SERVER_LINES = ("NVML", "DCGM", "CudaDriverHelper", "CUDA driver", "pinned memory", "model_config_content_name_")
STUB_PYTHONS = ((3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13))  # stubs in the PyTriton 0.7.0 wheel


def libpython_dir() -> str | None:
    """The folder holding this interpreter's shared libpython, or None for a static build."""
    libdir, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libdir or not name:
        return None
    return libdir if (Path(libdir) / name).exists() else None


def numpy_major() -> int:
    """This environment's numpy major version."""
    import numpy

    return int(numpy.__version__.split(".")[0])


def platform_problem() -> str | None:
    """Why PyTriton cannot run on this machine, or None when it can."""
    if sys.platform != "linux":
        return f"PyTriton runs on Linux only (this is {sys.platform})"
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "aarch64", "arm64"):
        return f"PyTriton ships Triton for x86_64 and aarch64 only (this is {machine})"
    if sys.version_info[:2] not in STUB_PYTHONS:
        return f"PyTriton 0.7.0 has no Python backend stub for Python {sys.version_info[0]}.{sys.version_info[1]}"
    if importlib.util.find_spec("pytriton") is None:
        return ("nvidia-pytriton is not installed (its wheel needs Linux x86_64/aarch64 with glibc 2.35+; "
                "`make test` installs it where pip can)")
    if libpython_dir() is None:
        return "this Python has no shared libpython, which Triton's Python backend stub needs"
    return None


def default_stub_env() -> Path:
    """Where the stub's environment lives: inside this environment, so removing it removes both."""
    return Path(sys.prefix) / "triton-stub"


def _site_packages(env: Path) -> Path:
    return env / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def stub_env_problem(env: Path) -> str | None:
    """What is wrong with the stub environment at `env`, or None when it is ready."""
    hint = f"run `{Path(sys.executable).name} -m camserver.infer --prepare` once (it pip-installs numpy<2 into {env})"
    cfg = env / "pyvenv.cfg"
    if not cfg.exists() or not (env / "bin" / "python3").exists():
        return f"Triton's Python stub environment is missing: {hint}"
    version = next((line.split("=", 1)[1].strip() for line in cfg.read_text().splitlines()
                    if line.startswith("version")), "")
    if version.rsplit(".", 1)[0] != f"{sys.version_info[0]}.{sys.version_info[1]}":
        return f"Triton's Python stub environment is for Python {version}: {hint}"
    packages = _site_packages(env)
    if not any(p.name.startswith("numpy-1.") for p in packages.glob("numpy-*.dist-info")):
        return f"Triton's Python stub environment has no numpy 1.x: {hint}"
    if not (packages / PTH_NAME).exists():
        return f"Triton's Python stub environment does not point at this environment: {hint}"
    return None


def prepare_stub_env(env: Path, pip_args: tuple[str, ...] = ()) -> None:
    """Create the stub's environment: a venv with numpy<2 that also sees this environment's packages.

    Raises:
        subprocess.CalledProcessError: pip could not install numpy<2.
    """
    if not (env / "pyvenv.cfg").exists():
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(env)
    packages = _site_packages(env)
    packages.mkdir(parents=True, exist_ok=True)
    if not any(p.name.startswith("numpy-1.") for p in packages.glob("numpy-*.dist-info")):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                        "--target", str(packages), STUB_NUMPY, *pip_args], check=True)
    # appended after the stub environment's own site-packages: its numpy 1 wins, the rest comes from here
    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (packages / PTH_NAME).write_text("".join(f"{p}\n" for p in parents))


def configure_triton_child(stub_env: Path | None) -> None:
    """Set the environment the Triton server and its stub inherit; call before Triton starts.

    Args:
        stub_env: the numpy<2 environment for the stub, or None when numpy here is already 1.x.
    """
    libdir = libpython_dir()
    if libdir is not None:
        current = os.environ.get("LD_LIBRARY_PATH", "")
        if libdir not in current.split(":"):
            os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir
    if stub_env is not None:
        from pytriton.server import triton_server

        # PyTriton puts <env>/bin first on the Triton process's PATH, and the stub starts the
        # Python it finds there; this function is its only hook for which environment that is
        triton_server.get_triton_python_backend_python_env = lambda: stub_env
    forward_server_log()


def _forward_server_line(_server: object, line: bytes | str) -> None:
    """Triton's output line by line into the `tritonserver` logger: E/W lines as warnings, the rest at debug."""
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    text = text.rstrip()
    if not text:
        return
    harmless = any(marker in text for marker in HARMLESS_SERVER_LINES)
    server_log.log(logging.WARNING if text[:1] in ("E", "W") and not harmless else logging.DEBUG, "%s", text)


def forward_server_log() -> None:
    """Send Triton's output to logging instead of stdout plus an ever-growing string (see above)."""
    from pytriton.server import triton_server

    triton_server.TritonServer._record_logs = _forward_server_line
