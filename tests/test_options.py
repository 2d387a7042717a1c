"""The one typed validation path (aekit.options): every registered family's config fields and TrainConfig,
fed generated values (Hypothesis), either build a config that round-trips through JSON or raise one
one-line ConfigError naming the parameter — never another exception. The CLI shows the flag, exits 2 and
writes nothing."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aekit.cli import main
from aekit.errors import ConfigError
from aekit.options import coerce, fields
from aekit.registry import MODELS, get, list_models
from aekit.train.config import TrainConfig

list_models()  # fill the registry
CONFIGS = sorted({e.cls.Config for e in MODELS.values()}, key=lambda c: c.__name__)

values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-5, 600), max_size=5), st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check(cls, name, value):
    try:
        cfg = cls.from_dict({name: value})
    except ConfigError as exc:
        text = str(exc)
        assert "\n" not in text and text, text
        assert exc.param == name or name in text, (name, text)
        return None
    # accepted: the value has the declared type and the config survives JSON
    again = cls.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    return cfg


@pytest.mark.parametrize("cls", [*CONFIGS, TrainConfig], ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_for_any_field_is_accepted_or_a_one_line_config_error(cls, data):
    name = data.draw(st.sampled_from(field_names(cls)))
    check(cls, name, data.draw(values))


@pytest.mark.parametrize("cls", [*CONFIGS, TrainConfig], ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_flag_text_parses_like_the_typed_value(cls, data):
    """What a user types after a flag goes through the same coerce as YAML/JSON values."""
    known = fields(cls)
    name = data.draw(st.sampled_from(sorted(known)))
    f, hint = known[name]
    text = data.draw(st.one_of(st.text(max_size=8), st.integers(-99, 999).map(str), st.floats(-1e3, 1e3).map(str),
                               st.sampled_from(["true", "no", "8,16", "1x28x28", ""])))
    try:
        value = coerce(name, hint, text, f.metadata.get("choices"))
    except ConfigError as exc:
        assert exc.param == name and "\n" not in str(exc)
        return
    check(cls, name, value)


def test_unknown_keys_are_named_with_the_known_ones():
    with pytest.raises(ConfigError, match="hidden_dimz.*known:.*hidden_dims"):
        get("ae").cls.Config.from_dict({"hidden_dimz": [3]})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lr=st.one_of(st.floats(max_value=0.0), st.sampled_from(["nan", "-inf", "x", "0"])))
def test_cli_bad_training_value_is_one_line_exit_2_and_writes_nothing(lr, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("bad") / "run"
    try:
        code = main(["train", "--model", "ae", "--dataset", "digits", "--epochs", "1", "--lr", str(lr), "--out", str(out)])
    except SystemExit as exc:  # argparse: not a number
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "--lr" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_library_error_is_shown_with_its_flag(tmp_path, capsys):
    code = main(["train", "--model", "ae", "--dataset", "digits", "--epochs", "1", "--sparsity", "-1",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("aekit: error: --sparsity must be >= 0") and not (tmp_path / "r").exists()


def test_a_new_config_field_is_a_flag_and_a_yaml_key(tmp_path):
    """Flags come from the dataclasses: every field of every family appears in `aekit train --help`."""
    from aekit.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction").choices["train"]
    flags = {o for a in sub._actions for o in a.option_strings}
    for cls in [*CONFIGS, TrainConfig]:
        for name in field_names(cls):
            if name != "input_shape":
                assert "--" + name.replace("_", "-") in flags, name
