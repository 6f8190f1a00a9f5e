"""The command line's joints: one parser for multi-value options, defaults left to the config
models, help readable on an 80-column terminal, bad options refused before any progress bar."""

from support import TOP, cli
from synthtrials.scripts.cli_args import expand_multi_value


def test_multi_value_options_accept_every_spelling():
    expected = ["evaluate", "--seeds", "40", "--seeds", "41", "--seeds", "42", "--out", "x"]
    assert expand_multi_value(["evaluate", "--seeds", "40", "41", "42", "--out", "x"]) == expected
    assert expand_multi_value(["evaluate", "--seeds", "40,41,42", "--out", "x"]) == expected
    assert expand_multi_value(["evaluate", "--seeds", "40", "--seeds", "41,42", "--out", "x"]) == expected
    assert expand_multi_value(["evaluate", "--seeds=40,41"]) == ["evaluate", "--seeds=40", "--seeds=41"]
    assert expand_multi_value(["ingest", "a.csv", "b.csv", "--store", "s"]) == ["ingest", "a.csv", "b.csv", "--store", "s"]


def test_seeds_typed_as_a_newcomer_types_them(tmp_path):
    result = cli("evaluate", "--real-train", str(TOP / "phase_I_valid.csv"), "--real-test",
                     str(TOP / "phase_I_valid.csv"), "--seeds", "40", "41", "--out", str(tmp_path / "e"))
    assert result.returncode == 0, result.stderr
    assert "seeds [40, 41]" in result.stdout


def test_help_fits_80_columns():
    for command in (["generate"], ["evaluate"], ["adapt"], ["check"], ["demo"]):
        result = cli(*command, "--help", env={"COLUMNS": "80"})
        assert result.returncode == 0
        assert max(len(line) for line in result.stdout.splitlines()) <= 80
        words_alone = [line for line in result.stdout.splitlines() if len(line.strip("│ ").split()) == 1
                       and line.strip("│ ").isalpha()]
        assert len(words_alone) < 3, words_alone  # no one-word-per-line wrapping


def test_bad_options_fail_before_any_progress_bar(tmp_path):
    result = cli("generate", "--store", str(tmp_path / "none"), "--n", "3", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "no trial store here" in result.stderr
    assert "generating" not in result.stderr and not (tmp_path / "r").exists()
    bad_split = cli("generate", "--store", str(tmp_path / "none"), "--n", "3", "--out", str(tmp_path / "r"),
                        "--ground-on", "dev")
    assert bad_split.returncode == 2 and "unknown split 'dev'" in bad_split.stderr
