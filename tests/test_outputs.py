"""Outputs survive kills, full disks and failures. `export` swaps a complete encoder/decoder pair in, with a
manifest of sha256s, at one rename; `encode --backend onnx` uses that export only when the manifest matches the
run's weights; `encode`/`denoise` refuse a write the disk cannot hold before creating anything, and leave no
temporary file on any exit path (a SIGKILLed write's is removed by the next write to the same target); an error
after a progress bar starts a line of its own. Real runs, real processes, real signals, a real full file system."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from aekit.fileio import sha256_file
from data_helpers import cli, train_run

BASE = ["--model", "ae", "--dataset", "digits", "--latent-dim", "2", "--hidden-dims", "16", "--no-progress"]


def screen(err: str) -> list[str]:
    """Lines as a terminal shows them: a carriage return goes back to the start of the line and overwrites."""
    lines = []
    for raw in err.split("\n"):
        line: list[str] = []
        for part_i, part in enumerate(raw.split("\r")):
            col = 0 if part_i else len(line)
            line[col : col + len(part)] = part
        lines.append("".join(line).rstrip())
    return [ln for ln in lines if ln]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def default_signals() -> None:
    """In the child: Ctrl-C and SIGTERM act as they do at a terminal, also under a runner that ignores them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def env(data_dir) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "AEKIT_DATA": str(data_dir), "PYTHONHASHSEED": "0"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Path:
    return train_run(tmp_path_factory.mktemp("outputs"), data_dir, *BASE, "--epochs", "1")


@pytest.fixture
def run(trained, tmp_path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(trained, dest)
    return dest


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """50,000 random 8x8 uint8 images: 3.2 MB in, 3.2 MB denoised out, 400 kB of codes out."""
    path = tmp_path_factory.mktemp("inputs") / "many.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (50_000, 8, 8), dtype=np.uint8))
    return path


def replace_weights(run_dir: Path) -> str:
    """Other weights in the run's model.safetensors (as a retrained or swapped model would leave); their sha256."""
    from aekit.train import load_run
    from aekit.train.runs import WEIGHTS, save_weights

    model = load_run(run_dir).model
    torch.manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    save_weights(model, run_dir / WEIGHTS)
    return sha256_file(run_dir / WEIGHTS)


def torch_codes(run_dir: Path) -> np.ndarray:
    from aekit.train import load_run

    r = load_run(run_dir)
    images, _ = r.data().split("all")
    with torch.no_grad():
        return r.model.encode(images.float() / 255).numpy()


# ----------------------------------------------------------------------------------------------- export

DRIVER = r"""
import json, os, signal, sys

import onnx, torch, torch.onnx  # noqa: F401 - imported once here, not in every forked child
import aekit.export  # noqa: F401
import aekit.fileio as fileio
from aekit.cli import main

run, points = sys.argv[1], int(sys.argv[2])
statuses = []
for k in range(points + 1):  # child k is SIGKILLed just before step k of the export; child `points` finishes
    pid = os.fork()
    if pid == 0:
        steps = [0]

        def killed_before(n, fn):
            def step(*a, **kw):
                if steps[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
                steps[0] += 1
                return fn(*a, **kw)
            return step

        os.replace = killed_before(k, os.replace)  # renames of encoder.onnx, decoder.onnx, export.json
        fileio._exchange = killed_before(k, fileio._exchange)  # the swap of the folders
        fileio._remove = killed_before(k, fileio._remove)  # removal of the old folder, after the swap
        fileio.remove_stale_temps = lambda path: []  # keep the dead children's leftovers for the last check
        os._exit(main(["export", run]))
    statuses.append(os.waitpid(pid, 0)[1])
    names = sorted(os.listdir(os.path.join(run, "export")))
    files = {n: fileio.sha256_file(os.path.join(run, "export", n)) for n in names}
    manifest = json.load(open(os.path.join(run, "export", "export.json")))
    print(json.dumps({"status": statuses[-1], "files": files, "manifest": manifest}), flush=True)
"""


def test_export_sigkilled_at_every_step_leaves_the_old_pair_or_the_new(run, data_dir, tmp_path, capsys):
    """`aekit export` killed (SIGKILL) before each of its steps: encoder written, decoder written, manifest
    written, folders swapped, old folder removed. RUN/export is always the complete old pair with its manifest
    until the swap and the complete new one after it, and the next export removes the dead ones' leftovers."""
    assert cli(capsys, "export", run)[0] == 0
    old = {p.name: sha256_file(p) for p in (run / "export").iterdir()}
    new_weights = replace_weights(run)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(script), str(run), "5"], env=env(data_dir), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    states = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [s["status"] for s in states] == [signal.SIGKILL] * 5 + [0]
    seen = []
    for s in states:
        if s["files"] == old:
            seen.append("old")
            continue
        m = s["manifest"]
        assert set(s["files"]) == {"encoder.onnx", "decoder.onnx", "export.json"}, s["files"]
        assert m["weights_sha256"] == new_weights and m["files"] == {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
        assert m["sha256"] == {k: v for k, v in s["files"].items() if k != "export.json"}  # the files it names
        seen.append("new")
    assert seen == ["old"] * 4 + ["new"] * 2  # the swap is the one moment the pair changes
    assert len(hidden(run)) == 5  # each killed child's temporary folder (or, after the swap, the old one)
    assert cli(capsys, "export", run)[0] == 0
    assert hidden(run) == []  # their processes are gone: the next export removed them


def test_export_failing_between_its_files_keeps_the_old_pair(run, monkeypatch, capsys):
    """The disk fills after encoder.onnx is written: exit 2, one line naming the export folder, the old pair
    untouched, no temporary folder."""
    import errno

    from aekit import fileio

    assert cli(capsys, "export", run)[0] == 0
    before = {p.name: p.read_bytes() for p in (run / "export").iterdir()}
    replace_weights(run)
    real, calls = fileio.atomic_write, []

    def write(path, data):
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(fileio, "atomic_write", write)
    code, _, err = cli(capsys, "export", run)
    assert calls == ["encoder.onnx", "decoder.onnx"]
    assert code == 2 and err.count("\n") == 1 and err.startswith("aekit: error: no space left on the device while writing")
    assert str(run / "export") in err
    assert {p.name: p.read_bytes() for p in (run / "export").iterdir()} == before and hidden(run) == []


def test_export_out_refuses_a_folder_of_other_files(run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = cli(capsys, "export", run, "--out", mine)
    assert code == 2 and "holds other files" in err and err.count("\n") == 1
    assert sorted(os.listdir(mine)) == ["notes.txt"] and hidden(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "export", run, "--out", empty)[0] == 0  # an empty folder is taken
    assert cli(capsys, "export", run, "--out", empty, "--format", "torchscript")[0] == 0  # an export is replaced whole
    assert sorted(os.listdir(empty)) == ["decoder.pt", "encoder.pt", "export.json"]
    manifest = json.loads((empty / "export.json").read_text())
    assert manifest["sha256"] == {n: sha256_file(empty / n) for n in ("encoder.pt", "decoder.pt")}
    assert manifest["weights_sha256"] == sha256_file(run / "model.safetensors") and oct((empty).stat().st_mode)[-3:] != "700"


def test_encode_onnx_reexports_when_the_weights_changed(run, monkeypatch, capsys):
    """RUN/export is used while its manifest matches the weights; after the weights are replaced, `encode
    --backend onnx` exports afresh (one line on stderr) and writes the new model's codes."""
    pytest.importorskip("onnxruntime")
    from aekit import export

    out = run / "codes.npy"
    argv = ["encode", run, "--backend", "onnx", "--out", out, "--no-progress"]
    assert cli(capsys, "export", run)[0] == 0
    with monkeypatch.context() as m:
        m.setattr(export, "export_onnx", lambda *a, **k: pytest.fail("a matching export was not reused"))
        code, _, err = cli(capsys, *argv)
    assert code == 0 and err == ""
    np.testing.assert_allclose(np.load(out), torch_codes(run), atol=1e-4)

    replace_weights(run)
    code, _, err = cli(capsys, *argv)
    assert code == 0 and err.count("\n") == 1 and "encoder.onnx not used (exported from other weights" in err
    np.testing.assert_allclose(np.load(out), torch_codes(run), atol=1e-4)
    assert cli(capsys, "export", run)[0] == 0
    assert cli(capsys, *argv)[2] == ""  # exported again: used again


# ------------------------------------------------------------------------------------ encode and denoise


def mount_small_fs(mnt: Path) -> str | None:
    """Mount a real 2 MB file system (tmpfs) on ``mnt``; None, or why it cannot be done here."""
    mnt.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "mounting a tmpfs needs root on Linux"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    return f"cannot mount a tmpfs here: {r.stderr.strip()}" if r.returncode else None


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    if why := mount_small_fs(mnt):
        pytest.skip(why)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_output_larger_than_the_free_space_is_refused_before_anything_is_written(run, many, small_fs, capsys):
    code, _, err = cli(capsys, "denoise", run, "--data", many, "--out", small_fs / "d.npy", "--no-progress")
    assert code == 2 and err.count("\n") == 1 and err.startswith("aekit: error: not enough free space for"), err
    assert re.search(r"needs 4\.\d MB \(3\.2 MB \+ 1\.0 MB to spare\) but .* has 2\.\d MB free", err), err
    assert os.listdir(small_fs) == []
    code, _, err = cli(capsys, "encode", run, "--data", many, "--out", small_fs / "c.npy", "--no-progress")
    assert code == 0, err  # 400 kB of codes fit: the check refuses only what does not
    assert np.load(small_fs / "c.npy").shape == (50_000, 2) and os.listdir(small_fs) == ["c.npy"]


FILL = r"""
import shutil, sys
real = shutil.disk_usage
if sys.argv[1] == "lie":  # the check is told there is room: the write itself meets the full disk
    shutil.disk_usage = lambda p: real(p)._replace(free=10**12)
from aekit.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_write_that_fails_midway_leaves_nothing_and_one_line(run, many, data_dir, tmp_path):
    """The real write fails halfway (a 2 MB tmpfs whose free-space check was fooled; where no tmpfs can be
    mounted, a 1 MB RLIMIT_FSIZE): exit 2, not a SIGBUS; one error line naming the output, on a line of its own
    after the progress bar; nothing left behind."""
    import resource

    def limit_file_size():  # files of at most 1 MB for this process (Python ignores SIGXFSZ: the write gets EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    folder = tmp_path / "small"
    full_disk = mount_small_fs(folder) is None
    preexec = None if full_disk else limit_file_size
    script = tmp_path / "fill.py"
    script.write_text(FILL)
    out = folder / "d.npy"
    try:
        proc = subprocess.run([sys.executable, str(script), "lie", "denoise", str(run), "--data", str(many), "--out",
                               str(out), "--batch-size", "1000"], env=env(data_dir), capture_output=True, timeout=120,
                              preexec_fn=preexec)
        left = os.listdir(folder)
    finally:
        if full_disk:
            subprocess.run(["umount", "-l", str(folder)], check=False)
    err = proc.stderr.decode()  # bytes: text mode would turn the bar's carriage returns into newlines
    shown = screen(err)
    assert proc.returncode == 2, err[-2000:]
    assert "denoise:" in err  # a progress bar was drawn before the failure
    assert shown[-1].startswith("aekit: error: ") and str(out) in shown[-1], shown
    assert ("no space left on the device" if full_disk else "File too large") in shown[-1]
    assert err.count("aekit: error:") == 1 and "Traceback" not in err
    assert left == []


def test_killed_encodes_leave_no_temporary_file_behind(run, many, data_dir, tmp_path, capsys):
    """SIGTERM during an encode: the temporary file is removed, exit 143 and one line of its own (Ctrl-C takes
    the same path: fileio.Terminated is a KeyboardInterrupt). SIGKILL cannot be caught: its temporary file stays,
    and the next encode to the same target removes it (and only it: a live process's or another host's
    temporary is not touched)."""
    from aekit import fileio

    big = tmp_path / "big.npy"
    np.save(big, np.resize(np.load(many), (300_000, 8, 8)))
    out = tmp_path / "out" / "c.npy"
    argv = [sys.executable, "-m", "aekit", "encode", str(run), "--data", str(big), "--out", str(out),
            "--backend", "torch", "--batch-size", "32"]
    for sig, code, line in ((signal.SIGTERM, 143, "aekit: terminated"), (signal.SIGKILL, -signal.SIGKILL, None)):
        proc = subprocess.Popen(argv, env=env(data_dir), stderr=subprocess.PIPE, preexec_fn=default_signals)
        deadline = time.monotonic() + 120
        while not (out.parent.exists() and hidden(out.parent)) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1].decode()
        assert proc.returncode == code, err[-2000:]
        assert not out.exists()
        if line:
            assert screen(err)[-1] == line and hidden(out.parent) == [], err[-2000:]
    stale = hidden(out.parent)
    assert len(stale) == 1 and stale[0].startswith(f".c.npy.{fileio._host()}-{proc.pid}-")
    live = out.parent / f".c.npy.{fileio._host()}-{os.getpid()}-abcdefgh.npy"
    elsewhere = out.parent / f".c.npy.otherhost-{proc.pid}-abcdefgh.npy"
    live.write_bytes(b"")
    elsewhere.write_bytes(b"")
    code, _, err = cli(capsys, "encode", run, "--data", many, "--out", out, "--no-progress")
    assert code == 0, err
    assert hidden(out.parent) == sorted([live.name, elsewhere.name])
    assert np.load(out).shape == (50_000, 2)


def test_stale_temporaries_are_recognised_by_name_host_and_pid(tmp_path):
    """Only aekit's temporaries (.TARGET.HOST-PID-XXXXXXXX[.suffix]) of dead processes of this host are removed;
    a folder is scanned the first time a process writes into it and when it writes a target there again (not
    before each of many new files)."""
    from aekit.fileio import _host, atomic_write, remove_stale_temps

    dead = subprocess.Popen(["true"])
    dead.wait()
    host, pid = _host(), dead.pid
    stale = [f".c.npy.{host}-{pid}-abcdefgh.npy", f".c.npz.{host}-{pid}-a_c4efgh.codes.npy",
             f".c.npy.bak.{host}-{pid}-abcdefgh", f".export.{host}-{pid}-abcdefgh"]
    kept = [f".c.npy.{host}-{os.getpid()}-abcdefgh.npy", f".c.npy.other-{pid}-abcdefgh.npy",
            f".c.npy.{host}-{pid}-abcdefg.npy", f".c.npy.{host}-x{pid}-abcdefgh.npy", ".c.npy", ".c.npy.old", "c.npy",
            f"c.npy.{host}-{pid}-abcdefgh"]
    for name in stale[:3] + kept:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / stale[3]).mkdir()
    (tmp_path / stale[3] / "encoder.onnx").write_bytes(b"x")
    assert sorted(p.name for p in remove_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)

    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / f".a.png.{host}-{pid}-abcdefgh.png").write_bytes(b"x")
    atomic_write(folder / "a.png", b"png")  # the first write into the folder: scanned
    assert os.listdir(folder) == ["a.png"]
    (folder / f".b.png.{host}-{pid}-abcdefgh.png").write_bytes(b"x")
    atomic_write(folder / "c.png", b"png")  # another new file: not scanned again
    assert len(hidden(folder)) == 1
    atomic_write(folder / "a.png", b"png2")  # a target written again: scanned
    assert sorted(os.listdir(folder)) == ["a.png", "c.png"]
