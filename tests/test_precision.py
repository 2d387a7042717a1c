"""``--precision auto`` (issue 15, "precision that helps, never hurts"): bf16-mixed only where the hardware computes
in bf16, fp32 elsewhere; the run records what was asked and what was used; asking for bf16 where it is emulated
warns with the cost measured here.

The resolution is a pure function of the machine's facts, so it is tested on the /proc/cpuinfo text and CUDA
facts of machines we do not have; the runs below are real trainings on this machine (an AVX2 EPYC without
avx512_bf16: the warning test skips itself on a CPU that has it)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aekit.cli import main
from aekit.train import TrainConfig
from aekit.train.hardware import (NATIVE_BF16_CPU_FLAGS, Machine, precision_warning, read_cpuinfo,
                                  resolve_precision, this_machine)

BASE = ["--model", "ae", "--dataset", "digits", "--latent-dim", "2", "--hidden-dims", "16", "--epochs", "1",
        "--no-progress"]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def cpuinfo(model: str, flags: str) -> str:
    """/proc/cpuinfo as Linux writes it: one block per processor (the second one must not be read)."""
    block = "processor\t: {i}\nvendor_id\t: X\nmodel name\t: {model}\nflags\t\t: {flags}\nbogomips\t: 4000\n"
    return block.format(i=0, model=model, flags=flags) + "\n" + block.format(i=1, model="other", flags="amx_bf16")


EPYC_AVX2 = cpuinfo("AMD EPYC 7B12", "fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2")  # this machine's kind
ICE_LAKE = cpuinfo("Intel(R) Xeon(R) Platinum 8375C", "avx avx2 fma avx512f avx512bw avx512_vnni avx512_vbmi")
SAPPHIRE_RAPIDS = cpuinfo("Intel(R) Xeon(R) Platinum 8480+", "avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8")
ZEN4 = cpuinfo("AMD EPYC 9654 96-Core Processor", "avx2 avx512f avx512_bf16 avx512_vnni")
GRAVITON3 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"


def cpu(text: str) -> Machine:
    model, flags = read_cpuinfo(text)
    return Machine("cpu", model, flags)


def test_cpuinfo_is_read_from_the_first_processor():
    assert read_cpuinfo(SAPPHIRE_RAPIDS) == ("Intel(R) Xeon(R) Platinum 8480+", frozenset(
        "avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8".split()))
    assert "amx_bf16" not in read_cpuinfo(EPYC_AVX2)[1]  # the second processor's flags are not mixed in
    assert read_cpuinfo("") == ("", frozenset())  # no /proc/cpuinfo (macOS): no flags, so fp32
    assert "bf16" in read_cpuinfo(GRAVITON3)[1]  # Arm's "Features" line is read as the flags


@pytest.mark.parametrize("text, expected", [
    (EPYC_AVX2, "32-true"), (ICE_LAKE, "32-true"),  # AVX-512 without its bf16 extension still emulates bf16
    (SAPPHIRE_RAPIDS, "bf16-mixed"), (ZEN4, "bf16-mixed"),
    (GRAVITON3, "32-true"), ("", "32-true"),  # not measured on Arm: left at fp32
])
def test_auto_on_cpus(text, expected):
    assert resolve_precision("auto", cpu(text)) == expected


@pytest.mark.parametrize("capability, bf16, expected", [
    ((9, 0), True, "bf16-mixed"), ((8, 0), True, "bf16-mixed"),  # H100, A100
    ((7, 5), False, "16-mixed"), ((7, 0), False, "16-mixed"),  # T4, V100: fp16 tensor cores
    ((6, 1), False, "32-true"),  # GTX 1080: fp16 at a fraction of the fp32 rate
])
def test_auto_on_gpus(capability, bf16, expected):
    gpu = Machine("cuda", *read_cpuinfo(EPYC_AVX2), cuda_name="GPU", cuda_capability=capability, cuda_bf16=bf16)
    assert resolve_precision("auto", gpu) == expected


def test_auto_on_mps_and_asked_values_as_lightning_spells_them():
    assert resolve_precision("auto", Machine("mps")) == "32-true"
    here, gpu = cpu(EPYC_AVX2), Machine("cuda", cuda_capability=(7, 5))
    assert [resolve_precision(p, here) for p in ("32", "64", "bf16-mixed")] == ["32-true", "64-true", "bf16-mixed"]
    assert resolve_precision("16-mixed", here) == "bf16-mixed"  # Lightning has no fp16 AMP on a CPU
    assert resolve_precision("16-mixed", gpu) == "16-mixed"


FLAGS = st.sets(st.sampled_from(["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_fp16",
                                 "amx_tile", "amx_int8", "sse4_2", *NATIVE_BF16_CPU_FLAGS]))


@settings(max_examples=200, deadline=None)
@given(FLAGS, st.sampled_from(["auto", "32", "bf16-mixed", "16-mixed", "64"]))
def test_bf16_only_where_native_and_a_warning_exactly_where_it_is_emulated(flags, asked):
    machine = Machine("cpu", "cpu", frozenset(flags))
    native = bool(flags & set(NATIVE_BF16_CPU_FLAGS))
    used = resolve_precision(asked, machine)
    if asked == "auto":
        assert used == ("bf16-mixed" if native else "32-true")
    warning = precision_warning(asked, machine)
    assert (warning is not None) == (used == "bf16-mixed" and not native)
    if warning:
        assert "\n" not in warning and warning.startswith("aekit: warning: --precision ")
        assert "about 10x slower than in fp32" in warning and "--precision auto uses 32-true" in warning


def test_bf16_on_a_gpu_without_it_warns_and_names_the_capability():
    t4 = Machine("cuda", cuda_name="Tesla T4", cuda_capability=(7, 5), cuda_bf16=False)
    assert "Tesla T4, compute capability 7.5" in precision_warning("bf16-mixed", t4)
    assert "auto uses 16-mixed" in precision_warning("bf16-mixed", t4)
    assert precision_warning("bf16-mixed", Machine("cuda", cuda_capability=(8, 0), cuda_bf16=True)) is None


def test_auto_is_the_default_and_the_run_records_what_it_used(tmp_path, capsys):
    assert TrainConfig().precision == "auto"
    code, _, err = cli(capsys, "train", *BASE, "--out", tmp_path / "r")
    assert code == 0, err
    assert "--precision" not in err  # no precision warning (a run this small may say it collapsed: another matter)
    train = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert train["precision"] == "auto"
    assert train["precision_used"] == resolve_precision("auto", this_machine("auto"))
    if not this_machine("auto").native_bf16:  # this project's machine
        assert train["precision_used"] == "32-true"


def test_bf16_mixed_where_it_is_emulated_warns_once_with_the_measured_cost(tmp_path, capsys):
    if this_machine("cpu").native_bf16:
        pytest.skip("this CPU computes bf16 natively (avx512_bf16 or amx_bf16 in /proc/cpuinfo)")
    code, _, err = cli(capsys, "train", *BASE, "--precision", "bf16-mixed", "--accelerator", "cpu", "--out", tmp_path / "r")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "warning" in line and "collapsed" not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("aekit: warning: --precision bf16-mixed is emulated on this CPU (no avx512_bf16 or "
                               "amx_bf16 in /proc/cpuinfo)")
    assert "conv-ae trained about 10x slower than in fp32" in lines[0]
    train = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert (train["precision"], train["precision_used"]) == ("bf16-mixed", "bf16-mixed")


def test_a_run_from_before_auto_resumes_with_its_own_precision(tmp_path, capsys):
    """Runs written before --precision auto have precision "32" and no precision_used: resuming one keeps fp32,
    and its precision is not reported as a changed option."""
    out = tmp_path / "old"
    assert cli(capsys, "train", *BASE, "--patience", "0", "--out", out)[0] == 0
    record = json.loads((out / "config.json").read_text())
    record["train"]["precision"] = "32"
    del record["train"]["precision_used"]
    (out / "config.json").write_text(json.dumps(record))
    code, stdout, err = cli(capsys, "train", "--resume", "--out", out, "--epochs", "2", "--no-progress")
    assert code == 0, err
    assert "resuming with changed training options: epochs 1 -> 2\n" in stdout  # and no other (precision)
    train = json.loads((out / "config.json").read_text())["train"]
    assert (train["precision"], train["precision_used"], train["epochs"]) == ("32", "32-true", 2)
