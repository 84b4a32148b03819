"""Host overhead per model on `local` and `ssh`: everything but the timed loop.

Target (issue 4): <= 1.5 s per model. For each model of a sweep this takes
the wall time from the sweep's `start` event to its stored record and
subtracts the timed loop the device reported (`loop_s`). What remains is the
price of the harness: push and hash check, Python start-up, LiteRT import,
model load, warm-up, sensors, validation and the append. The ssh device is a
real OpenSSH server on loopback (throwaway keys), so network latency is ~0
and what is measured is the harness's own round trips.

    .venv/bin/python benchmarks/bench_host_overhead.py [--ssh ssh://user@host?python=...] [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mbdeploy import bench  # noqa: E402
from mbdeploy.devices.local import LocalDevice  # noqa: E402
from mbdeploy.devices.ssh import SshDevice  # noqa: E402
from mbdeploy.runners.base import TimingOptions  # noqa: E402

GRID = [(0.25, 128), (0.5, 160), (0.75, 192), (1.0, 224)]


def models(out: Path) -> list[Path]:
    from mbdeploy.convert import ConvertRequest, convert_model

    for alpha, resolution in GRID:
        convert_model(ConvertRequest(alpha=alpha, resolution=resolution, out_dir=out, formats=["tflite"],
                                     precisions=["fp32"], verify=False))
    return [out / f"mobilenet_v1_{a}_{r}" for a, r in GRID]


@contextmanager
def loopback_sshd():
    """A throwaway OpenSSH server on 127.0.0.1 as the current user (as tests/support/sshd.py does)."""
    folder = Path(tempfile.mkdtemp(prefix="mbd-sshd-"))
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (folder / "sshd_config").write_text(
        f"HostKey {folder / 'host_key'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\nListenAddress 127.0.0.1\n"
        "PasswordAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n")
    (folder / "ssh_config").write_text(
        f"Host *\n  IdentityFile {folder / 'user_key'}\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
        "  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n")
    server = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(folder / "sshd_config"), "-p", str(port)])
    try:
        time.sleep(0.5)
        user = __import__("pwd").getpwuid(os.getuid()).pw_name
        yield f"ssh://{user}@127.0.0.1:{port}?python={sys.executable}&workdir={folder / 'remote'}", folder / "ssh_config"
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def measure(device, model_dirs: list[Path], runs: int, out: Path) -> None:
    artifacts = bench.collect_artifacts(model_dirs, precisions=["fp32"])
    # Waits for the device lock: another bench on the same device would distort the figures.
    options = bench.BenchOptions(timing=TimingOptions(threads=1, runs=runs, warmup_runs=5), wait_for_lock=True)
    started = time.perf_counter()
    info = device.info().to_dict()
    folder = bench.start_run(out, options, model_dirs, [info])
    setup_s = time.perf_counter() - started
    marks: dict[str, float] = {}
    rows = []

    def on_event(kind: str, data: dict) -> None:
        if kind == "start":
            marks["start"] = time.perf_counter()
        elif kind == "record":
            wall = time.perf_counter() - marks["start"]
            loop = data["runner_extra"]["loop_s"]
            phases = data["phases_ms"]
            startup = phases["run"] / 1e3 - loop
            rows.append((data["artifact"]["name"], wall, loop, wall - loop, phases["push"] / 1e3, startup,
                         data["runner_extra"]["import_ms"] / 1e3, data["init_ms"] / 1e3))

    sweep_started = time.perf_counter()
    bench.run_sweep([device], [info], artifacts, folder, options, emit=on_event)
    sweep_s = time.perf_counter() - sweep_started
    print(f"\n{device.id}: device info + run folder {setup_s:.3f} s; runner prepare and models below")
    print(f"{'model':<24} {'wall s':>7} {'loop s':>7} {'overhead s':>10} {'push s':>7} {'run-loop s':>10} "
          f"{'import s':>8} {'load s':>7}")
    for row in rows:
        print(f"{row[0]:<24} {row[1]:>7.3f} {row[2]:>7.3f} {row[3]:>10.3f} {row[4]:>7.3f} {row[5]:>10.3f} "
              f"{row[6]:>8.3f} {row[7]:>7.3f}")
    overheads = [row[3] for row in rows]
    print(f"{device.id}: overhead per model median {statistics.median(overheads):.3f} s, max {max(overheads):.3f} s "
          f"(target <= 1.5 s: {'met' if max(overheads) <= 1.5 else 'NOT met'}); sweep {sweep_s:.2f} s "
          f"incl. one-time runner prepare {sweep_s - sum(row[1] for row in rows):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ssh", help="an ssh device URL; default: a loopback sshd started here")
    parser.add_argument("--ssh-config", type=Path)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model (short: only overhead matters)")
    args = parser.parse_args()
    model_dirs = models(Path(tempfile.gettempdir()) / "mbdeploy-bench-models")
    out = Path(tempfile.mkdtemp(prefix="mbd-overhead-"))
    try:
        run_all(args, model_dirs, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_all(args: argparse.Namespace, model_dirs: list[Path], out: Path) -> None:
    local = LocalDevice(workdir=out / "local-wd")
    measure(local, model_dirs, args.runs, out)
    if args.ssh:
        device = SshDevice(args.ssh, ssh_config=args.ssh_config)
        try:
            measure(device, model_dirs, args.runs, out)
        finally:
            device.close()
        return
    with loopback_sshd() as (url, config):
        device = SshDevice(url, ssh_config=config)
        try:
            measure(device, model_dirs, args.runs, out)
        finally:
            device.close()


if __name__ == "__main__":
    main()
