"""RFM scores and named segments: a hand-made table, every shipped segment, the rf-grid
partition, heavy ties, fixed thresholds, user rule sets."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from segmint.config import RfmConfig, load_thresholds_file
from segmint.errors import ConfigError
from segmint.rfm import RULE_SETS, load_rule_set, quintile_thresholds, score

# 20 customers: recency blocks (R5..R1) of 4, frequency blocks of 4; monetary follows F.
R_DAYS = {
    5: [1, 2, 3, 4],
    4: [10, 11, 12, 13],
    3: [30, 31, 32, 33],
    2: [90, 91, 92, 93],
    1: [200, 201, 202, 203],
}
F_VALUE = {1: 1, 2: 2, 3: 3, 4: 5, 5: 10}
M_VALUE = {1: 50.0, 2: 100.0, 3: 200.0, 4: 400.0, 5: 1000.0}
# (R, F) per customer within each R block, and the rf-grid name a person reads off the grid
HAND = {
    5: [(5, "Champions"), (4, "Champions"), (1, "New Customers"), (2, "Potential Loyalists")],
    4: [
        (1, "Promising"),
        (2, "Potential Loyalists"),
        (4, "Loyal Customers"),
        (3, "Potential Loyalists"),
    ],
    3: [
        (1, "About To Sleep"),
        (3, "Need Attention"),
        (5, "Loyal Customers"),
        (2, "About To Sleep"),
    ],
    2: [(3, "At Risk"), (5, "Can't Lose Them"), (1, "Hibernating"), (4, "At Risk")],
    1: [(2, "Hibernating"), (4, "At Risk"), (5, "Can't Lose Them"), (3, "At Risk")],
}


def _hand_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, expected = [], []
    for r, members in HAND.items():
        for days, (f, name) in zip(R_DAYS[r], members, strict=True):
            cid = f"c{len(rows) + 1:02d}"
            rows.append(
                {
                    "customer_id": cid,
                    "recency_days": days,
                    "frequency": F_VALUE[f],
                    "monetary": M_VALUE[f],
                }
            )
            expected.append(
                {
                    "customer_id": cid,
                    "r_score": r,
                    "f_score": f,
                    "m_score": f,
                    "rfm_score": f"{r}{f}{f}",
                    "rfm_segment": name,
                    "rfm_rule_set": "rf-grid v1",
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(expected)


def test_hand_made_table_scores_and_rf_grid_names() -> None:
    features, expected = _hand_table()
    result = score(features)
    pd.testing.assert_frame_equal(result.table, expected, check_dtype=False)
    assert result.rule_set.label == "rf-grid v1"
    assert result.cut_points["recency_days"]["thresholds"] == [93, 33, 13, 4]
    assert result.cut_points["frequency"]["thresholds"] == [2, 3, 5, 10]
    assert result.cut_points["monetary"]["thresholds"] == [100, 200, 400, 1000]
    seg = result.segments().set_index("segment")
    assert seg["customers"].sum() == 20
    assert (seg["customers"] > 0).all()  # every rf-grid segment appears in the hand table


def test_scores_do_not_depend_on_row_order() -> None:
    features, _ = _hand_table()
    a = score(features).table.set_index("customer_id").sort_index()
    shuffled = features.sample(frac=1, random_state=3)
    b = score(shuffled).table.set_index("customer_id").sort_index()
    pd.testing.assert_frame_equal(a, b)


# cells chosen by hand from the published tables, for every segment of every rule set
SHIPPED = {
    "rf-grid": {
        "Hibernating": "111",
        "At Risk": "231",
        "Can't Lose Them": "155",
        "About To Sleep": "321",
        "Need Attention": "333",
        "Loyal Customers": "345",
        "Promising": "412",
        "New Customers": "515",
        "Potential Loyalists": "423",
        "Champions": "541",
    },
    "classic-11": {
        "Champions": "555",
        "Can't Lose Them": "155",
        "Loyal Customers": "344",
        "Potential Loyalist": "513",
        "New Customers": "511",
        "Promising": "311",
        "Need Attention": "322",
        "About To Sleep": "312",
        "At Risk": "255",
        "Lost": "111",
        "Hibernating": "211",
        "Others": "542",
    },
    "rfm-r-0.3": {
        "Champions": "555",
        "Potential Loyalist": "533",
        "Loyal Customers": "222",
        "Promising": "313",
        "New Customers": "511",
        "Can't Lose Them": "134",
        "At Risk": "125",
        "Need Attention": "133",
        "About To Sleep": "211",
        "Lost": "111",
        "Others": "215",
    },
}


@pytest.mark.parametrize("rule_set", RULE_SETS)
def test_every_segment_of_every_shipped_rule_set(rule_set: str) -> None:
    rules = load_rule_set(rule_set)
    cells = SHIPPED[rule_set]
    assert set(cells) == set(rules.names), "the test must cover every segment"
    r, f, m = (np.array([int(c[i]) for c in cells.values()]) for i in range(3))
    assert list(rules.assign(r, f, m)) == list(cells)
    assert all(s.description and s.action for s in rules.segments)


@pytest.mark.parametrize("rule_set", RULE_SETS)
def test_the_scores_say_which_rule_set_named_them(rule_set: str) -> None:
    """The same names mean other cells in other rule sets (Champions is R5 F5 M5 in
    rfm-r-0.3, R4-5 F4-5 in rf-grid): every row names its rule set and version, in the
    column right after rfm_segment, so any table written from it carries them."""
    features, _ = _hand_table()
    table = score(features, rule_set=rule_set).table
    assert list(table.columns)[-2:] == ["rfm_segment", "rfm_rule_set"]
    assert set(table["rfm_rule_set"]) == {f"{rule_set} v1"}


def test_rf_grid_is_a_complete_non_overlapping_partition_of_the_25_cells() -> None:
    rules = load_rule_set("rf-grid")
    for s in rules.segments:
        assert s.m == (1, 5), "rf-grid ignores monetary"
    for r in range(1, 6):
        for f in range(1, 6):
            owners = [
                s.name for s in rules.segments if s.r[0] <= r <= s.r[1] and s.f[0] <= f <= s.f[1]
            ]
            assert len(owners) == 1, (r, f, owners)
    assert rules.overlaps == [] and rules.gaps == []


def test_classic_11_overlaps_are_resolved_most_specific_first() -> None:
    rules = load_rule_set("classic-11")
    size = {
        s.name: np.prod([s.r[1] - s.r[0] + 1, s.f[1] - s.f[0] + 1, s.m[1] - s.m[0] + 1])
        for s in rules.segments
    }
    assert rules.overlaps, "the published table overlaps"
    for o in rules.overlaps:
        assert all(size[o["winner"]] <= size[other] for other in o["segments"]), o
    names = rules.assign(np.array([5, 1, 1, 2]), np.array([5, 5, 1, 1]), np.array([5, 5, 1, 1]))
    assert list(names) == ["Champions", "Can't Lose Them", "Lost", "Hibernating"]
    assert len(rules.gaps) == 36 and "542" in rules.gaps
    assert rules.report()["uncovered_cells"] == 36


def test_heavily_tied_frequency_gives_documented_stable_scores() -> None:
    freq = np.array([1] * 60 + [2] * 15 + [3] * 10 + [5] * 10 + [10] * 5)
    rng = np.random.default_rng(0)
    features = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(100)],
            "recency_days": rng.integers(1, 365, 100),
            "frequency": freq,
            "monetary": rng.gamma(2, 100, 100),
        }
    )
    result = score(features)
    # thresholds: smallest value with >= 20/40/60/80 % of customers strictly below
    assert result.cut_points["frequency"]["thresholds"] == [2, 2, 2, 5]
    f = result.table.set_index("customer_id")["f_score"]
    by_value = pd.Series(f.to_numpy(), index=freq).groupby(level=0).unique()
    assert {k: list(v) for k, v in by_value.items()} == {1: [1], 2: [4], 3: [4], 5: [5], 10: [5]}
    again = score(features.iloc[::-1]).table.set_index("customer_id")["f_score"]
    assert (again.loc[f.index] == f).all()


def test_quintile_thresholds_on_all_equal_values() -> None:
    assert quintile_thresholds(np.array([3.0] * 10)) == [None] * 4
    assert score(
        pd.DataFrame(
            {
                "customer_id": list("ab"),
                "recency_days": [5, 5],
                "frequency": [1, 1],
                "monetary": [9.0, 9.0],
            }
        )
    ).table["rfm_score"].tolist() == ["111", "111"]


def test_fixed_thresholds_reproduce_a_previous_period() -> None:
    features, expected = _hand_table()
    first = score(features)
    fixed = {c: v["thresholds"] for c, v in first.cut_points.items()}
    again = score(features, method="fixed", thresholds=fixed)
    pd.testing.assert_frame_equal(again.table, first.table)
    assert again.method == "fixed"
    later = features.assign(recency_days=features["recency_days"] + 100)
    moved = score(later, method="fixed", thresholds=fixed).table
    assert (moved["r_score"] <= first.table["r_score"]).all()
    assert (moved["r_score"] == 1).mean() > 0.5


def test_fixed_threshold_errors() -> None:
    features, _ = _hand_table()
    with pytest.raises(ConfigError, match="needs thresholds"):
        score(features, method="fixed")
    good = {
        "recency_days": [90, 30, 13, 4],
        "frequency": [2, 3, 5, 10],
        "monetary": [100, 200, 400, 1000],
    }
    with pytest.raises(ConfigError, match="four numbers"):
        score(features, method="fixed", thresholds={**good, "frequency": [1, 2]})
    with pytest.raises(ConfigError, match="decreasing"):
        score(features, method="fixed", thresholds={**good, "recency_days": [1, 2, 3, 4]})
    for col in ("frequency", "monetary"):  # higher is better: the cut points must rise
        with pytest.raises(ConfigError, match=f"thresholds for {col} must be increasing"):
            score(features, method="fixed", thresholds={**good, col: [10, 5, 3, 2]})
    with pytest.raises(ConfigError, match="needs the columns"):
        score(features.drop(columns="monetary"))
    # a score nobody reaches: None (as quintiles report it) or inf, only at the top
    top = score(features, method="fixed", thresholds={**good, "frequency": [2, 3, None, None]})
    inf = float("inf")
    same = score(features, method="fixed", thresholds={**good, "frequency": [2, 3, inf, inf]})
    assert top.table["f_score"].max() == 3
    pd.testing.assert_frame_equal(top.table, same.table)
    assert same.cut_points["frequency"]["thresholds"] == [2.0, 3.0, None, None]
    with pytest.raises(ConfigError, match="only the highest scores can be unreachable"):
        score(features, method="fixed", thresholds={**good, "monetary": [None, 2, 3, 4]})
    with pytest.raises(ConfigError, match="must be numbers"):
        score(features, method="fixed", thresholds={**good, "monetary": [1, 2, 3, float("nan")]})
    # each mistake named, not a bare ValueError or AttributeError, nor scored as 1 (True)
    for given, message in (
        ({**good, "frequency": [2, 3, "x", 8]}, "for frequency must be numbers, got 'x'"),
        ({**good, "frequency": [2, 3, 5, True]}, "for frequency must be numbers, got True"),
        ({**good, "recency": [1, 2, 3, 4]}, "unknown key 'recency'"),
        ({k: v for k, v in good.items() if k != "monetary"}, "for monetary are missing"),
        ({**good, "recency_days": [90, 30, 13, -1]}, "-1 days is below 0"),
        ([1, 2, 3], "must be a mapping of recency_days"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            score(features, method="fixed", thresholds=given)
    # -inf is as unreachable a recency as inf
    low = score(
        features, method="fixed", thresholds={**good, "recency_days": [90, 30, 13, -np.inf]}
    )
    assert low.table["r_score"].max() == 4


def test_thresholds_files_name_the_wrong_entry(tmp_path: Path) -> None:
    """A misspelt key, a text value, three cut points or `true` all gave one generic
    "needs a [thresholds] table with four numbers", and `true` was scored as 1."""
    rest = "frequency = [2, 3, 5, 8]\nmonetary = [250, 500, 1000, 2000]\n"
    for line, message in (
        ("recency = [180, 90, 30, 14]", "unknown key 'recency'"),
        ('recency_days = [180, 90, 30, "x"]', "recency_days must be numbers, got 'x'"),
        ("recency_days = [180, 90, 30]", "recency_days must be four numbers"),
        ("recency_days = [180, 90, 30, true]", "recency_days must be numbers, got True"),
    ):
        path = tmp_path / "t.toml"
        path.write_text(f"[thresholds]\n{line}\n{rest}")
        with pytest.raises(ConfigError, match=re.escape(f"{path}: fixed thresholds")) as caught:
            load_thresholds_file(path)
        assert message in caught.value.message
    with pytest.raises(ValidationError, match="cut points must be numbers, not true or false"):
        RfmConfig(
            thresholds={
                "recency_days": [180, 90, 30, True],
                "frequency": [2, 3, 5, 8],
                "monetary": [1, 2, 3, 4],
            }
        )


def test_rule_set_csv_as_spreadsheets_save_it(tmp_path: Path) -> None:
    """Spaces after the commas, blank rows and empty trailing columns are read; a
    misspelt optional column is refused (every description was silently empty)."""
    path = tmp_path / "mine.csv"
    path.write_text(
        "segment; r_min; r_max; f_min; f_max; m_min; m_max; description;;\n"
        " Best;4;5;4;5;1;5;top;;\n;;;;;;;;;\nRest;1;5;1;5;1;5;;;\n;;;;;;;;;\n"
    )
    rules = load_rule_set(path)
    assert rules.names == ["Best", "Rest"]
    assert rules.segment("Best").description == "top"
    path.write_text("segment,r_min,r_max,f_min,f_max,m_min,m_max,descripton\nA,1,5,1,5,1,5,x\n")
    with pytest.raises(ConfigError, match=r"unknown column 'descripton' \(did you mean"):
        load_rule_set(path)


def test_user_rule_sets_from_toml_and_csv(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(
        'name = "mine"\nversion = "3"\n'
        '[[segment]]\nname = "Best"\nr = [4, 5]\nf = [4, 5]\n'
        '[[segment]]\nname = "Recent"\nr = [5, 5]\n'
    )
    rules = load_rule_set(toml)
    assert rules.label == "mine v3"
    assert len(rules.overlaps) == 10  # R5 F4-5 M1-5 are in both
    assert len(rules.gaps) == 125 - 20 - 15
    features, _ = _hand_table()
    table = score(features, rule_set=rules).table
    assert set(table["rfm_segment"]) == {"Best", "Recent", "Others"}
    assert set(table["rfm_rule_set"]) == {"mine v3"}

    csv = tmp_path / "grid.csv"
    csv.write_text(
        "segment,r_min,r_max,f_min,f_max,m_min,m_max,action\n"
        "High,3,5,1,5,1,5,keep\nLow,1,2,1,5,1,5,wake\n"
    )
    grid = load_rule_set(csv)
    assert grid.name == "grid" and grid.gaps == [] and grid.overlaps == []
    assert grid.segment("Low").action == "wake"
    assert set(score(features, rule_set=grid).table["rfm_rule_set"]) == {"grid (user table)"}
    # a copy under another file name (as a model bundle reads its stored table) keeps
    # the name it was trained with
    copy = tmp_path / "tmp3x9k.csv"
    copy.write_text(csv.read_text())
    assert load_rule_set(copy, name="grid").label == "grid (user table)"


def test_rule_set_csv_saved_by_a_spreadsheet_with_a_byte_order_mark(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark: the table was refused with
    "needs the columns ..." although it has every one of them."""
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b"\xef\xbb\xbfsegment,r_min,r_max,f_min,f_max,m_min,m_max\n"
        b"High,3,5,1,5,1,5\nLow,1,2,1,5,1,5\n"
    )
    rules = load_rule_set(path)
    assert [s.name for s in rules.segments] == ["High", "Low"] and rules.gaps == []


def test_rule_set_csv_row_with_missing_cells_is_a_clear_error(tmp_path: Path) -> None:
    """A row with fewer cells than the header (None in csv.DictReader) was an internal
    error (int(None)); an empty cell is refused the same way, naming line and columns."""
    path = tmp_path / "short.csv"
    path.write_text("segment,r_min,r_max,f_min,f_max,m_min,m_max\nBest,4,5,4,5,1,5\nGood,3,5\n")
    with pytest.raises(ConfigError, match=r"short.csv, line 3: no value for f_min, f_max") as e:
        load_rule_set(path)
    assert "six scores" in e.value.hint
    path.write_text("segment,r_min,r_max,f_min,f_max,m_min,m_max\n,4,5,4,5,1,5\n")
    with pytest.raises(ConfigError, match="line 2: no value for segment"):
        load_rule_set(path)


def test_rule_set_files_not_in_utf8(tmp_path: Path) -> None:
    """A rule-set CSV saved by a spreadsheet as plain "CSV" on Windows (Windows-1252)
    with an accented segment name was an internal error (UnicodeDecodeError, exit 70);
    so was a TOML file that is not UTF-8."""
    path = tmp_path / "fr.csv"
    path.write_bytes(
        "segment,r_min,r_max,f_min,f_max,m_min,m_max,action\n"
        "Clients fidèles,3,5,1,5,1,5,Offre fidélité\nPerdus,1,2,1,5,1,5,\n".encode("cp1252")
    )
    rules = load_rule_set(path)
    assert [s.name for s in rules.segments] == ["Clients fidèles", "Perdus"]
    assert rules.segment("Clients fidèles").action == "Offre fidélité"
    toml = tmp_path / "fr.toml"
    toml.write_bytes('[[segment]]\nname = "Fidèles"\n'.encode("cp1252"))
    with pytest.raises(ConfigError, match="fr.toml: not UTF-8 text") as err:
        load_rule_set(toml)
    assert "save it as UTF-8" in err.value.hint


def test_rule_set_csv_saved_with_semicolons(tmp_path: Path) -> None:
    """A spreadsheet in a German or French locale saves "CSV" with ';' (and CRLF line
    endings): it was refused as missing every column."""
    path = tmp_path / "regeln.csv"
    path.write_bytes(
        b"segment;r_min;r_max;f_min;f_max;m_min;m_max;description;action\r\n"
        b"Best;4;5;4;5;1;5;top, really;reward\r\nRest;1;5;1;5;1;5;;\r\n"
    )
    rules = load_rule_set(path)
    assert [(s.name, s.r, s.f, s.m) for s in rules.segments] == [
        ("Best", (4, 5), (4, 5), (1, 5)),
        ("Rest", (1, 5), (1, 5), (1, 5)),
    ]
    assert rules.segments[0].description == "top, really"


def test_rule_set_csv_with_wrong_columns_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("name,r_min,r_max,f_min,f_max,m_min,m_max\nA,1,5,1,5,1,5\n")
    with pytest.raises(ConfigError, match="; missing segment\nHint") as err:
        load_rule_set(path)
    assert err.value.hint.startswith("columns found: name, r_min")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[segment]]\nname = "A"\nr = [0, 5]\n', "not within 1..5"),
        ('[[segment]]\nname = "A"\nr = [5, 4]\n', "low <= high"),
        ('[[segment]]\nname = "A"\n[[segment]]\nname = "A"\n', "used twice"),
        ('[[segment]]\nname = "A"\nrecency = [1, 2]\n', "unknown key"),
        ('name = "x"\n', "no \\[\\[segment\\]\\] entries"),
        ("[[segment]]\nr = [1, 2]\n", "has no name"),
        ("[[segment]\n", "not valid TOML"),
        # a list of numbers for the segments was an internal error (AttributeError)
        ("segment = [1, 2]\n", "segment 1: is 1, not a table"),
        ('other = " "\n[[segment]]\nname = "A"\nr = [4, 5]\n', "other is empty"),
        ('other = "A"\n[[segment]]\nname = "A"\nr = [4, 5]\n', "segment 'A' has the name"),
    ],
)
def test_bad_rule_sets_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_rule_set(path)
    assert err.value.hint  # every refused table says how to fix it


def test_a_csv_rule_table_error_names_its_line(tmp_path: Path) -> None:
    """Errors in a CSV rule table said "segment 2" (the second data row, line 3 of the
    file), which the user had to count out; they name the line, as its other errors do."""
    path = tmp_path / "mine.csv"
    path.write_text(
        "segment,r_min,r_max,f_min,f_max,m_min,m_max\n"
        "Best,4,5,4,5,1,5\nRest,1,3,1,5,1,5\nBest,4,5,1,3,1,5\n"
    )
    with pytest.raises(ConfigError, match=r"mine\.csv, line 4: segment name 'Best' is used twice"):
        load_rule_set(path)
    path.write_text("segment,r_min,r_max,f_min,f_max,m_min,m_max\nBest,4,6,4,5,1,5\n")
    with pytest.raises(ConfigError, match=r"mine\.csv, line 2: r range \[4, 6\]"):
        load_rule_set(path)


def test_a_segment_named_like_the_uncovered_cells_is_refused(tmp_path: Path) -> None:
    """A CSV segment called "Others" in a table with gaps: its customers and those of the
    uncovered cells shared the name, and the counts by segment listed "Others" twice,
    each time with both groups (shares adding up to 160 %)."""
    path = tmp_path / "mine.csv"
    path.write_text(
        "segment,r_min,r_max,f_min,f_max,m_min,m_max\nBest,4,5,4,5,1,5\nOthers,1,1,1,5,1,5\n"
    )
    with pytest.raises(ConfigError, match="segment 'Others' has the name given to the 80 cells"):
        load_rule_set(path)
    # a table that covers every cell may call a segment "Others"
    path.write_text(
        "segment,r_min,r_max,f_min,f_max,m_min,m_max\nBest,4,5,1,5,1,5\nOthers,1,3,1,5,1,5\n"
    )
    result = score(_hand_table()[0], rule_set=path)
    assert result.segments()["segment"].tolist() == ["Best", "Others"]
    assert result.segments()["customers"].sum() == 20


def test_unknown_rule_set_name() -> None:
    with pytest.raises(ConfigError, match="unknown rule set 'rfm-9'") as err:
        load_rule_set("rfm-9")
    assert "rf-grid" in err.value.hint


def test_online_retail_rfm_uses_every_rf_grid_segment(online_retail: Path) -> None:
    from segmint.pipeline import build_features, prepare

    feats, rfm = build_features(prepare(online_retail))
    seg = rfm.segments().set_index("segment")["customers"]
    assert seg.sum() == feats.n_customers == 4_334
    assert (seg > 0).all()
    assert rfm.cut_points["frequency"]["thresholds"] == [2, 3, 4, 6]
