"""Locust load for mnist-serve: real MNIST test digits in every wire format, every answer checked.

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 \
        --shape ramp --run-time 60 --csv results/locust --csv-full-history --html results/report.html

One user class per format and endpoint (pick some by naming them on the command line). Each
answered digit's label is compared with the truth and recorded as a request of type CHECK
("<format> labels"): a wrong answer is a failure there, apart from HTTP errors, because even a
correct service misreads ~0.8% of MNIST digits and the gate (slo.py) holds each to its own bound.
`--shape` picks the load over time (shapes.py); `--ray-dashboard` records the replica count of
every Serve deployment during the run (<csv prefix>_replicas.csv).
"""

from __future__ import annotations

import csv
import random
import time

import gevent
import requests
from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task

from mnist_serve import client, data
from shapes import SHAPES, users_at

# Requests prepared once per format: (request, true labels). Each carries one digit except raw
# batches, so that the formats load the service alike.
POOL_SIZE = 500
PAYLOADS: dict[str, list[tuple[client.Request, list[int]]]] = {}


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    parser.add_argument("--shape", choices=sorted(SHAPES), default="steady", help="load over time")
    parser.add_argument("--peak-users", type=int, default=16, help="users at the shape's peak")
    parser.add_argument("--ray-dashboard", default="", help="Ray dashboard URL: record Serve replicas")


@events.init.add_listener
def _payloads(environment, **_) -> None:
    test = data.load("test")
    rng = random.Random(0)
    for fmt, batch in FORMATS.items():
        picks = [rng.sample(range(len(test.labels)), batch) for _ in range(POOL_SIZE)]
        PAYLOADS[fmt] = [(client.encode(fmt, test.images[p]), test.labels[p].tolist()) for p in picks]


class WrongLabel(Exception):
    pass


class MnistUser(FastHttpUser):
    abstract = True
    # Each user asks at most 10 requests/s: the load is users x 10/s until the service saturates.
    wait_time = constant_throughput(10)
    fmt = ""

    @task
    def predict(self) -> None:
        request, truth = random.choice(PAYLOADS[self.fmt])
        with self.client.post(
            request.path,
            data=request.body,
            headers=request.headers,
            name=f"{self.fmt} {request.path}",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:120]}")
                return
            got = client.labels(self.fmt, response.json())
        # One CHECK per digit, so that wrong labels are counted per digit whatever the batch.
        answers = list(zip(got, truth, strict=False)) + [(None, t) for t in truth[len(got) :]]
        for answer, expected in answers:
            self.environment.events.request.fire(
                request_type="CHECK",
                name=f"{self.fmt} labels",
                response_time=0,
                response_length=0,
                exception=WrongLabel(f"answered {answer}, truth {expected}") if answer != expected else None,
                context={},
            )


FORMATS = {"tutorial": 1, "json": 1, "raw": 8, "png": 1, "oip-uint8": 1, "oip-binary": 1}


class TutorialUser(MnistUser):
    """The public tutorial's client: POST / with a JSON-encoded JSON string."""

    fmt = "tutorial"


class JsonUser(MnistUser):
    fmt = "json"
    weight = 2


class RawUser(MnistUser):
    """Raw uint8 pixels, eight digits per request: the compact encoding."""

    fmt = "raw"
    weight = 3


class PngUser(MnistUser):
    fmt = "png"


class OipUser(MnistUser):
    """Open Inference Protocol v2 (KServe / Triton REST)."""

    fmt = "oip-uint8"


class OipBinaryUser(MnistUser):
    """Open Inference Protocol with Triton's binary tensor data (tritonclient's default)."""

    fmt = "oip-binary"


class Shape(LoadTestShape):
    """The shape named by --shape, over --run-time, peaking at --peak-users."""

    def tick(self):
        options = self.runner.environment.parsed_options
        users = users_at(options.shape, self.get_run_time(), options.run_time or 60, options.peak_users)
        return None if users is None else (users, max(1, users))


@events.test_start.add_listener
def _record_replicas(environment, **_) -> None:
    options = environment.parsed_options
    if options and options.ray_dashboard and options.csv_prefix:
        environment.replica_sampler = gevent.spawn(
            _sample_replicas, options.ray_dashboard, f"{options.csv_prefix}_replicas.csv"
        )


@events.test_stop.add_listener
def _stop_recording(environment, **_) -> None:
    if sampler := getattr(environment, "replica_sampler", None):
        sampler.kill()


def _sample_replicas(dashboard: str, path: str, every_s: float = 2.0) -> None:
    """Every few seconds: the running replicas of each Serve deployment, as Ray reports them."""
    started = time.time()
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["elapsed_s", "application", "deployment", "running_replicas"])
        while True:
            try:
                apps = requests.get(f"{dashboard}/api/serve/applications/", timeout=5).json()["applications"]
            except (requests.RequestException, ValueError, KeyError):
                apps = {}
            for app_name, app in apps.items():
                for name, deployment in app["deployments"].items():
                    running = sum(r["state"] == "RUNNING" for r in deployment["replicas"])
                    writer.writerow([round(time.time() - started, 1), app_name, name, running])
            out.flush()
            gevent.sleep(every_s)
