"""Prepare scripts of recipes/asr on corpus trees generated here in each corpus's exact layout and audio format
(SPHERE written byte by byte for TIMIT, AN4 and WSJ, FLAC for LibriSpeech), and AN4's on the real shared copy.

The ``write_*`` helpers are also used by ``test_asr_training.py``.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.asr

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "asr"


def load_recipe_module(corpus: str, name: str):
    """Import ``recipes/asr/<corpus>/<name>.py`` (the recipe folders are scripts, not packages)."""
    folder = str(RECIPES / corpus)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"{corpus}_{name}", RECIPES / corpus / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------------------------------------------
# audio writers
# ----------------------------------------------------------------------------------------------------------------
def tone(seconds: float, rate: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def sphere_bytes(fields: list[tuple[str, str, object]], payload: bytes) -> bytes:
    """A NIST SPHERE file: 1024-byte ASCII header (NIST_1A, size, ``name -type value`` lines, end_head)."""
    lines = ["NIST_1A", "   1024", *(f"{name} {kind} {value}" for name, kind, value in fields), "end_head"]
    header = ("\n".join(lines) + "\n").encode("ascii")
    assert len(header) <= 1024
    return header.ljust(1024, b" ") + payload


def write_sphere(path: Path, wave: np.ndarray, rate: int = 16000) -> Path:
    """Uncompressed 16-bit little-endian SPHERE, as TIMIT and AN4 ship."""
    pcm = np.clip(np.round(wave * 32767), -32768, 32767).astype("<i2")
    fields = [
        ("sample_count", "-i", pcm.size),
        ("sample_rate", "-i", rate),
        ("channel_count", "-i", 1),
        ("sample_n_bytes", "-i", 2),
        ("sample_byte_format", "-s2", "01"),
        ("sample_coding", "-s3", "pcm"),
        ("sample_sig_bits", "-i", 16),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sphere_bytes(fields, pcm.tobytes()))
    return path


def write_shorten_sphere(path: Path, seconds: float = 1.0) -> Path:
    """A WSJ-like ``.wv1`` header declaring shorten compression (the payload is not real shorten data)."""
    fields = [
        ("sample_count", "-i", int(seconds * 16000)),
        ("sample_rate", "-i", 16000),
        ("channel_count", "-i", 1),
        ("sample_n_bytes", "-i", 2),
        ("sample_byte_format", "-s2", "10"),
        ("sample_coding", "-s26", "pcm,embedded-shorten-v2.00"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sphere_bytes(fields, b"ajkg" + bytes(200)))
    return path


# ----------------------------------------------------------------------------------------------------------------
# corpus trees
# ----------------------------------------------------------------------------------------------------------------
AN4_WORDS = ["YES", "NO", "GO", "STOP", "ENTER", "ONE", "TWO", "THREE", "A", "B", "C", "RUBOUT"]


def write_an4_tree(
    root: Path, speakers: list[str], per_speaker: int, *, test_speakers: list[str] = ()
) -> Path:
    """The CMU AN4 layout with synthetic audio: wav/an4_clstk/<spk>/*.sph, etc/an4_train.{transcription,fileids}
    and, for ``test_speakers``, the test part (wav/an4test_clstk, etc/an4_test.transcription, no fileids)."""
    rng = np.random.default_rng(0)
    for part, folder, chosen in (("train", "an4_clstk", speakers), ("test", "an4test_clstk", test_speakers)):
        if not chosen:
            continue
        transcription, fileids = [], []
        for s, speaker in enumerate(chosen):
            for u in range(per_speaker):
                utt = f"an{100 + u}-{speaker}-b"
                words = [AN4_WORDS[int(i)] for i in rng.integers(0, len(AN4_WORDS), size=1 + u % 3)]
                write_sphere(
                    root / "wav" / folder / speaker / f"{utt}.sph", tone(0.5 + 0.1 * u, seed=s * 100 + u)
                )
                transcription.append(f"<s> {' '.join(words)} </s> ({utt})")
                fileids.append(f"{folder}/{speaker}/{utt}")
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc" / f"an4_{part}.transcription").write_text("\n".join(transcription) + "\n")
        if part == "train":
            (root / "etc" / "an4_train.fileids").write_text("\n".join(fileids) + "\n")
    return root


TIMIT_PHN = (
    "h# sh iy hv ae dcl d y er q dcl d aa r kcl k s uw dx ih ng gcl g r iy s iy w ao sh epi w ao dx er h#"
)


def write_timit_tree(root: Path, *, upper: bool) -> Path:
    """TIMIT's LDC layout: <TRAIN|TEST>/<DR>/<SPK>/<UTT>.WAV (SPHERE) + .PHN + .WRD, SA sentences included."""
    case = str.upper if upper else str.lower
    layout = {
        "train": [("dr1", "fcjf0"), ("dr2", "marc0")],
        "test": [("dr1", "faks0"), ("dr1", "mdab0"), ("dr3", "mrtk0"), ("dr4", "fjlm0"), ("dr5", "fzzz9")],
    }
    for part, speakers in layout.items():
        for dialect, speaker in speakers:
            folder = root / case(part) / case(dialect) / case(speaker)
            for k, utt in enumerate(["sa1", "sa2", "si1027", "sx127"]):
                write_sphere(folder / f"{case(utt)}.{case('wav')}", tone(0.4, seed=k))
                phones = TIMIT_PHN.split()
                lines = [f"{i * 800} {(i + 1) * 800} {p}" for i, p in enumerate(phones)]
                (folder / f"{case(utt)}.{case('phn')}").write_text("\n".join(lines) + "\n")
                (folder / f"{case(utt)}.{case('wrd')}").write_text("0 800 she\n800 1600 had\n")
    return root


def write_librispeech_tree(root: Path, splits: dict[str, list[tuple[int, int, int]]]) -> Path:
    """openslr layout: <split>/<spk>/<chapter>/<spk>-<chapter>-<n>.flac + <spk>-<chapter>.trans.txt."""
    sentences = ["HELLO WORLD", "IT'S A FINE DAY", "THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG"]
    for split, chapters in splits.items():
        for speaker, chapter, count in chapters:
            folder = root / split / str(speaker) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            lines = []
            for n in range(count):
                utt = f"{speaker}-{chapter}-{n:04d}"
                sf.write(folder / f"{utt}.flac", tone(0.3 + 0.05 * n, seed=n), 16000, format="FLAC")
                lines.append(f"{utt} {sentences[n % len(sentences)]}")
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


WSJ_DOT = {
    "011c0201": r"The [loud_breath] company's <and> *profits* rose ~ . \,COMMA I\. B\. M\. [door_slam>] ten-year",
    "011c0202": "NEW YORK STOCKS FELL [<door_slam]",
    "4a0c0201": "DOW JONES %PERCENT",
    "4k0c0301": "DEVELOPMENT DATA",
    "440c0201": "EVALUATION NUMBER ONE",
}


def write_wsj_tree(root: Path, *, compressed: bool) -> Path:
    """LDC discs: 11-1.1/wsj0/{si_tr_s,si_et_20}/<spk>/*.wv1, 13-1.1/wsj1/{si_tr_s,si_dt_20}/<spk>/*.wv1, dot files in
    wsj0/transcrp/dots/... (WSJ0 training) and next to the audio (the rest)."""
    placement = {
        "011c0201": ("11-1.1/wsj0/si_tr_s/011", "11-4.1/wsj0/transcrp/dots/si_tr_s/011/011c02.dot"),
        "011c0202": ("11-1.1/wsj0/si_tr_s/011", "11-4.1/wsj0/transcrp/dots/si_tr_s/011/011c02.dot"),
        "4a0c0201": ("13-1.1/wsj1/si_tr_s/4a0", "13-1.1/wsj1/si_tr_s/4a0/4a0c02.dot"),
        "4k0c0301": ("13-34.1/wsj1/si_dt_20/4k0", "13-34.1/wsj1/si_dt_20/4k0/4k0c03.dot"),
        "440c0201": ("11-14.1/wsj0/si_et_20/440", "11-14.1/wsj0/si_et_20/440/440c02.dot"),
    }
    dots: dict[str, list[str]] = {}
    for utt, (folder, dot) in placement.items():
        audio = root / folder / f"{utt}.wv1"
        if compressed:
            write_shorten_sphere(audio)
        else:
            write_sphere(audio, tone(0.6))
        dots.setdefault(dot, []).append(f"{WSJ_DOT[utt]} ({utt})")
    for dot, lines in dots.items():
        (root / dot).parent.mkdir(parents=True, exist_ok=True)
        (root / dot).write_text("\n".join(lines) + "\n")
    # noise: 2-channel files and other subsets are ignored
    write_sphere(root / "13-1.1/wsj1/si_tr_l/4b0/4b0c0201.wv1", tone(0.2))
    return root


# ----------------------------------------------------------------------------------------------------------------
# AN4
# ----------------------------------------------------------------------------------------------------------------
def test_an4_prepare_on_the_real_shared_copy(shared_data, tmp_path):
    an4 = load_recipe_module("an4", "an4_prepare")
    root = shared_data("an4")
    manifests = an4.prepare_an4(root, tmp_path)
    assert set(manifests) == {"train", "valid"}  # the shared copy has no test part
    train, valid = read_csv(manifests["train"]), read_csv(manifests["valid"])
    assert len(train) + len(valid) == 948
    train_speakers = {r["spk_id"] for r in train}
    valid_speakers = {r["spk_id"] for r in valid}
    assert len(train_speakers) + len(valid_speakers) == 74
    assert not train_speakers & valid_speakers
    assert len(valid_speakers) == 10
    assert sum(s.startswith("f") for s in valid_speakers) == 5
    assert (tmp_path / "valid_speakers.txt").read_text().split() == sorted(valid_speakers)
    first = next(r for r in train + valid if r["ID"] == "an251-fash-b")
    assert first["text"] == "YES"
    assert Path(first["wav"]) == (root / "wav/an4_clstk/fash/an251-fash-b.sph").resolve()
    assert float(first["duration"]) == pytest.approx(1.0)
    total = sum(float(r["duration"]) for r in train + valid) / 60
    assert 42 < total < 43  # about 42 minutes
    letters = set("".join(r["text"] for r in train + valid).replace(" ", ""))
    assert letters <= set(an4.ALPHABET)
    # a second call with the same options reuses the files
    mtime = manifests["train"].stat().st_mtime_ns
    assert an4.prepare_an4(root, tmp_path) == manifests
    assert manifests["train"].stat().st_mtime_ns == mtime


def test_an4_prepare_with_test_part(tmp_path):
    an4 = load_recipe_module("an4", "an4_prepare")
    train_speakers = [f"f{c}ab" for c in "abcdef"] + [f"m{c}cd" for c in "abcdef"]
    root = write_an4_tree(tmp_path / "an4", train_speakers, 3, test_speakers=["fzzz", "mzzz"])
    manifests = an4.prepare_an4(root, tmp_path / "out", valid_speakers_per_gender=2, seed=3)
    assert set(manifests) == {"train", "valid", "test"}
    valid = read_csv(manifests["valid"])
    assert len({r["spk_id"] for r in valid}) == 4 and len(valid) == 12
    test = read_csv(manifests["test"])
    assert {r["spk_id"] for r in test} == {"fzzz", "mzzz"}
    assert all("an4test_clstk" in r["wav"] for r in test)
    assert float(test[0]["duration"]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("<s> YES </s>", r"an4_train.transcription:2: expected"),
        ("<s> YES NO3 </s> (an1-fash-b)", r"an4_train.transcription:2: words \['NO3'\]"),
        ("<s> </s> (an1-fash-b)", r"an4_train.transcription:2: empty transcript"),
    ],
)
def test_an4_malformed_transcription_names_file_and_line(tmp_path, line, message):
    an4 = load_recipe_module("an4", "an4_prepare")
    path = tmp_path / "an4_train.transcription"
    path.write_text(f"<s> YES </s> (an0-fash-b)\n{line}\n")
    with pytest.raises(ValueError, match=message):
        an4.parse_transcription(path)


def test_an4_missing_audio_and_mismatched_fileids(tmp_path):
    an4 = load_recipe_module("an4", "an4_prepare")
    root = write_an4_tree(tmp_path / "an4", ["faaa", "fbbb", "maaa", "mbbb"], 2)
    fileids = root / "etc" / "an4_train.fileids"
    lines = fileids.read_text().splitlines()
    fileids.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"an4_train.fileids:1: .* does not match"):
        an4.prepare_an4(root, tmp_path / "out", valid_speakers_per_gender=1)
    fileids.write_text("\n".join(lines) + "\n")
    (root / "wav" / lines[0]).with_suffix(".sph").unlink()
    with pytest.raises(FileNotFoundError, match=r"an100-faaa-b\.sph"):
        an4.prepare_an4(root, tmp_path / "out", valid_speakers_per_gender=1)
    with pytest.raises(FileNotFoundError, match="not an AN4 folder"):
        an4.prepare_an4(tmp_path, tmp_path / "out")


# ----------------------------------------------------------------------------------------------------------------
# TIMIT
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("upper", [True, False])
def test_timit_prepare(tmp_path, upper):
    timit = load_recipe_module("timit", "timit_prepare")
    root = write_timit_tree(tmp_path / "TIMIT", upper=upper)
    manifests = timit.prepare_timit(root, tmp_path / "out")
    rows = {name: read_csv(path) for name, path in manifests.items()}
    assert {r["spk_id"] for r in rows["train"]} == {"fcjf0", "marc0"}
    assert {r["spk_id"] for r in rows["valid"]} == {"faks0", "mrtk0"}  # the dev set's speakers
    assert {r["spk_id"] for r in rows["test"]} == {"mdab0", "fjlm0"}  # the core test's
    # fzzz9 is in neither list; SA sentences dropped
    assert all(not r["ID"].endswith(("sa1", "sa2")) for name in rows for r in rows[name])
    assert len(rows["train"]) == 4 and len(rows["valid"]) == 4 and len(rows["test"]) == 4
    assert rows["train"][0]["ID"] == "dr1_fcjf0_si1027"
    expected = (
        "sil sh iy hh ae sil d y er sil d aa r sil k s uw dx ih ng sil g r iy s iy w aa sh sil w aa dx er sil"
    )
    assert rows["train"][0]["text"] == expected  # q deleted, closures to sil, hv->hh, ao->aa
    assert float(rows["test"][0]["duration"]) == pytest.approx(0.4)
    assert len(timit.PHONES_39) == 39 and len(timit.FOLD_61_TO_39) == 61
    assert len(timit.DEV_SPEAKERS) == 50 and len(timit.CORE_TEST_SPEAKERS) == 24


def test_timit_phn_errors_name_file_and_line(tmp_path):
    timit = load_recipe_module("timit", "timit_prepare")
    path = tmp_path / "SX1.PHN"
    path.write_text("0 100 h#\n100 200 zz\n")
    with pytest.raises(ValueError, match=r"SX1.PHN:2: 'zz' is not one of the 61"):
        timit.parse_phn(path)
    path.write_text("0 100 h#\n100 h#\n")
    with pytest.raises(ValueError, match=r"SX1.PHN:2: expected"):
        timit.parse_phn(path)
    with pytest.raises(FileNotFoundError, match="not a TIMIT folder"):
        timit.prepare_timit(tmp_path, tmp_path / "out")


def test_timit_missing_phn(tmp_path):
    timit = load_recipe_module("timit", "timit_prepare")
    root = write_timit_tree(tmp_path / "TIMIT", upper=True)
    (root / "TRAIN/DR1/FCJF0/SX127.PHN").unlink()
    with pytest.raises(FileNotFoundError, match=r"SX127.WAV has no .PHN"):
        timit.prepare_timit(root, tmp_path / "out")


# ----------------------------------------------------------------------------------------------------------------
# LibriSpeech
# ----------------------------------------------------------------------------------------------------------------
def test_librispeech_prepare_and_tokenizer(tmp_path):
    libri = load_recipe_module("librispeech", "librispeech_prepare")
    root = write_librispeech_tree(
        tmp_path / "LibriSpeech",
        {
            "train-clean-100": [(19, 198, 3), (26, 495, 2)],
            "dev-clean": [(84, 121, 2)],
            "test-clean": [(61, 70968, 2)],
            "test-other": [(367, 130732, 1)],
        },
    )
    manifests = libri.prepare_librispeech(root, tmp_path / "out", train_splits=["train-clean-100"])
    assert list(manifests) == ["train", "valid", "test-clean", "test-other"]
    train = read_csv(manifests["train"])
    assert [r["ID"] for r in train] == [
        "19-198-0000",
        "19-198-0001",
        "19-198-0002",
        "26-495-0000",
        "26-495-0001",
    ]
    assert train[1]["text"] == "IT'S A FINE DAY" and train[1]["spk_id"] == "19"
    assert float(train[1]["duration"]) == pytest.approx(0.35)
    assert sf.info(train[0]["wav"]).format == "FLAC"

    from hf_squareloss.speechbrain.units import SentencePieceTokenizer

    texts = [r["text"] for r in train] * 20
    tokenizer = SentencePieceTokenizer.train(texts, tmp_path / "tok" / "unigram28", vocab_size=28)
    assert tokenizer.num_classes == 28
    ids = tokenizer.encode("THE QUICK DAY")
    assert min(ids) >= 3  # 0 blank, 1 bos, 2 eos never produced
    assert tokenizer.decode([1, *ids, 2, 0]) == "THE QUICK DAY"


def test_librispeech_bad_transcripts(tmp_path):
    libri = load_recipe_module("librispeech", "librispeech_prepare")
    path = tmp_path / "19-198.trans.txt"
    path.write_text("19-198-0000 HELLO\n19-198-0001 Hello there\n")
    with pytest.raises(ValueError, match=r"19-198.trans.txt:2: transcript must be upper-case"):
        libri.parse_trans(path)
    path.write_text("19-199-0000 HELLO\n")
    with pytest.raises(ValueError, match=r"19-198.trans.txt:1: utterance id '19-199-0000'"):
        libri.parse_trans(path)
    root = write_librispeech_tree(tmp_path / "L", {"train-clean-100": [(1, 2, 1)], "dev-clean": [(3, 4, 1)]})
    with pytest.raises(FileNotFoundError, match=r"splits \['test-clean', 'test-other'\] not found"):
        libri.prepare_librispeech(root, tmp_path / "out", train_splits=["train-clean-100"])
    (root / "train-clean-100/1/2/1-2-0000.flac").unlink()
    with pytest.raises(FileNotFoundError, match=r"1-2-0000\.flac"):
        libri.prepare_librispeech(root, tmp_path / "out", train_splits=["train-clean-100"], test_splits=[])


# ----------------------------------------------------------------------------------------------------------------
# WSJ
# ----------------------------------------------------------------------------------------------------------------
def test_wsj_normalisation():
    wsj = load_recipe_module("wsj", "wsj_prepare")
    assert (
        wsj.normalise_transcript(WSJ_DOT["011c0201"]) == "THE COMPANY'S AND PROFITS ROSE COMMA I B M TEN YEAR"
    )
    assert wsj.normalise_transcript(WSJ_DOT["4a0c0201"]) == "DOW JONES PERCENT"
    assert wsj.normalise_transcript("[loud_breath] [door_slam]") == ""


def test_wsj_prepare_uncompressed_sphere(tmp_path, monkeypatch):
    wsj = load_recipe_module("wsj", "wsj_prepare")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sph2pipe needed for PCM SPHERE
    root = write_wsj_tree(tmp_path / "wsj", compressed=False)
    manifests = wsj.prepare_wsj(root, tmp_path / "out")
    rows = {name: read_csv(path) for name, path in manifests.items()}
    assert [r["ID"] for r in rows["train"]] == ["011c0201", "011c0202", "4a0c0201"]  # si_tr_l ignored
    assert [r["ID"] for r in rows["valid"]] == ["4k0c0301"]
    assert [r["ID"] for r in rows["test"]] == ["440c0201"]
    assert rows["train"][1]["text"] == "NEW YORK STOCKS FELL"
    assert rows["train"][1]["spk_id"] == "011"
    assert rows["train"][0]["wav"].endswith("011c0201.wv1")
    assert float(rows["test"][0]["duration"]) == pytest.approx(0.6)


def test_wsj_shorten_without_sph2pipe_fails_with_instructions(tmp_path, monkeypatch):
    wsj = load_recipe_module("wsj", "wsj_prepare")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("SPH2PIPE", raising=False)
    root = write_wsj_tree(tmp_path / "wsj", compressed=True)
    with pytest.raises(RuntimeError, match=r"shorten-compressed SPHERE.*Install sph2pipe"):
        wsj.prepare_wsj(root, tmp_path / "out")
    assert not (tmp_path / "out" / "train.csv").exists()


def test_wsj_shorten_converted_with_sph2pipe(tmp_path, monkeypatch):
    """``sph2pipe`` itself is replaced by a stand-in that writes a WAV (libsndfile cannot decode shorten, so a real
    conversion cannot be checked here): this checks the call (``-f wav <in> <out>``) and the use of its output."""
    wsj = load_recipe_module("wsj", "wsj_prepare")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sph2pipe"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, numpy as np, soundfile as sf\n"
        "assert sys.argv[1:3] == ['-f', 'wav'], sys.argv\n"
        "assert open(sys.argv[3], 'rb').read(7) == b'NIST_1A'\n"
        "sf.write(sys.argv[4], np.zeros(12000, dtype=np.float32), 16000, format='WAV')\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = write_wsj_tree(tmp_path / "wsj", compressed=True)
    manifests = wsj.prepare_wsj(root, tmp_path / "out", num_workers=2)
    row = read_csv(manifests["valid"])[0]
    assert row["wav"] == str((tmp_path / "out/wav/13-34.1/wsj1/si_dt_20/4k0/4k0c0301.wav").resolve())
    assert float(row["duration"]) == pytest.approx(0.75)


def test_wsj_errors(tmp_path):
    wsj = load_recipe_module("wsj", "wsj_prepare")
    dot = tmp_path / "x.dot"
    dot.write_text("GOOD LINE (011c0201)\nNO ID HERE\n")
    with pytest.raises(ValueError, match=r"x.dot:2: expected"):
        wsj.parse_dot(dot)
    root = write_wsj_tree(tmp_path / "wsj", compressed=False)
    (root / "11-14.1/wsj0/si_et_20/440/440c02.dot").unlink()
    with pytest.raises(ValueError, match=r"no transcript for .*440c0201\.wv1"):
        wsj.prepare_wsj(root, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"no \.wv1 files for the train set"):
        wsj.prepare_wsj(tmp_path / "out", tmp_path / "out2")
    with pytest.raises(FileNotFoundError, match="not an executable"):
        wsj.find_sph2pipe(tmp_path / "nothing")


# ----------------------------------------------------------------------------------------------------------------
# shared data-side helpers: tokenizers, manifests, SPHERE headers
# ----------------------------------------------------------------------------------------------------------------
def test_unit_tokenizers(tmp_path):
    from hf_squareloss.speechbrain.units import UnitTokenizer

    chars = UnitTokenizer.characters("ABC'")
    assert chars.num_classes == 3 + 5  # blank, bos, eos, '|', A, B, C, '
    ids = chars.encode("AB  C'A")
    assert ids == [4, 5, 3, 6, 7, 4]
    assert chars.decode([1, *ids, 2, 0]) == "AB C'A"
    with pytest.raises(ValueError, match=r"units \['D'\]"):
        chars.encode("AD")
    chars.save(tmp_path / "units.txt")
    assert UnitTokenizer.load(tmp_path / "units.txt").units == chars.units
    phones = UnitTokenizer(["sil", "aa", "b"], "symbol")
    assert phones.encode("sil b aa") == [3, 5, 4]
    assert phones.decode([3, 5, 4, 2]) == "sil b aa"
    with pytest.raises(ValueError, match="duplicated units"):
        UnitTokenizer(["a", "a"], "symbol")
    (tmp_path / "bad.txt").write_text("A\nB\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: not a unit inventory"):
        UnitTokenizer.load(tmp_path / "bad.txt")


def test_manifests_and_sphere_headers(tmp_path):
    from hf_squareloss.speechbrain.audio import read_mono, sphere_header
    from hf_squareloss.speechbrain.manifests import read_manifest, write_manifest

    row = {"ID": "u1", "duration": 1.0, "wav": "/x.wav", "spk_id": "s", "text": "A"}
    with pytest.raises(ValueError, match="duplicated utterance ID 'u1'"):
        write_manifest(tmp_path / "m.csv", [row, row])
    assert read_manifest(write_manifest(tmp_path / "m.csv", [row]))[0]["text"] == "A"
    (tmp_path / "bad.csv").write_text("ID,wav\nu1,/x.wav\n")
    with pytest.raises(
        ValueError, match=r"bad.csv:1: manifest lacks columns \['duration', 'spk_id', 'text'\]"
    ):
        read_manifest(tmp_path / "bad.csv")

    wave = tone(0.25)
    path = write_sphere(tmp_path / "a.sph", wave)
    header = sphere_header(path)
    assert header["sample_count"] == 4000 and header["sample_coding"] == "pcm"
    assert (
        sphere_header(write_shorten_sphere(tmp_path / "b.wv1"))["sample_coding"]
        == "pcm,embedded-shorten-v2.00"
    )
    audio = read_mono(path, 16000)
    assert audio.shape == (4000,)
    assert float((audio.numpy() - wave).__abs__().max()) < 1e-4
    assert read_mono(path, 8000).shape == (2000,)  # resampled
    (tmp_path / "c.sph").write_bytes(b"RIFF0000WAVE")
    with pytest.raises(ValueError, match=r"c.sph: not a NIST SPHERE file"):
        sphere_header(tmp_path / "c.sph")
    (tmp_path / "d.sph").write_bytes(
        sphere_bytes([("sample_rate", "-i", 16000)], b"").replace(b"end_head", b"broken")
    )
    with pytest.raises(ValueError, match=r"d.sph: malformed SPHERE header line 4: 'broken'"):
        sphere_header(tmp_path / "d.sph")
    with pytest.raises(ValueError, match=r"cannot read audio .*b.wv1"):
        read_mono(tmp_path / "b.wv1", 16000)
