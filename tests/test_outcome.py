"""Unit tests for what the template makes of a clone's messages."""

from __future__ import annotations

import warnings

import pytest

from pytest_cowfork import PytestCowforkWarning, outcome


def test_tuples_pytest_checks_for_come_back_from_json() -> None:
    data = {
        "longrepr": ["/x/test_a.py", 3, "Skipped: later"],
        "location": ["test_a.py", 2, "test_a"],
        "sections": [["Captured stdout call", "hi\n"]],
        "user_properties": [["key", [1, 2]]],
        "outcome": "skipped",
    }

    restored = outcome._restore_tuples(data)

    assert restored["longrepr"] == ("/x/test_a.py", 3, "Skipped: later")
    assert restored["location"] == ("test_a.py", 2, "test_a")
    assert restored["sections"] == [("Captured stdout call", "hi\n")]
    assert restored["user_properties"] == [("key", [1, 2])]


def test_a_longrepr_that_is_text_or_a_dict_is_left_alone() -> None:
    for longrepr in ("assert 0", {"reprcrash": {}}, None):
        assert outcome._restore_tuples({"longrepr": longrepr})["longrepr"] == longrepr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("builtins:DeprecationWarning", DeprecationWarning),
        ("pytest:PytestUnknownMarkWarning", pytest.PytestUnknownMarkWarning),
        ("pytest_cowfork:PytestCowforkWarning", PytestCowforkWarning),
    ],
)
def test_a_warning_category_is_found_by_module_and_name(
    name: str, expected: type[Warning]
) -> None:
    assert outcome._find_category(name) is expected


@pytest.mark.parametrize(
    "name",
    [
        "no_such_module_anywhere:Whatever",
        "builtins:NoSuchWarning",
        "builtins:int",
        "test_x:test_function.<locals>.Local",
    ],
)
def test_an_unknown_or_odd_category_falls_back_to_user_warning(name: str) -> None:
    assert outcome._find_category(name) is UserWarning


def test_a_warning_message_is_rebuilt_with_its_place() -> None:
    message = outcome._warning_message(
        {
            "message": "careful",
            "category": "builtins:RuntimeWarning",
            "filename": "/x/test_a.py",
            "lineno": 7,
        }
    )

    assert isinstance(message, warnings.WarningMessage)
    assert isinstance(message.message, RuntimeWarning)
    assert str(message.message) == "careful"
    assert (message.category, message.filename, message.lineno) == (
        RuntimeWarning,
        "/x/test_a.py",
        7,
    )
