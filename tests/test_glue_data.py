"""GLUE loaders: the real shared files (row counts, traps), malformed files, and the Hub path (without network)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import datasets
import pytest

from hf_squareloss.glue import GlueDataError, get_task, load_glue, read_glue_tsv, task_names
from hf_squareloss.glue.tasks import GLUE_TASKS

# rows (train, dev) as listed in ../shared/README.md
README_ROWS = {"SST-2": (67_349, 872), "MRPC": (3_668, 408), "QNLI": (4_463, 1_000), "QQP": (20_000, 3_497)}


def _independent_rows(path: Path) -> list[list[str]]:
    """The file read with the csv module, quoting off, BOM stripped: an independent reading."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


# ---- the real files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("folder", sorted(README_ROWS))
def test_real_files_row_counts_and_labels(shared_data, folder: str) -> None:
    task = get_task(folder)
    data = load_glue(task, shared_data(f"glue/{folder}"))
    train_rows, dev_rows = README_ROWS[folder]
    assert len(data.splits["train"]) == train_rows
    assert len(data.splits["validation"]) == dev_rows
    assert data.source["origin"] == "tsv"
    assert data.source["files"]["train"]["rows"] == train_rows
    # label distribution equals an independent count of the label column
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        rows = _independent_rows(shared_data(f"glue/{folder}") / name)
        header, body = rows[0], rows[1:]
        raw_labels = Counter(r[header.index(task.tsv.label_field)] for r in body)
        expected = Counter({task.tsv.label_values[k]: v for k, v in raw_labels.items()})
        assert Counter(data.splits[split]["label"]) == expected
        assert data.splits[split].features["label"].names == list(task.label_names)
        assert data.splits[split]["idx"] == list(range(len(body)))


def test_mrpc_dev_byte_order_mark_and_quotes(shared_data) -> None:
    folder = shared_data("glue/MRPC")
    assert (folder / "dev.tsv").read_bytes()[:3] == b"\xef\xbb\xbf"  # the trap is really there
    dev = load_glue("mrpc", folder, splits=["validation"]).splits["validation"]
    rows = _independent_rows(folder / "dev.tsv")
    assert dev[0]["sentence1"] == rows[1][3] and dev[0]["sentence2"] == rows[1][4]
    assert dev["label"] == [int(r[0]) for r in rows[1:]]
    train = read_glue_tsv(folder / "train.tsv", get_task("mrpc"))
    quoted = [s for s in train["sentence1"] if '"' in s]
    assert quoted, "MRPC has sentences with quote characters"
    assert train["sentence1"][0].count('"') == 2  # kept verbatim, not taken as CSV quoting


def test_qnli_string_labels(shared_data) -> None:
    folder = shared_data("glue/QNLI")
    dev = load_glue("qnli", folder, splits=["validation"]).splits["validation"]
    raw = [r[3] for r in _independent_rows(folder / "dev.tsv")[1:]]
    assert sorted(set(raw)) == ["entailment", "not_entailment"]
    names = dev.features["label"].names
    assert [names[i] for i in dev["label"]] == raw


def test_qqp_columns(shared_data) -> None:
    folder = shared_data("glue/QQP")
    dev = load_glue("qqp", folder, splits=["validation"]).splits["validation"]
    rows = _independent_rows(folder / "dev.tsv")
    assert dev.column_names == ["question1", "question2", "label", "idx"]
    assert dev[5]["question1"] == rows[6][3] and dev[5]["question2"] == rows[6][4]
    assert dev[5]["label"] == int(rows[6][5])


# ---- malformed files ---------------------------------------------------------------------------------------
def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


SST_HEADER = "sentence\tlabel\n"


def test_wrong_field_count_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", SST_HEADER + "good one\t1\nbad\tone\t0\n")
    with pytest.raises(GlueDataError, match=r"train\.tsv, line 3: 3 tab-separated field\(s\), expected 2"):
        read_glue_tsv(path, get_task("sst2"))


def test_bad_label_names_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "dev.tsv", "index\tquestion\tsentence\tlabel\n0\tq\ts\tentailment\n1\tq\ts\tmaybe\n"
    )
    with pytest.raises(GlueDataError, match=r"dev\.tsv, line 3: label 'maybe' is not one of"):
        read_glue_tsv(path, get_task("qnli"))
    path = _write(tmp_path / "x.tsv", SST_HEADER + "fine\t2\n")
    with pytest.raises(GlueDataError, match=r"x\.tsv, line 2: label '2'"):
        read_glue_tsv(path, get_task("sst2"))


def test_invalid_utf8_empty_lines_and_empty_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.tsv", SST_HEADER.encode() + b"ok\t1\n\xff\xfe broken\t0\n")
    with pytest.raises(GlueDataError, match=r"a\.tsv, line 3: not valid UTF-8"):
        read_glue_tsv(path, get_task("sst2"))
    path = _write(tmp_path / "b.tsv", SST_HEADER + "ok\t1\n\nok\t0\n")
    with pytest.raises(GlueDataError, match=r"b\.tsv, line 3: empty line"):
        read_glue_tsv(path, get_task("sst2"))
    with pytest.raises(GlueDataError, match=r"c\.tsv, line 1: the file is empty"):
        read_glue_tsv(_write(tmp_path / "c.tsv", ""), get_task("sst2"))
    with pytest.raises(GlueDataError, match=r"d\.tsv: no data rows"):
        read_glue_tsv(_write(tmp_path / "d.tsv", SST_HEADER), get_task("sst2"))


def test_wrong_header_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "text\tlabel\nhello\t1\n")
    with pytest.raises(GlueDataError, match=r"line 1: header has no column 'sentence'"):
        read_glue_tsv(path, get_task("sst2"))
    path.unlink()
    with pytest.raises(GlueDataError, match=r"train\.tsv: no such file; --data_dir must hold SST-2's files"):
        load_glue("sst2", tmp_path)
    with pytest.raises(GlueDataError, match="is not a folder"):
        load_glue("sst2", tmp_path / "nowhere")


def test_crlf_line_endings_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.tsv", "sentence\tlabel\r\nnice film\t1\r\n")
    assert read_glue_tsv(path, get_task("sst2"))["sentence"] == ["nice film"]


# ---- the other layouts (synthetic files in GLUE's original formats) ------------------------------------------
def test_cola_has_no_header(tmp_path: Path) -> None:
    text = "gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tThey drank the pub.\n"
    for name in ("train.tsv", "dev.tsv"):
        _write(tmp_path / name, text)
    data = load_glue("CoLA", tmp_path)
    assert data.splits["train"]["sentence"] == ["Our friends won't buy this analysis.", "They drank the pub."]
    assert data.splits["validation"]["label"] == [1, 0]
    _write(tmp_path / "train.tsv", "gj04\t1\t\tfine\ngj04\t0\tbroken\n")
    with pytest.raises(GlueDataError, match=r"train\.tsv, line 2: 3 tab-separated field\(s\), expected 4"):
        load_glue("cola", tmp_path)


def test_mnli_reads_columns_by_name_and_both_dev_files(tmp_path: Path) -> None:
    train_head = (
        "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    )
    dev_head = (
        "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4"
        "\tlabel5\tgold_label\n"
    )
    _write(
        tmp_path / "train.tsv",
        train_head + "0\t1\t1e\tgov\t(\t(\t(\t(\tA man.\tA person.\tneutral\tentailment\n",
    )
    for name, label in (("dev_matched.tsv", "contradiction"), ("dev_mismatched.tsv", "neutral")):
        _write(tmp_path / name, dev_head + f"0\t1\t1e\tgov\t(\t(\t(\t(\tP\tH\tx\tx\tx\tx\tx\t{label}\n")
    data = load_glue("mnli", tmp_path)
    assert data.splits["train"][0] == {"premise": "A man.", "hypothesis": "A person.", "label": 0, "idx": 0}
    assert data.splits["validation_matched"]["label"] == [2]
    assert data.splits["validation_mismatched"]["label"] == [1]


def test_rte_wnli_stsb_layouts(tmp_path: Path) -> None:
    _write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tnot_entailment\n")
    assert read_glue_tsv(tmp_path / "rte.tsv", get_task("rte"))["label"] == [1]
    _write(tmp_path / "wnli.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n")
    assert read_glue_tsv(tmp_path / "wnli.tsv", get_task("wnli"))["label"] == [
        1
    ]  # 1 = entailment, as on the Hub
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    _write(tmp_path / "stsb.tsv", head + "0\tmain\tf\t2012\t1\tnone\tnone\tA plane.\tAn air plane.\t5.000\n")
    assert read_glue_tsv(tmp_path / "stsb.tsv", get_task("stsb"))["label"] == [5.0]
    _write(tmp_path / "bad.tsv", head + "0\tmain\tf\t2012\t1\tnone\tnone\tA\tB\tfive\n")
    with pytest.raises(GlueDataError, match=r"line 2: score 'five' is not a number"):
        read_glue_tsv(tmp_path / "bad.tsv", get_task("stsb"))


# ---- task registry ----------------------------------------------------------------------------------------
def test_task_names_and_aliases() -> None:
    assert set(task_names()) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    for alias, name in (
        ("SST-2", "sst2"),
        ("sst-2", "sst2"),
        ("MRPC", "mrpc"),
        ("STS-B", "stsb"),
        ("CoLA", "cola"),
    ):
        assert get_task(alias).name == name
    with pytest.raises(ValueError, match="unknown GLUE task 'squad'"):
        get_task("squad")
    for task in GLUE_TASKS.values():
        if not task.is_regression:
            assert sorted(task.tsv.label_values.values()) == list(range(task.num_labels))


# ---- the Hub path, without network ------------------------------------------------------------------------
def _hub_like(task_name: str) -> datasets.DatasetDict:
    task = get_task(task_name)
    features = datasets.Features(
        {
            **{c: datasets.Value("string") for c in task.text_columns},
            "label": datasets.ClassLabel(names=list(task.label_names)),
            "idx": datasets.Value("int32"),
        }
    )
    rows = {**{c: ["x", "y"] for c in task.text_columns}, "label": [0, 1], "idx": [0, 1]}
    return datasets.DatasetDict(
        {s: datasets.Dataset.from_dict(rows, features=features) for s in ("train", "validation", "test")}
    )


def test_hub_loader_uses_nyu_mll_glue(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load(name, config, **kwargs):
        calls.append((name, config, kwargs))
        return _hub_like(config)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = load_glue("MRPC")
    assert calls[0][:2] == ("nyu-mll/glue", "mrpc")
    assert set(data.splits) == {"train", "validation"}
    assert data.source == {
        "origin": "hub",
        "dataset": "nyu-mll/glue",
        "config_name": "mrpc",
        "revision": None,
        "rows": {"train": 2, "validation": 2},
    }


def test_hub_loader_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(GlueDataError, match="pass --data_dir"):
        load_glue("sst2")

    def wrong_labels(name, config, **kwargs):
        return _hub_like("qnli")  # entailment / not_entailment, not negative / positive

    monkeypatch.setattr(datasets, "load_dataset", wrong_labels)
    with pytest.raises(GlueDataError, match="differ from GLUE's"):
        load_glue("sst2")
