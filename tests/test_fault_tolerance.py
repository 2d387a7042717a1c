"""Kill a training anywhere and lose at most one checkpoint interval: real processes, real signals, real files.

- SIGTERM and Ctrl-C (SIGINT) mid-epoch stop after the step with a checkpoint and exit 143 / 130; the resumed
  run ends bit-identical to an unbroken one (model.safetensors bytes; metrics.csv but for its wall-time column).
- Ten SIGKILLs at seeded random moments, some while a checkpoint is being written: the same.
- A damaged last.ckpt falls back to last.prev.ckpt with one warning line; a full disk is a one-line error that
  leaves every file whole.

Sessions are forked from a fork server that imported torch and Lightning once (benchmarks/fault_injection.py,
whose harness this file runs): eleven ``python -m aekit`` starts would take a minute here by themselves.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aekit.cli import main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# A VAE: its training draws noise every step, so a resumed run only matches if the RNG states came back too.
# 12 batches an epoch; a mid-epoch checkpoint every 5 batches.
TRAIN = ["--threads", "1", "train", "--model", "vae", "--dataset", "digits", "--latent-dim", "2", "--hidden-dims", "128,128",
         "--epochs", "10", "--checkpoint-every", "5", "--seed", "7", "--no-progress"]


@pytest.fixture(scope="module")
def harness(data_dir):
    sys.path.insert(0, str(BENCHMARKS))
    import fault_injection

    fault_injection.warm_forkserver()  # after data_dir: the server's environment has AEKIT_DATA
    return fault_injection


@pytest.fixture(scope="module")
def unbroken(harness, tmp_path_factory):
    """The reference: the same training, never interrupted. (path, seconds, start-up seconds)"""
    root = tmp_path_factory.mktemp("unbroken")
    code, seconds, startup = harness.run_to_end([*TRAIN, "--out", str(root / "run")], root / "log", "forkserver", root / "run")
    assert code == 0, (root / "log").read_text()
    return root / "run", seconds, startup


def assert_same_run(harness, unbroken_run: Path, run: Path) -> None:
    cmp = harness.compare(unbroken_run, run)
    assert cmp["weights_identical"] and cmp["metrics_identical_but_wall_time"], cmp
    assert cmp["epochs_lost"] == 0 and cmp["epochs_completed"] == [10, 10] and cmp["temporaries_left"] == [], cmp
    assert json.loads((run / "config.json").read_text())["status"] == "finished"


def wait_for(predicate, session, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert session.poll() is None, f"the session ended (status {session.poll()}) before the moment to signal it"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


def test_sigterm_and_ctrl_c_stop_after_the_step_and_the_resumed_run_is_bit_identical(harness, unbroken, tmp_path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"

    # SIGTERM (a pre-empted job) the moment the first mid-epoch checkpoint exists: in epoch 0, batch 5 or later
    s = harness.Session([*TRAIN, "--out", str(run)], tmp_path / "1.log", "forkserver")
    wait_for(last.exists, s)
    s.kill(signal.SIGTERM)
    assert s.wait(120) == 143
    said = (tmp_path / "1.log").read_text().strip().splitlines()[-1]
    assert said.startswith("aekit: stopped by SIGTERM in epoch 0 after batch ") and "Traceback" not in said, said
    assert said.endswith(f"checkpoint saved (checkpoints/last.ckpt); continue with `aekit train --resume --out {run}`")
    batch = int(said.split("after batch ")[1].split()[0])
    assert 5 <= batch < 12  # mid-epoch, and the checkpoint holds exactly that point
    ck = torch.load(last, map_location="cpu", weights_only=True)
    assert ck["callbacks"]["ResumePoints"]["saved_at"] == [0, batch]
    assert ck["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batch": batch, "group": 1}]

    # resumed; Ctrl-C once it has written a checkpoint of its own
    first = last.stat().st_ino
    s = harness.Session(["--threads", "1", "train", "--resume", "--out", str(run), "--no-progress"], tmp_path / "2.log", "forkserver")
    wait_for(lambda: last.stat().st_ino != first, s)  # every write is a rename: a new inode
    s.kill(signal.SIGINT)
    assert s.wait(120) == 130
    said = (tmp_path / "2.log").read_text().strip().splitlines()[-1]
    assert said.startswith("aekit: stopped by SIGINT ") and "checkpoint saved" in said, said

    code, _, _ = harness.run_to_end(["--threads", "1", "train", "--resume", "--out", str(run), "--no-progress"],
                                    tmp_path / "3.log", "forkserver")
    assert code == 0, (tmp_path / "3.log").read_text()
    assert_same_run(harness, unbroken[0], run)


def test_a_run_stopped_between_batch_groups_resumes_bit_identical(harness, unbroken, tmp_path):
    """Without --checkpoint-every, Lightning steps over groups of 8 batches (train/loader.Grouped): a stop falls
    between groups, the message and the checkpoint count batches, and the resumed run is bit-identical to the
    unbroken one, whose --checkpoint-every session stepped batch by batch (grouping changes no number)."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    i = TRAIN.index("--checkpoint-every")
    grouped = [*TRAIN[:i], *TRAIN[i + 2:], "--checkpoint-minutes", "0.0001"]  # mid-epoch saves between groups
    s = harness.Session([*grouped, "--out", str(run)], tmp_path / "1.log", "forkserver")
    wait_for(last.exists, s)
    s.kill(signal.SIGTERM)
    assert s.wait(120) == 143
    said = (tmp_path / "1.log").read_text().strip().splitlines()[-1]
    assert " after batch 8 of 12;" in said, said  # 12 batches an epoch: groups [0, 8) and [8, 12)
    epoch = int(said.split(" in epoch ")[1].split()[0])
    ck = torch.load(last, map_location="cpu", weights_only=True)
    assert ck["callbacks"]["ResumePoints"]["saved_at"] == [epoch, 8]
    assert ck["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": epoch, "batch": 8, "group": 8}]

    code, _, _ = harness.run_to_end(["--threads", "1", "train", "--resume", "--out", str(run), "--no-progress"],
                                    tmp_path / "2.log", "forkserver")
    assert code == 0, (tmp_path / "2.log").read_text()
    assert_same_run(harness, unbroken[0], run)


def test_ten_sigkills_at_random_moments_some_during_checkpoint_writes_lose_nothing(harness, unbroken, tmp_path):
    reference, seconds, startup = unbroken
    report = harness.inject(tmp_path / "run", TRAIN, kills=10, seed=2026, launcher="forkserver", startup=startup,
                            interval=(seconds - startup) * 5 / 120, epoch_batches=12, total_batches=120, write_kills=4,
                            startup_kills=2, logs=tmp_path / "logs")
    assert len(report.kills) == 10 and report.final_code == 0
    resumed_from = [k["next_resumes_from"] for k in report.kills]
    assert sum(1 for at in resumed_from if at and 0 < at[1] < 12) >= 1, resumed_from  # some resumes mid-epoch
    assert max(at[0] for at in resumed_from if at) >= 5, resumed_from  # and the kills reach far into the run
    assert report.resumes_failed == 0 and report.fallbacks == 0, report
    # a kill that found its own temporary checkpoint beside the last good one landed mid-write (fsync makes the
    # window milliseconds long; the harness polls for it)
    assert report.during_writes >= 1, report.kills
    assert_same_run(harness, reference, tmp_path / "run")


# ------------------------------------------------------------------------------------------ in one process
SMALL = ["train", "--model", "ae", "--dataset", "digits", "--latent-dim", "2", "--hidden-dims", "16", "--no-progress"]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one_with_one_warning(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, *SMALL, "--epochs", "2", "--out", run)[0] == 0
    ckpts = run / "checkpoints"
    last, prev = ckpts / "last.ckpt", ckpts / "last.prev.ckpt"
    assert torch.load(prev, weights_only=True)["epoch"] == 0 and torch.load(last, weights_only=True)["epoch"] == 1
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # what a kill mid-write left before writes were atomic
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--epochs", "3", "--no-progress")
    assert code == 0, err
    # (a run this small may also say its reconstructions collapsed: another warning, about the model)
    warnings = [line for line in err.splitlines() if "warning" in line and "collapsed" not in line]
    assert warnings == [f"aekit: warning: {last} is damaged; resuming from the previous checkpoint {prev}"]
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"]  # epoch 1 redone from epoch 0's end, none twice
    assert json.loads((run / "config.json").read_text())["result"]["epochs_completed"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the fit's handlers are gone
    # the damaged file was replaced before training went on: it never became the fallback of a later resume
    assert [torch.load(p, weights_only=True)["epoch"] for p in (prev, last)] == [1, 2]


@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {done.stderr.strip() or done.returncode}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_leaves_every_file_whole(tmpfs, capsys):
    run = tmpfs / "run"
    assert cli(capsys, *SMALL, "--epochs", "1", "--out", run)[0] == 0
    before = {p: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    filler = tmpfs / "filler"
    with open(filler, "wb") as fh:  # leave a few kB: config.json fits, a checkpoint does not
        fh.write(b"\0" * (shutil.disk_usage(tmpfs).free - 8192))
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--epochs", "3", "--no-progress")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no space left" in lines[0] and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before  # the good checkpoints, unchanged
    hidden = [p.name for p in (*run.iterdir(), *(run / "checkpoints").iterdir()) if p.name.startswith(".")]
    assert hidden == []  # no half-written file, under any name
    json.loads((run / "config.json").read_text())
    assert (run / "metrics.csv").read_text().startswith("epoch,")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    filler.unlink()  # space again: the run resumes from its last good checkpoint and finishes
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--epochs", "3", "--no-progress")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["result"]["epochs_completed"] == 3
