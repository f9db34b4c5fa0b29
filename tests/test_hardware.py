"""Thread limits and device choice take effect; device detection is honest; ``info``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from appsleuth import hardware
from appsleuth.errors import SpecError
from appsleuth.hardware import available_cores, configure_backend, detect_devices
from appsleuth.info import info_command

# Runs in a fresh interpreter: limits must be applied before JAX starts, which the
# test process (where other tests may have imported JAX already) cannot show.
_PROBE = """
import json, os, sys
import numpy  # as the CLI does: its BLAS pool and threads exist before the limits
from appsleuth.hardware import configure_backend
threads = None if sys.argv[1] == "none" else int(sys.argv[1])
applied = configure_backend(threads=threads, device="cpu")
import jax, jax.numpy as jnp
x = jnp.ones((512, 512))
(x @ x).block_until_ready()
with open("/proc/self/status") as fh:
    os_threads = next(int(l.split()[1]) for l in fh if l.startswith("Threads"))
from threadpoolctl import threadpool_info
print(json.dumps({
    "affinity": sorted(os.sched_getaffinity(0)),
    "thread_affinities": sorted(
        {tuple(sorted(os.sched_getaffinity(int(t)))) for t in os.listdir("/proc/self/task")}
    ),
    "blas_threads": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"],
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "omp": os.environ.get("OMP_NUM_THREADS"),
    "os_threads": os_threads,
    "platform": jax.devices()[0].platform,
    "applied": applied,
}))
"""


def _probe(threads: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen(
        [sys.executable, "-c", _PROBE, threads],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_thread_limit_takes_effect_in_a_fresh_process(monkeypatch):
    # The probes run without SLURM's variables; so does the count they are compared
    # with (this test failed when the suite ran inside a SLURM job).
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    limited, free = _probe("1"), _probe("none")  # both at once: half the waiting
    results = []
    for proc in (limited, free):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    one, unlimited = results
    assert len(one["affinity"]) == 1  # pinned to one core
    # ... every thread, the BLAS threads NumPy started before the limit too
    assert one["thread_affinities"] == [one["affinity"]]
    assert set(one["blas_threads"]) <= {1}
    assert one["omp"] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in one["xla_flags"]
    assert "intra_op_parallelism" not in one["xla_flags"]  # not an XLA flag: XLA would abort
    assert one["platform"] == "cpu"
    assert one["applied"]["threads"] == 1 and one["applied"]["thread_limits"] is True
    # XLA sizes its thread pool from the affinity mask: never more threads than unlimited.
    assert one["os_threads"] <= unlimited["os_threads"]
    assert len(unlimited["affinity"]) == available_cores()
    assert unlimited["applied"]["thread_limits"] is False
    assert unlimited["applied"]["threads_source"] == "all available cores"


def test_slurm_allocation_sets_the_thread_count(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    applied = configure_backend()
    assert applied["threads"] == 1
    assert applied["threads_source"] == "SLURM_CPUS_PER_TASK"
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert len(os.sched_getaffinity(0)) == 1


@pytest.mark.parametrize("value", ["", "0", "2(x3)", "²", "1.5", "-1"])
def test_slurm_cpus_that_are_no_count_are_ignored(monkeypatch, value):
    # "²" is a digit to str.isdigit but not to int(); "2(x3)" is SLURM's per-node form.
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", value)
    assert available_cores() == len(os.sched_getaffinity(0))
    applied = configure_backend()
    assert applied["threads_source"] == "all available cores"
    assert applied["thread_limits"] is False


def test_slurm_cpus_beyond_the_affinity_mask_are_capped(monkeypatch):
    # SLURM variables outlive their job's cgroup, e.g. in a shell that salloc opened.
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4096")
    assert available_cores() == len(os.sched_getaffinity(0))
    applied = configure_backend()
    assert applied["threads"] == len(os.sched_getaffinity(0))
    assert applied["threads_source"] == "SLURM_CPUS_PER_TASK"


def test_tensorflow_backend_gets_its_thread_variables(monkeypatch):
    # TensorFlow need not be installed, and this process's Keras may already run on JAX.
    monkeypatch.setattr(hardware, "check_backend", lambda: "tensorflow")
    applied = configure_backend(threads=1)
    assert applied["backend"] == "tensorflow"
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "1"
    assert os.environ["TF_NUM_INTEROP_THREADS"] == "1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu"}, r"device must be 'auto', 'cpu' or 'gpu'; received device='tpu'"),
        ({"threads": 0}, r"threads must be a positive integer; received threads=0"),
        ({"threads": True}, r"threads must be a positive integer; received threads=True"),
        ({"threads": 10_000}, r"threads must not exceed the \d+ core\(s\) available"),
    ],
)
def test_invalid_settings_are_spec_errors(kwargs, message):
    with pytest.raises(SpecError, match=message):
        configure_backend(**kwargs)


def test_gpu_request_without_a_gpu_says_so(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    if detect_devices()["gpus"]:
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(
        SpecError,
        match=r"device 'gpu' requested but JAX sees no CUDA GPU \(install JAX's CUDA build: "
        r"pip install -e '\.\[cuda\]' in the appsleuth checkout",
    ):
        configure_backend(device="gpu")


def test_gpu_request_when_jax_cannot_start_says_so(monkeypatch):
    import jax

    def no_backend():
        raise AssertionError  # what JAX_PLATFORMS=cuda without the CUDA plugin raises

    monkeypatch.setattr(jax, "devices", no_backend)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    with pytest.raises(SpecError, match=r"device 'gpu' requested but JAX sees no CUDA GPU"):
        configure_backend(device="gpu")
    assert detect_devices()["jax"] == {"error": "AssertionError (JAX_PLATFORMS='cuda')"}


def test_cpu_device_hides_cuda(monkeypatch):
    applied = configure_backend(device="cpu")
    assert applied["device"] == "cpu"
    assert os.environ["JAX_PLATFORMS"] == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_detect_devices_reports_cores_and_devices():
    info = detect_devices()
    assert info["cpu"]["cores_available"] == available_cores()
    assert info["cpu"]["cores_total"] >= info["cpu"]["cores_available"] >= 1
    assert info["device"] == ("gpu" if info["gpus"] else "cpu")
    assert info["jax"]["devices"], "JAX sees at least its CPU device"
    assert all(set(d) >= {"id", "platform", "kind", "memory_bytes"} for d in info["jax"]["devices"])
    assert isinstance(info["slurm"], dict)


@pytest.mark.parametrize(
    ("backend", "gpus", "device", "devices"),
    [
        ("tensorflow", [], "cpu", []),
        ("torch", ["NVIDIA H100 80GB HBM3"], "gpu", ["gpu:0 NVIDIA H100 80GB HBM3"]),
        ("tensorflow", ["A100", "A100"], "gpu", ["gpu:0 A100", "gpu:1 A100"]),
    ],
)
def test_run_hardware_records_the_gpus_of_other_backends(
    monkeypatch, backend, gpus, device, devices
):
    # A run's metadata says where it trained: TensorFlow and PyTorch use their GPU too.
    monkeypatch.setattr(hardware, "backend_name", lambda: backend)
    monkeypatch.setattr(hardware, "_gpu_names", lambda name: gpus if name == backend else None)
    info = hardware.describe_hardware()
    assert (info["backend"], info["device"], info["devices"]) == (backend, device, devices)


def test_info_json_and_table():
    assert info_command.name == "info"
    runner = CliRunner()
    done = runner.invoke(info_command, ["--json"])
    assert done.exit_code == 0, done.output
    info = json.loads(done.output)
    assert set(info) >= {"cpu", "slurm", "backend", "jax", "gpus", "device", "env"}
    done = runner.invoke(info_command, [])
    assert done.exit_code == 0, done.output
    assert "cores available" in done.output
    assert "training device" in done.output


def test_info_table_shows_square_brackets_as_they_are():
    import io

    from rich.console import Console

    from appsleuth.info import print_devices

    info = detect_devices()
    info["slurm"] = {"SLURM_JOB_ID": "[/bold]"}  # rich markup: a MarkupError
    info["cpu"]["model"] = "[red]CPU[/red]"
    buffer = io.StringIO()
    print_devices(info, Console(file=buffer, width=200))
    assert "SLURM_JOB_ID=[/bold]" in buffer.getvalue()
    assert "[red]CPU[/red]" in buffer.getvalue()


def test_info_table_shows_a_gpu_and_its_jax_memory_pool():
    import io

    from rich.console import Console

    from appsleuth.info import print_devices

    info = detect_devices()
    gpu = {"id": 0, "platform": "gpu", "kind": "NVIDIA H200", "memory_bytes": 105 * 2**30}
    info["jax"] = {"version": "0.0", "default_platform": "gpu", "devices": [gpu]}
    info["gpus"] = ["NVIDIA H200"]
    info["nvidia_smi"] = [{"name": "NVIDIA H200", "memory_bytes": 140 * 2**30}]
    buffer = io.StringIO()
    print_devices(info, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "gpu NVIDIA H200 (JAX memory pool 105.0 GiB)" in text
    assert "NVIDIA H200 (140.0 GiB)" in text
    assert "CUDA GPU (fused engine on GPU)" in text


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("jaxx", r"received KERAS_BACKEND='jaxx'"),
        ("[bold]x", r"received KERAS_BACKEND='\[bold\]x'"),  # shown as typed, not as markup
    ],
)
def test_info_flags_a_backend_training_refuses(monkeypatch, value: str, said: str) -> None:
    import re

    from appsleuth._keras import check_backend

    monkeypatch.delitem(sys.modules, "keras", raising=False)  # as before Keras' first import
    monkeypatch.setenv("KERAS_BACKEND", value)
    with pytest.raises(SpecError, match=said) as refused:
        check_backend()  # what training says
    runner = CliRunner()
    done = runner.invoke(info_command, ["--json"])
    assert done.exit_code == 0, done.output  # a diagnostic still runs
    assert json.loads(done.output)["backend_problem"] == str(refused.value)
    done = runner.invoke(info_command, [], env={"COLUMNS": "400"})
    assert done.exit_code == 0, done.output
    row = next(line for line in done.output.splitlines() if "Keras backend" in line)
    assert re.search(
        rf"\(not valid here\): training stops with: KERAS_BACKEND must be .*{said}", row
    )
    assert repr(value) in next(
        line for line in done.output.splitlines() if "$KERAS_BACKEND" in line
    )


def test_info_table_shows_machine_facts_as_text_not_markup():
    import io

    from rich.console import Console

    from appsleuth.info import print_devices

    info = detect_devices()
    info["cpu"]["model"] = "Xeon [bold]"
    info["slurm"] = {"SLURM_NODELIST": "gpu[a-b]", "SLURM_JOB_PARTITION": "[/]"}
    info["jax"] = {"error": "RuntimeError: install jax[cuda12]"}
    info["nvidia_smi"] = [{"name": "GPU [red]", "memory_bytes": None}]
    info["gpus"] = []
    buffer = io.StringIO()
    print_devices(info, Console(file=buffer, width=300))
    text = buffer.getvalue()
    for shown in (
        "Xeon [bold]",
        "SLURM_NODELIST=gpu[a-b], SLURM_JOB_PARTITION=[/]",
        "failed to start: RuntimeError: install jax[cuda12]",
        "GPU [red] (-)",
        "JAX does not use these GPUs: install JAX's CUDA build: pip install -e '.[cuda]' in the "
        "appsleuth checkout",  # it read "install appsleuth"
    ):
        assert shown in text


def _cgroups(tmp_path, monkeypatch, membership: str, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    (tmp_path / "self-cgroup").write_text(membership + "\n")
    monkeypatch.setattr(hardware, "_PROC_CGROUP", str(tmp_path / "self-cgroup"))
    return hardware.cpu_quota(tmp_path / "fs")


@pytest.mark.parametrize(
    ("membership", "files", "quota"),
    [
        # v2: the tightest quota on the way up, rounded up to whole cores
        (
            "0::/a/b",
            {
                "fs/cpu.max": "max 100000",
                "fs/a/cpu.max": "150000 100000",
                "fs/a/b/cpu.max": "max 100000",
            },
            2,
        ),
        ("0::/a/b", {"fs/a/cpu.max": "400000 100000", "fs/a/b/cpu.max": "100000 100000"}, 1),
        ("0::/a", {"fs/a/cpu.max": "max 100000"}, None),
        # a container: the host's path is not mounted here, the mount's own quota is
        ("0::/docker/abc", {"fs/cpu.max": "300000 100000"}, 3),
        ("0::/../../user.slice", {"fs/cpu.max": "200000 100000"}, 2),
        # v1
        (
            "4:cpu,cpuacct:/job",
            {
                "fs/cpu,cpuacct/job/cpu.cfs_quota_us": "200000",
                "fs/cpu,cpuacct/job/cpu.cfs_period_us": "100000",
            },
            2,
        ),
        ("1:cpu:/", {"fs/cpu/cpu.cfs_quota_us": "-1", "fs/cpu/cpu.cfs_period_us": "100000"}, None),
        ("4:memory:/job", {"fs/memory/job/cpu.max": "100000 100000"}, None),
        ("garbage", {}, None),
    ],
)
def test_cgroup_cpu_quota(tmp_path, monkeypatch, membership, files, quota):
    assert _cgroups(tmp_path, monkeypatch, membership, files) == quota


def test_a_container_quota_limits_the_cores_and_threads(monkeypatch):
    # A container limited to 1 CPU still sees every core of its host in its mask.
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores to tell a quota of 1 from the mask")
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(hardware, "cpu_quota", lambda: 1)
    assert available_cores() == 1
    applied = configure_backend()
    assert (applied["threads"], applied["threads_source"]) == (1, "cgroup CPU quota")
    assert len(os.sched_getaffinity(0)) == 1
    done = CliRunner().invoke(info_command, [], env={"COLUMNS": "200"})
    assert "CPU quota 1" in done.output


@pytest.mark.parametrize(
    ("backend", "gpus", "device", "row"),
    [
        ("tensorflow", ["A100"], "gpu", "CUDA GPU (TensorFlow, fit)"),
        ("torch", [], "cpu", "CPU only (PyTorch, fit)"),
    ],
)
def test_info_says_where_another_backend_trains(monkeypatch, backend, gpus, device, row):
    # TensorFlow and PyTorch train on the GPUs they see, not on JAX's.
    monkeypatch.setattr(hardware, "backend_name", lambda: backend)
    monkeypatch.setattr(hardware, "backend_problem", lambda: None)
    monkeypatch.setattr(hardware, "_gpu_names", lambda name: gpus if name == backend else [])
    info = detect_devices()
    assert (info["device"], info["backend_gpus"]) == (device, gpus)
    done = CliRunner().invoke(info_command, [], env={"COLUMNS": "200"})
    assert row in done.output and "fused engine" not in done.output


@pytest.mark.parametrize(
    ("cores", "row"),
    [
        (2, "CPU only (fused engine, working ahead on a second core unless --threads 1)"),
        (1, "CPU only (fused engine, in turn: one usable core)"),
    ],
)
def test_info_says_whether_the_fused_engine_works_ahead(monkeypatch, cores, row):
    monkeypatch.setattr(hardware, "backend_name", lambda: "jax")
    monkeypatch.setattr(hardware, "backend_problem", lambda: None)
    monkeypatch.setattr(hardware, "available_cores", lambda: cores)
    monkeypatch.setattr(hardware, "_jax_gpus", lambda jax: [])
    assert detect_devices()["cpu"]["cores_available"] == cores
    done = CliRunner().invoke(info_command, [], env={"COLUMNS": "200"})
    assert row in done.output


def test_info_names_the_version_of_another_backend(monkeypatch):
    # The JAX row had a version; TensorFlow's and PyTorch's were nowhere.
    import types

    monkeypatch.setattr(hardware, "backend_name", lambda: "torch")
    monkeypatch.setattr(hardware, "backend_problem", lambda: None)
    monkeypatch.setattr(hardware, "_gpu_names", lambda name: [])
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__="2.13.0+cpu"))
    assert detect_devices()["backend_version"] == "2.13.0+cpu"
    done = CliRunner().invoke(info_command, [], env={"COLUMNS": "200"})
    row = next(line for line in done.output.splitlines() if "Keras backend" in line)
    assert "torch (PyTorch 2.13.0+cpu)" in row


def test_info_survives_a_backend_that_fails_to_start(monkeypatch):
    def broken(name):
        raise TypeError("Descriptors cannot be created directly")  # protobuf mismatch

    monkeypatch.setattr(hardware, "backend_name", lambda: "tensorflow")
    monkeypatch.setattr(hardware, "backend_problem", lambda: None)
    monkeypatch.setattr(hardware, "_gpu_names", broken)
    info = detect_devices()
    assert info["device"] == "cpu" and "Descriptors cannot" in info["backend_error"]
    done = CliRunner().invoke(info_command, [], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "TensorFlow failed to start: TypeError: Descriptors cannot" in done.output
