"""The README stays true: the two commands, every command, option and rule it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from segmint.clean import CUSTOMER_RULES, TRANSACTION_RULES
from segmint.cli import app
from segmint.config import CleanConfig, LoadConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> dict:
    return typer.main.get_command(app).commands


def test_readme_starts_with_the_two_commands() -> None:
    first_section = README.split("\n## ", 2)[1]
    assert first_section.startswith("Quick start")
    block = re.search(r"```bash\n(.*?)```", first_section, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test", script, re.M) or "make test ||" in script
    makefile = (ROOT / "Makefile").read_text()
    assert "segmint demo" in makefile and "pytest" in makefile


def test_every_documented_command_exists() -> None:
    documented = set(re.findall(r"`segmint (\w+)", README))
    assert documented, "README names no command"
    assert documented <= set(_commands()), documented - set(_commands())


def test_every_documented_option_exists() -> None:
    options = {"--help"}
    root = typer.main.get_command(app)
    for cmd in [root, *root.commands.values()]:
        for param in cmd.params:
            options.update(getattr(param, "opts", []))
            options.update(getattr(param, "secondary_opts", []))
    # options of the benchmark scripts (`load_clean.py --rows N`) are not CLI options
    cli_lines = "\n".join(
        line for line in README.splitlines() if "benchmarks/" not in line and ".py --" not in line
    )
    documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", cli_lines))
    assert documented <= options, sorted(documented - options)


#: run options that have no default: explicit mappings, names, connections
_NO_DEFAULT = {"--config", "--map", "--mapping", "--date-format", "--name", "--action"}
_NO_DEFAULT |= {"--source", "--table", "--query", "--spark-master"}


def test_run_help_gives_every_option_its_default() -> None:
    """The README: "`segmint run --help` lists every option with its default" (the rule
    set, features, window, title, ... had none)."""
    run = _commands()["run"]
    missing = [
        p.opts[0]
        for p in run.params
        if p.param_type_name == "option"
        and not p.is_flag
        and p.default is None
        and p.opts[0] not in _NO_DEFAULT
        and "default" not in (p.help or "").lower()
    ]
    assert missing == []


def test_migrate_help_gives_the_real_default_order() -> None:
    """Segments are ordered by rfm_position; the help said by lifetime value."""
    order = next(p for p in _commands()["migrate"].params if "--order" in p.opts)
    assert "rfm_position" in order.help and "lifetime value" not in order.help


@pytest.mark.parametrize("rule", [r.name for r in (*TRANSACTION_RULES, *CUSTOMER_RULES)])
def test_every_cleaning_rule_is_documented(rule: str) -> None:
    assert f"`{rule}`" in README


@pytest.mark.parametrize("model", [LoadConfig, CleanConfig])
def test_every_config_field_has_a_description(model) -> None:
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"


def test_changelog_exists() -> None:
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")


def test_readme_python_example_runs(tmp_path, monkeypatch, online_retail) -> None:
    """The Python API block of the README, run on the real file."""
    import shutil

    block = README.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    shutil.copy(online_retail, tmp_path / "online_retail.csv.gz")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"print": lambda *a, **k: None}
    exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "customers.parquet").is_file()
    assert (tmp_path / "rejected.parquet").is_file()
    assert namespace["rfm"].rule_set.name == "classic-11"
    assert (tmp_path / "selection.csv").is_file()
    assert (tmp_path / "run" / "model.segmint").is_file()
    assert len(namespace["scored"]) == len(namespace["run"].customers)
    for name in ("report.html", "summary.json", "segments.csv", "charts/snake_plot.png"):
        assert (tmp_path / name).is_file(), name
    assert namespace["seg"].n_segments_ >= 3
    assert len(namespace["details"]) == len(namespace["customers"])


def test_submodules_are_not_shadowed() -> None:
    import importlib

    import segmint

    for name in ("clean", "features", "rfm", "schema", "io"):
        module = importlib.import_module(f"segmint.{name}")
        assert getattr(segmint, name, module) is module, name


def test_readme_arrow_tables_and_grid_search_examples_run() -> None:
    """The README's polars/DuckDB example (Python API) and its GridSearchCV example
    (Segmentation), run one after the other as a notebook would."""
    arrow = README.split("**Tables from other libraries.**", 1)[1]
    arrow = arrow.split("```python\n", 1)[1].split("```", 1)[0]
    grid = README.split("**In scikit-learn model selection and pipelines.**", 1)[1]
    grid = grid.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {"print": lambda *a, **k: None}
    exec(compile(arrow, "README.md", "exec"), namespace)
    assert namespace["prepared_uk"].cleaned.audit.kept_customers < (
        namespace["prepared"].cleaned.audit.kept_customers
    )
    assert namespace["seg"].n_segments_ == 4
    exec(compile(grid, "README.md", "exec"), namespace)
    assert namespace["search"].best_params_["n_clusters"] in (3, 4, 5, 6)
    assert list(namespace["distances"].columns[:3]) == ["segmenter0", "segmenter1", "segmenter2"]
