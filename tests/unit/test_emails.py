import pytest

from warmgate.emails import InvalidEmail, normalize_email


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
        normalize_email(42)  # type: ignore[arg-type]


def test_normalize_email_is_idempotent() -> None:
    once = normalize_email(" Ada@Contoso.COM ")
    assert normalize_email(once) == once
