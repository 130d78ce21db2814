"""The Docker engine kind runs its nodes in: the one that answers, or one started here.

When no engine answers on the default socket, `up` starts Debian's dockerd with what this host
needs and nothing more: a runtime that drops CAP_SYS_RESOURCE (`runc-nocap`: the host's bounding
set lacks it, and docker grants it to every --privileged kind node), and no iptables rules, no IP
forwarding, no masquerade and no docker0 bridge, since kind's nodes only talk to each other and to
this machine over the `kind` network's bridge. Its images (the node image among them) live in
~/.cache/mnist-serve/docker, a cache like the Go builds. `down` stops only an engine `up` started,
by its PID, after removing the `kind` network (its bridge goes with it) and, if `up` made it, the
empty /lib/modules kind bind-mounts into its nodes (this kernel has no modules).

    python -m clusterkit.kind.engine up|down
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from clusterkit.kube.builds import CACHE
from clusterkit.poll import wait_for
from clusterkit.processes import end_group

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / "artifacts" / "kind"
RECORD = STATE / "engine.json"  # what `up` started and changed, for `down`
RUNTIME = Path(__file__).with_name("runc-nocap")
DATA_ROOT = CACHE / "docker"
EXEC_ROOT = Path("/run/mnist-serve-docker")
SOCKET = Path("/var/run/docker.sock")
MODULES = Path("/lib/modules")
NETWORK = "kind"


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def answers() -> bool:
    return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20).returncode == 0


def command() -> list[str]:
    return [
        "dockerd",
        f"--data-root={DATA_ROOT}",
        f"--exec-root={EXEC_ROOT}",
        f"--pidfile={EXEC_ROOT}/dockerd.pid",
        f"--host=unix://{SOCKET}",
        "--iptables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        "--storage-driver=overlay2",
        "--exec-opt=native.cgroupdriver=cgroupfs",  # PID 1 is not systemd
        f"--add-runtime=runc-nocap={RUNTIME}",
        "--default-runtime=runc-nocap",
    ]


def up(timeout: float = 60) -> None:
    if answers():
        version = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        print(f"[kind] using the Docker engine that answers ({version})")
        return
    if shutil.which("dockerd") is None:
        raise SystemExit("no Docker engine answers and dockerd is missing: run `make kind-deps`")
    STATE.mkdir(parents=True, exist_ok=True)
    record = {"modules": not MODULES.exists()}
    if record["modules"]:
        MODULES.mkdir()  # kind mounts it read-only into every node; docker needs the source
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    log = (STATE / "dockerd.log").open("ab")
    started = time.monotonic()
    process = subprocess.Popen(command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    record["pid"] = process.pid
    RECORD.write_text(json.dumps(record))

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited with {process.returncode}: see {STATE / 'dockerd.log'}")
        return answers()

    wait_for("the Docker engine", ready, timeout, interval=0.5)
    print(f"[kind] started dockerd (PID {process.pid}) in {time.monotonic() - started:.1f} s")


def down(grace: float = 30) -> None:
    if not RECORD.exists():
        return
    record = json.loads(RECORD.read_text())
    if answers():
        docker("network", "rm", NETWORK, check=False)
    pid = record["pid"]
    end_group(pid, grace)  # dockerd and the containerd it supervises
    shutil.rmtree(EXEC_ROOT, ignore_errors=True)
    SOCKET.unlink(missing_ok=True)
    if record["modules"]:
        MODULES.rmdir()  # fails, rightly, if something was put there meanwhile
    RECORD.unlink()
    print(f"[kind] stopped dockerd (PID {pid})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    {"up": up, "down": down}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
