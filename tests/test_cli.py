import pytest

from avdd.cli import main


def test_data_list_shows_avdigits(capsys):
    assert main(["data", "list"]) == 0
    assert "avdigits" in capsys.readouterr().out


def test_data_info_summarises_a_store(avdigits, capsys):
    assert main(["data", "info", str(avdigits.path)]) == 0
    out = capsys.readouterr().out
    assert "classes   10" in out
    assert "train     2700 samples" in out and "test      300 samples" in out
    assert "audio     (1,128,56) float16" in out and "frame     (1,28,28) uint8" in out
    assert "float16 spectrogram," in out and "uint8 image," in out


def test_data_info_on_a_non_store_fails_with_one_line(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a dataset store" in err


def test_help_lists_the_verbs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in ("data", "demo", "run", "report", "listen"))
