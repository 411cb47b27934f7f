"""Messages of the ``segmint`` command for common slips, run as a user runs it: a real
process, real files, one ``Error:`` line naming what is wrong and a hint, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from segmint.datasets import make_transactions

SEGMINT = [sys.executable, "-m", "segmint"]


@dataclass
class Result:
    code: int
    out: str
    err: str


def segmint(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> Result:
    proc = subprocess.run(
        [*SEGMINT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_error(result: Result, *needles: str) -> str:
    """Exit 2, the first line starts with ``Error:`` and holds every needle, a hint
    follows, no traceback; returns the whole stderr."""
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert lines and lines[0].startswith("Error: "), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert any(line.startswith("Hint: ") for line in lines[1:]), result.err
    assert "Traceback" not in result.err + result.out
    return result.err


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory) -> Path:
    lines, _ = make_transactions(n_customers=300, seed=1)
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    lines.to_csv(path, index=False)
    return path


# -- score without data ---------------------------------------------------------------
def test_score_without_data_says_no_data_was_given(tmp_path: Path) -> None:
    err = assert_error(segmint("score", "my-run", cwd=tmp_path), "no data given")
    assert "segmint score" in err and "--out" in err  # the usage of score, not of run
    assert "say where the assignments go" not in err
    # with the data but no output, it still asks where the assignments go
    (tmp_path / "sales.csv").write_text("a\n1\n")
    assert_error(segmint("score", "my-run", "sales.csv", cwd=tmp_path), "--out")


# -- a misspelt cleaning rule ---------------------------------------------------------
@pytest.mark.parametrize("command", ["clean", "inspect", "features", "clv", "run"])
def test_a_misspelt_rule_names_the_option_and_the_closest_rule(
    command: str, tmp_path: Path
) -> None:
    # a file that does not exist: the rule is checked before any data is read
    out = {"clean": "c.parquet", "features": "f.parquet", "clv": "v.parquet", "run": "r"}
    args = [command, "sales.csv", "--disable-rule", "cancelation"]
    if command in out:
        args += ["--out", out[command]]
    err = assert_error(
        segmint(*args, cwd=tmp_path),
        "--disable-rule",
        "'cancelation'",
        "did you mean 'cancellation'?",
    )
    assert "disabled_rules" not in err.splitlines()[0]
    assert "duplicate_customer" in err  # the hint lists the rules


def test_a_misspelt_rule_in_the_configuration_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "segmint.toml").write_text('[clean]\ndisabled_rules = ["retrun"]\n')
    assert_error(
        segmint("run", "sales.csv", "--config", "segmint.toml", cwd=tmp_path),
        "segmint.toml",
        "clean.disabled_rules",
        "did you mean 'return'?",
    )


def test_a_rule_of_the_other_kind_of_table_says_so(shop_csv: Path, tmp_path: Path) -> None:
    r = segmint("clean", shop_csv, "--out", tmp_path / "c.parquet", "--disable-rule",
                "duplicate_customer")  # fmt: skip
    assert_error(r, "'duplicate_customer'", "customer tables", "transaction lines")
    assert not (tmp_path / "c.parquet").exists()


def test_run_names_the_option_of_a_bad_value(tmp_path: Path) -> None:
    assert_error(segmint("run", "sales.csv", "--k-min", "0", cwd=tmp_path), "--k-min 0")


def test_a_negative_or_too_large_seed_names_the_option(shop_csv: Path, tmp_path: Path) -> None:
    """`segmint demo --seed -1` was an "Internal error: ValueError: expected non-negative
    integer ... This is a bug" (exit 70), and `segmint run --seed -1` failed once the
    features were computed, naming `random_state`, a Python parameter the user never
    wrote. Both are refused at once, naming --seed (exit 2)."""
    for seed in ("-1", str(2**32)):
        demo = segmint("demo", "--seed", seed, "--out", tmp_path / "demo")
        assert demo.code == 2, (demo.code, demo.err)
        assert "'--seed'" in demo.err and "Internal error" not in demo.err
        err = assert_error(segmint("run", shop_csv, "--seed", seed, "--out", tmp_path / "r"))
        assert f"--seed {seed}" in err and "random_state" not in err
    assert not (tmp_path / "demo").exists() and not (tmp_path / "r").exists()


def test_a_money_column_with_a_currency_sign_says_so(retail_pandas, tmp_path: Path) -> None:
    """Online Retail's prices exported in a Currency format (`£2.55`): every value is "not
    a number", and the hint was to "fix or remove those rows", which would remove the
    data. It names the sign instead; a column of words gets a hint to map another one,
    and a stray word among numbers keeps the hint about its rows."""
    lines = retail_pandas.head(500).copy()
    lines["UnitPrice"] = [f"£{v:.2f}" for v in lines["UnitPrice"]]
    lines.to_csv(tmp_path / "pounds.csv", index=False)
    err = assert_error(segmint("inspect", tmp_path / "pounds.csv"), "'UnitPrice'", "'£2.55'")
    assert "currency sign (£)" in err and "remove those rows" not in err
    lines["UnitPrice"] = "ask"
    lines.to_csv(tmp_path / "words.csv", index=False)
    err = assert_error(segmint("inspect", tmp_path / "words.csv"), "'UnitPrice'")
    assert "none of its values is a number" in err and "--map unit_price=" in err
    lines["UnitPrice"] = retail_pandas.head(500)["UnitPrice"].astype(str)
    lines.loc[7, "UnitPrice"] = "ask"
    lines.to_csv(tmp_path / "one.csv", index=False)
    err = assert_error(segmint("inspect", tmp_path / "one.csv"), "'ask' in data row 8")
    assert "fix or remove those rows" in err


def test_k_min_of_one_is_refused_before_the_data_are_read(tmp_path: Path) -> None:
    """`--k-min 1` passed the option check (at least 1), then, once the data were read
    and the features computed, failed as "k_range=(1, 10): need 2 <= smallest <=
    largest", a Python parameter no CLI user wrote. A search needs two segments or more
    (one segment beside a value tier is `--k 1`)."""
    err = assert_error(segmint("run", "sales.csv", "--k-min", "1", cwd=tmp_path), "--k-min 1")
    assert "greater than or equal to 2" in err and "k_range" not in err


@pytest.mark.parametrize(
    ("option", "needle"),
    [(["--k", "0"], "--k / segment.n_clusters = 0"), (["--k-min", "6", "--k-max", "3"], "--k-min")],
)
def test_a_check_of_several_options_names_them_not_options_segment(
    tmp_path: Path, option: list[str], needle: str
) -> None:
    """`--k 0` was "options: segment: n_clusters = 0 gives fewer than 2 segments", naming
    neither the option typed nor a place the user wrote anything."""
    err = assert_error(segmint("run", "sales.csv", *option, cwd=tmp_path), needle)
    assert "options:" not in err


@pytest.mark.parametrize(
    ("command", "option", "needle"),
    [
        ("inspect", ["--format", "xml"], "--format xml: "),
        ("clean", ["--kind", "people"], "--kind people: "),
        ("features", ["--engine", "oracle"], "--engine oracle: "),
        ("inspect", ["--outlier-quantile", "2"], "--outlier-quantile 2.0: "),
    ],
)
def test_other_commands_name_the_option_of_a_bad_value(
    command: str, option: list[str], needle: str, shop_csv: Path, tmp_path: Path
) -> None:
    """Reading and cleaning options of inspect, clean and features were reported by
    their configuration key ("options: format: ..."), not by the option typed."""
    out = ["--out", tmp_path / "o.parquet"] if command != "inspect" else []
    err = assert_error(segmint(command, shop_csv, *option, *out), needle)
    assert "options:" not in err


# -- features to segment on -----------------------------------------------------------
@pytest.mark.parametrize("option", ["--features", "--algorithm", "--categorical"])
def test_an_empty_list_option_is_refused_not_taken_as_the_default(
    option: str, tmp_path: Path
) -> None:
    """``--features ,`` quietly segmented on the default features."""
    # sales.csv does not exist: the option is refused before any data is read
    err = assert_error(
        segmint("run", "sales.csv", option, ",", "--out", "r", cwd=tmp_path),
        f"{option}: no names given",
    )
    assert "or leave" in err and not (tmp_path / "r").exists()


def test_segment_features_are_the_customer_features() -> None:
    from segmint.clv import CLV_COLUMNS
    from segmint.config import SEGMENT_FEATURES
    from segmint.features import LINE_FEATURES

    assert SEGMENT_FEATURES == (*LINE_FEATURES, *CLV_COLUMNS)


@pytest.mark.parametrize(
    ("features", "needles"),
    [
        ("recency,frequency", ["--features", "'recency'", "did you mean 'recency_days'?"]),
        ("frequency,country", ["--features", "'country'", "--categorical country"]),
        ("first_purchase", ["--features", "'first_purchase'", "date"]),
        ("clv_value", ["--features", "'clv_value'", "--no-clv"]),
    ],
)
def test_run_checks_the_features_before_reading_the_data(
    features: str, needles: list[str], tmp_path: Path
) -> None:
    # sales.csv does not exist: the features are refused before any data is read
    args = ["run", "sales.csv", "--out", "r", "--features", features]
    if features == "clv_value":
        args.append("--no-clv")
    err = assert_error(segmint(*args, cwd=tmp_path), *needles)
    assert "fit:" not in err and "sales.csv" not in err
    if "did you mean" in needles[-1]:
        assert "recency_days, frequency, monetary, tenure_days" in err  # the valid names


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("recency_days", ["'recency_days' is a number", "default features segment on it"]),
        ("category_kadin", ["'category_kadin' is a number, not a category"]),
    ],
)
def test_a_numeric_feature_given_as_categorical_is_refused_before_reading(
    name: str, needles: list[str], tmp_path: Path
) -> None:
    """``--categorical recency_days`` was refused only after the data had been read and
    the features computed, as "column(s) ['recency_days'] are both numeric and
    categorical", naming no option and giving no hint."""
    # sales.csv does not exist: the option is refused before any data is read
    err = assert_error(
        segmint("run", "sales.csv", "--out", "r", "--categorical", name, cwd=tmp_path),
        "--categorical",
        *needles,
    )
    assert "sales.csv" not in err and "--categorical takes text columns: country" in err


def test_default_features_of_the_configuration_are_the_segmenters() -> None:
    from segmint.config import _DEFAULT_FEATURES
    from segmint.segment.transforms import DEFAULT_FEATURES

    assert _DEFAULT_FEATURES == DEFAULT_FEATURES


def test_a_misspelt_feature_in_the_configuration_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "segmint.toml").write_text('[segment]\nfeatures = ["monetery"]\n')
    assert_error(
        segmint("run", "sales.csv", "--config", "segmint.toml", cwd=tmp_path),
        "segmint.toml",
        "segment.features",
        "did you mean 'monetary'?",
    )


def test_a_share_the_data_do_not_have_names_the_option(shop_csv: Path, tmp_path: Path) -> None:
    r = segmint("run", shop_csv, "--out", tmp_path / "r", "--no-clv", "--features",
                "frequency,channel_share_web")  # fmt: skip
    err = assert_error(r, "--features", "'channel_share_web'", "not in the customer table")
    assert "fit:" not in err and "recency_days" in err  # the hint: the data's features
    assert not (tmp_path / "r").exists()


# -- segmint init ---------------------------------------------------------------------
def test_every_commented_option_of_init_is_valid_once_uncommented(tmp_path: Path) -> None:
    import re
    import tomllib

    from segmint.config import RunConfig, load_run_config

    path = tmp_path / "segmint.toml"
    r = segmint("init", path)
    assert r.code == 0, r.err
    text = path.read_text()
    lines = text.splitlines()
    commented = [i for i, line in enumerate(lines) if re.match(r"# [a-z_]+ = ", line)]
    # every option without a default is there, commented out, with an example value
    no_default = [
        key
        for section in RunConfig.model_fields
        for key, value in getattr(RunConfig(), section).model_dump().items()
        if value is None or value == {}
    ]
    assert len(commented) == len(no_default) > 20
    for i in commented:
        edited = [*lines[:i], lines[i].removeprefix("# "), *lines[i + 1 :]]
        one = tmp_path / f"line{i}.toml"
        one.write_text("\n".join(edited) + "\n")
        key, _, value = lines[i].removeprefix("# ").partition(" = ")
        assert value.strip(), lines[i]
        section = next(line.strip("[]") for line in reversed(lines[:i]) if line.startswith("["))
        parsed = tomllib.loads(one.read_text())  # valid TOML
        assert key in parsed[section], lines[i]
        cfg = load_run_config(one)  # and a valid value
        assert getattr(getattr(cfg, section), key) not in (None, {}), lines[i]


# -- renaming one of two same-name segments -------------------------------------------
def test_renaming_one_twin_drops_the_qualifier_of_the_other(shop_csv: Path, tmp_path: Path) -> None:
    import pandas as pd

    def names(out: Path, *extra: str) -> dict[int, str]:
        r = segmint("--quiet", "run", shop_csv, "--out", out, "--algorithm", "kmeans",
                    "--k", "9", "--no-clv", *extra)  # fmt: skip
        assert r.code == 0, r.err
        seg = pd.read_csv(out / "segments.csv")
        return dict(zip(seg["segment_id"], seg["name"], strict=True))

    before = names(tmp_path / "auto")
    assert before[0] == "Dormant (newer)" and before[1] == "Dormant (long-standing)"
    after = names(tmp_path / "renamed", "--name", "0=Recently lapsed")
    assert after[0] == "Recently lapsed" and after[1] == "Dormant"
    assert {k: v for k, v in after.items() if k > 1} == {k: v for k, v in before.items() if k > 1}
    # the user's name is one the other twin would become: the other keeps its qualifier
    clash = names(tmp_path / "clash", "--name", "0=Dormant")
    assert clash[0] == "Dormant" and clash[1] == "Dormant (long-standing)"


# -- counts and their nouns -----------------------------------------------------------
def test_count_puts_the_noun_in_the_right_number() -> None:
    from segmint._text import count

    assert count(1, "day") == "1 day" and count(0, "day") == "0 days"
    assert count(2_000, "customer") == "2,000 customers"
    assert count(1.2, "day", fmt=",.0f") == "1 day" and count(90.0, "day", fmt="g") == "90 days"


def test_scoring_one_day_of_history_says_1_day(shop_csv: Path, tmp_path: Path) -> None:
    import pandas as pd

    run = tmp_path / "run"
    r = segmint("--quiet", "run", shop_csv, "--out", run, "--algorithm", "kmeans", "--k", "4",
                "--no-clv")  # fmt: skip
    assert r.code == 0, r.err
    lines = pd.read_csv(shop_csv)
    days = pd.to_datetime(lines["InvoiceDate"]).dt.normalize()
    last = days.max()
    lines[days >= last - pd.Timedelta(days=1)].to_csv(tmp_path / "two_days.csv", index=False)
    r = segmint("score", run / "model.segmint", tmp_path / "two_days.csv", "--out",
                tmp_path / "scored.parquet")  # fmt: skip
    assert r.code == 0, r.err
    text = " ".join((r.out + r.err).split())
    assert "covers 1 day of history" in text, text
    assert "1 days" not in text and "1 customers" not in text
