"""Fuzzed params.yaml: the real file, mutated at random, loads to a :class:`Params` or fails with
a one-line :class:`ParamsError` that starts with the file's path, never with another exception.

Mutations (one to four, applied in turn to the file's bytes): truncation, deleting or duplicating
a line, replacing a value (random text, NaN, infinities, negative and huge numbers, lists,
mappings; three times as likely as each other kind), inserting invalid UTF-8 bytes or random
bytes, breaking a line's indentation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from featherface.errors import ParamsError
from featherface.params import Params, load_params
from tests.helpers import REPO_ROOT

ORIGINAL = (REPO_ROOT / "params.yaml").read_bytes()

NASTY_VALUES = (
    ".nan", "nan", "NaN", ".inf", "-.inf", "inf", "-inf", "1e999", "1.0e+400", "-1.0e+400",
    "-1", "-0.5", "0", "-0", "1e-3", "5E-4", "99999999999999999999999999", "1" + "0" * 400,
    "-" + "9" * 500, "0x7fffffffffffffff", "1:30:00", "2001-02-30", "2001-12-14t21:59:43.10-05:00",
    "[]", "[1, 2, 3]", "[[1], [2]]", "[.nan, -1]", "{}", "{a: 1}", "{epochs: 4}", "null", "~",
    "true", "no", "''", '"1e-3"', '"\\x00"', "&a 1", "*a", "!!binary aGVsbG8=", "!!python/none",
    "? a", "- 1", "|\n  block", ">-", "%", "@x", "`x`", "{", "[", "'", '"',
)  # fmt: skip

INVALID_UTF8 = (b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80")

KINDS = ("truncate", "delete", "duplicate", "value", "value", "value", "utf8", "indent", "bytes")


def _lines(text: bytes) -> list[bytes]:
    return text.splitlines(keepends=True) or [b""]


def _is_leaf(line: bytes) -> bool:
    """Whether ``line`` reads ``key: value`` (not a comment, not a section header)."""
    key, colon, rest = line.partition(b":")
    return bool(colon and rest.split(b"#")[0].strip()) and not key.lstrip().startswith(b"#")


@st.composite
def _mutation(draw: st.DrawFn, text: bytes) -> bytes:
    kind = draw(st.sampled_from(KINDS))
    lines = _lines(text)
    index = draw(st.integers(0, len(lines) - 1))
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "delete":
        return b"".join(lines[:index] + lines[index + 1 :])
    if kind == "duplicate":
        return b"".join(lines[: index + 1] + lines[index:])
    if kind == "value":
        leaves = [number for number, line in enumerate(lines) if _is_leaf(line)]
        if leaves:  # aim at a key's value while the file still has some
            index = draw(st.sampled_from(leaves))
        key, colon, _ = lines[index].partition(b":")
        if not colon:
            return text
        value = draw(
            st.one_of(
                st.sampled_from(NASTY_VALUES),
                st.text(max_size=20),
                st.integers(min_value=-(10**30), max_value=-1).map(str),
                st.integers(min_value=10**15, max_value=10**600).map(str),
                st.floats(allow_nan=True, allow_infinity=True).map(repr),
                st.lists(st.integers(-5, 5), max_size=4).map(str),
                st.dictionaries(st.sampled_from(["a", "epochs", "lr"]), st.integers()).map(str),
            )
        )
        encoded = value.encode("utf-8", errors="surrogatepass")
        lines[index] = key + b": " + encoded + b"   # fuzzed\n"
        return b"".join(lines)
    if kind == "utf8":
        offset = draw(st.integers(0, len(text)))
        return text[:offset] + draw(st.sampled_from(INVALID_UTF8)) + text[offset:]
    if kind == "indent":
        stripped = lines[index].lstrip(b" ")
        indent = draw(st.sampled_from([b"", b" ", b"   ", b"    ", b"\t", b"      "]))
        lines[index] = indent + stripped
        return b"".join(lines)
    offset = draw(st.integers(0, len(text)))  # random bytes anywhere
    return text[:offset] + draw(st.binary(min_size=1, max_size=8)) + text[offset:]


@st.composite
def _mutated_file(draw: st.DrawFn) -> bytes:
    text = ORIGINAL
    for _ in range(draw(st.integers(1, 4))):
        text = draw(_mutation(text))
    return text


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=_mutated_file())
def test_mutated_params_yaml_loads_or_fails_with_a_params_error(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    try:
        params = load_params(path)
    except ParamsError as error:
        message = str(error)
        assert message.startswith(f"{path}"), message
        assert len(message.splitlines()) == 1, message
        event(f"ParamsError: {_kind(message)}")
    else:
        assert isinstance(params, Params)
        event("loaded")


def _kind(message: str) -> str:
    """The sort of a ParamsError message, for the statistics of the fuzz run."""
    for kind in ("not valid UTF-8", "not valid YAML", "unknown key", "must be a mapping"):
        if kind in message:
            return kind
    if "must be a finite number" in message:
        return "not finite"
    if " must be int" in message or " must be float" in message or " must be str" in message:
        return "wrong type"
    return "out of range or other check"


def test_the_unmutated_file_loads() -> None:
    assert isinstance(load_params(REPO_ROOT / "params.yaml"), Params)


@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_anywhere_is_a_params_error(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / "params.yaml"
    for offset in (0, len(ORIGINAL) // 2, len(ORIGINAL)):
        path.write_bytes(ORIGINAL[:offset] + bad + ORIGINAL[offset:])
        with pytest.raises(ParamsError, match="not valid UTF-8") as caught:
            load_params(path)
        message = str(caught.value)
        assert message.startswith(f"{path}:") and len(message.splitlines()) == 1
