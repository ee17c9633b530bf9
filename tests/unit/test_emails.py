import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.properties import examples
from warmgate.domain.emails import InvalidEmail, normalize_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ada@Contoso.com", "ada@contoso.com"),
        ("  ada.lovelace+warm@mail.contoso.co.uk \n", "ada.lovelace+warm@mail.contoso.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie"),
    ],
)
def test_normalize_email_plausible_address_trimmed_and_lowercased(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ada", "plausible"),
        ("ada@", "plausible"),
        ("@contoso.com", "plausible"),
        ("ada@contoso", "plausible"),
        ("ada@@contoso.com", "plausible"),
        ("ada lovelace@contoso.com", "plausible"),
        ("ada@contoso..com", "plausible"),
        (".ada@contoso.com", "plausible"),
        ("ada@-contoso.com", "plausible"),
        ("a" * 250 + "@x.com", "longer than 254"),
    ],
)
def test_normalize_email_implausible_address_raises_naming_problem(raw: str, problem: str) -> None:
    with pytest.raises(InvalidEmail, match=problem):
        normalize_email(raw)


def test_normalize_email_non_string_raises() -> None:
    with pytest.raises(InvalidEmail, match="string"):
        normalize_email(42)


def test_normalize_email_is_idempotent() -> None:
    once = normalize_email(" Ada@Contoso.COM ")
    assert normalize_email(once) == once


# --- non-ASCII: refused before any case folding (issue 13 §2) --------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "\u212aate@contoso.com",  # KELVIN SIGN: "\u212a".lower() == "k"
        "\u212aATE@CONTOSO.COM",
        "ada@contoso.\u212a\u212a",  # folded, a valid-looking TLD "kk"
        "ad\u0430@contoso.com",  # CYRILLIC SMALL LETTER A
        "ada\uff20contoso.com",  # FULLWIDTH COMMERCIAL AT
        "\uff41da@contoso.com",  # FULLWIDTH LATIN SMALL LETTER A
        "\u0130nci@contoso.com",  # LATIN CAPITAL LETTER I WITH DOT ABOVE
        "\u017fam@contoso.com",  # LATIN SMALL LETTER LONG S (upper-cases to "S")
        "ada@contoso.com\u200b",  # ZERO WIDTH SPACE: not whitespace, so not trimmed
        "иван@пример.рф",
        "ivan@пример.рф",
    ],
)
def test_normalize_email_non_ascii_character_raises_before_case_folding(raw: str) -> None:
    with pytest.raises(InvalidEmail, match="not ASCII") as caught:
        normalize_email(raw)

    assert "xn--" in str(caught.value)  # says how to write an internationalized domain


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ivan@XN--E1AFMKFD.XN--P1AI", "ivan@xn--e1afmkfd.xn--p1ai"),  # пример.рф
        ("ana@xn--bcher-kva.example", "ana@xn--bcher-kva.example"),  # bücher.example
        ("\u00a0ada@contoso.com\u3000", "ada@contoso.com"),  # whitespace around it is trimmed
    ],
)
def test_normalize_email_punycode_domain_and_surrounding_whitespace_accepted(
    raw: str, expected: str
) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("a" * 65 + "@contoso.com", "local part is longer than 64"),
        ("a" * 5000 + "@contoso.com", "longer than 254"),
        ("ada\x00@contoso.com", "plausible"),
        ('"ada lovelace"@contoso.com', "plausible"),
    ],
)
def test_normalize_email_limits_and_ascii_junk_raise_naming_problem(raw: str, problem: str) -> None:
    with pytest.raises(InvalidEmail, match=problem):
        normalize_email(raw)


def test_normalize_email_local_part_of_exactly_64_is_accepted() -> None:
    raw = "a" * 64 + "@contoso.com"
    assert normalize_email(raw) == raw


# --- the property: only ASCII case and surrounding whitespace are ever merged ---------------

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _ascii_folded(value: str) -> str:
    return value.strip().translate(_ASCII_LOWER)


_CYRILLIC_HOMOGLYPHS = {
    "a": "\u0430",
    "c": "\u0441",
    "e": "\u0435",
    "o": "\u043e",
    "p": "\u0440",
    "x": "\u0445",
    "y": "\u0443",
}


def _look_alikes(char: str) -> list[str]:
    """Characters that a Unicode-aware normalization could merge with the ASCII `char`."""
    found = [
        candidate
        for candidate in (chr(0x212A), chr(0x212B), chr(0x0130), chr(0x0131), chr(0x017F))
        if candidate.lower() == char.lower() or candidate.upper() == char.upper()
    ]
    if "!" <= char <= "~":
        found.append(chr(ord(char) + 0xFEE0))  # the FULLWIDTH form (NFKC maps it back)
    if char in _CYRILLIC_HOMOGLYPHS:
        found.append(_CYRILLIC_HOMOGLYPHS[char])
    return found


_SURROUNDING = st.text(alphabet=" \t\r\n\u00a0\u2003\u3000", max_size=3)


@st.composite
def _variants(draw: st.DrawFn, address: str) -> str:
    """`address` with some letters' case swapped, some characters replaced by look-alikes, and
    whitespace around it: a candidate for a collision."""
    chars = list(address)
    for index in draw(st.sets(st.integers(0, len(chars) - 1), max_size=len(chars))):
        choices = [chars[index].swapcase(), *_look_alikes(chars[index])]
        chars[index] = draw(st.sampled_from(choices))
    return draw(_SURROUNDING) + "".join(chars) + draw(_SURROUNDING)


# Mostly letters that have look-alikes, so that most variants try a collision.
_addresses = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[KkSsIiAaCcEeOoPpXxYy0-9._%+-]{1,12}", fullmatch=True),
    st.from_regex(r"[KkSsIiAaCcEeOoPpXxYy0-9-]{1,12}", fullmatch=True),
    st.sampled_from(["com", "Co", "xn--p1ai", "SK", "io"]),
)


def _normalized_or_none(value: str) -> str | None:
    try:
        return normalize_email(value)
    except InvalidEmail:
        return None


@settings(max_examples=examples(500))
@given(st.data())
def test_normalize_email_equal_results_imply_ascii_case_and_whitespace_differences(
    data: st.DataObject,
) -> None:
    address = data.draw(_addresses)
    a = data.draw(_variants(address))
    b = data.draw(_variants(address))

    first, second = _normalized_or_none(a), _normalized_or_none(b)

    if first is not None and first == second:
        assert _ascii_folded(a) == _ascii_folded(b)


@settings(max_examples=examples(300))
@given(st.text(max_size=40) | _addresses.flatmap(_variants))
@example("\u212aate@contoso.com")
def test_normalize_email_result_is_the_trimmed_ascii_input_lower_cased(value: str) -> None:
    result = _normalized_or_none(value)

    if result is not None:
        assert value.strip().isascii()
        assert result == _ascii_folded(value)
