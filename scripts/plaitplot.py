#!/usr/bin/env python3
"""What plait's plotting scripts share: matplotlib on demand, and running plait's own binaries.

matplotlib is not needed by the build or the tests. When a script calls pyplot() and matplotlib is missing, it is
installed into a virtual environment under ${XDG_CACHE_HOME:-~/.cache}/plait/plot-venv (or with pip --user where
venv is unavailable) and the calling script runs itself again there, with the same arguments.

`python3 scripts/plaitplot.py --check` makes matplotlib importable the same way and exits 0, or prints why not and
exits with UNAVAILABLE (3): the test of the scripts skips on that (tests/scripts/plots_test.sh).
"""
import os
import subprocess
import sys
from pathlib import Path

UNAVAILABLE = 3  # exit status when matplotlib can be neither imported nor installed


def fail(prog, message, status=2):
    print(f"{prog}: {message}", file=sys.stderr)
    sys.exit(status)


def venv_dir():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plait" / "plot-venv"


def _has_matplotlib(python):
    return subprocess.run([str(python), "-c", "import matplotlib"], capture_output=True).returncode == 0


def _reexec(python):
    os.environ["PLAIT_PLOT_REEXEC"] = "1"
    script = os.path.abspath(sys.argv[0])
    os.execv(str(python), [str(python), script] + sys.argv[1:])


def ensure_matplotlib(prog):
    """Import matplotlib, installing it into plait's plot venv (and re-executing the caller there) when missing."""
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("PLAIT_PLOT_REEXEC"):
        fail(prog, "matplotlib is still missing after installing it; install it by hand (pip install matplotlib)",
             UNAVAILABLE)
    venv = venv_dir()
    python = venv / "bin" / "python"
    if python.exists() and _has_matplotlib(python):
        _reexec(python)
    print(f"{prog}: matplotlib not found, installing it into {venv} (once)", file=sys.stderr, flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "matplotlib"]
    except (subprocess.CalledProcessError, OSError):
        print(f"{prog}: python3 -m venv is unavailable, using pip install --user instead", file=sys.stderr, flush=True)
        python = Path(sys.executable)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--user", "matplotlib"]
    if subprocess.run(pip, stdout=sys.stderr).returncode != 0:
        fail(prog, "could not install matplotlib (is PyPI reachable?); install it by hand: pip install matplotlib",
             UNAVAILABLE)
    _reexec(python)


def pyplot(prog):
    """matplotlib.pyplot on the Agg backend (files only, no display), installed first if need be."""
    ensure_matplotlib(prog)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, dpi, prog):
    """Write the figure; a PNG is reduced to a 256-colour palette (Pillow comes with matplotlib), which keeps line
    plots legible at a third of the bytes, so that the pictures committed under docs/ stay near 100 KB."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    if path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)
    print(f"{prog}: wrote {path} ({path.stat().st_size // 1024} KB)", file=sys.stderr)


def add_standard_args(parser, binary, dpi=90, out_help=None):
    """The arguments every drawing script takes: --bin (the plait binary it runs), --out and --dpi."""
    parser.add_argument("--bin", help=f"the {binary} binary (default: build/host's)")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    parser.add_argument("--dpi", type=int, default=dpi)


def start(args, binary, prog):
    """pyplot and the binary's path. pyplot comes first: where it installs matplotlib, the script runs again from
    the start."""
    plt = pyplot(prog)
    return plt, find_binary(binary, args.bin, prog)


def find_binary(name, given, prog):
    """The path of a plait binary: `given`, else build/host's, else on PATH; exits saying how to build it."""
    root = Path(__file__).resolve().parent.parent
    candidates = [Path(given)] if given else [
        root / "build" / "host" / "examples" / "pipeline_schedules" / name,
        root / "build" / "host" / "examples" / "planner" / name,
        root / "build" / "host" / "examples" / "trainer" / name,
        root / "build" / "host" / "bench" / name,
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    if not given:
        from shutil import which

        found = which(name)
        if found:
            return found
    fail(prog, f"cannot find {given or name}; build it (cmake --build --preset host --target {name}) or give its path")


def run(command, prog):
    """stdout of a command; exits with its stderr when it fails."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        fail(prog, f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr.strip()}")
    return done.stdout


if __name__ == "__main__":
    if sys.argv[1:] != ["--check"]:
        fail("plaitplot", "usage: plaitplot.py --check (installs matplotlib if need be; exit 3 where it cannot)")
    ensure_matplotlib("plaitplot")
    import matplotlib

    print(f"plaitplot: matplotlib {matplotlib.__version__}")
