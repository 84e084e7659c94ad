"""Time `python -m launcher --help` against a dry run, in one run, as whole processes.

--help is answered before Hydra is imported (launcher/__main__.py); Hydra's own page (`--hydra-help`, what
`--help` was) composes the whole config first and took longer than a dry run. Also times the `launcher`
console script's --help and one TAB of shell completion (`launcher --complete`). Runs alternate between the
commands, so that a busy machine slows them alike; prints each median and the ratios. Usage:
    python benchmarks/help_time.py [--runs 7]
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    launcher = [sys.executable, "-m", "launcher"]
    script = Path(sysconfig.get_path("scripts")) / "launcher"
    commands = {
        "--help": [*launcher, "--help"],
        "--hydra-help (Hydra's own page)": [*launcher, "--hydra-help"],
        "dry run of fp8_redrafter": [*launcher, "+experiment=fp8_redrafter", "launcher.dry_run=true"],
        "bare interpreter": [sys.executable, "-c", "pass"],
    }
    if script.is_file() or shutil.which("launcher"):
        executable = str(script) if script.is_file() else shutil.which("launcher")
        commands["launcher --help (console script)"] = [executable, "--help"]
        commands["one TAB (launcher --complete)"] = [executable, "--complete", "launcher cluster="]
    times = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(args.runs):
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, cwd=cwd, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    dry_run = median["dry run of fp8_redrafter"]
    for name, value in median.items():
        print(f"{name:36s} median {value:.3f} s over {args.runs} runs ({value / dry_run:.2f}x the dry run)")
    hydra_page = median["--hydra-help (Hydra's own page)"]
    print(f"--help is {dry_run / median['--help']:.1f}x faster than the dry run and "
          f"{hydra_page / median['--help']:.1f}x faster than Hydra's page")


if __name__ == "__main__":
    main()
