"""Moving a large template onto huge pages before it forks."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import INNER_TIMEOUT, needs_fork

from pytest_cowfork import hugepages
from pytest_cowfork.hugepages import THRESHOLD, HugePages

MIB = 1024 * 1024
can_collapse = pytest.mark.skipif(
    hugepages.probe() is not None,
    reason=f"this kernel cannot collapse memory: {hugepages.probe()}",
)


class _Kernel:
    """Stands in for the template's size and the kernel's collapse."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refusal: str | None) -> None:
        self.size = 0
        self.collapses = 0
        self.probes = 0
        monkeypatch.setattr(hugepages, "peak_resident", lambda: self.size)
        monkeypatch.setattr(hugepages, "collapse", self._collapse)
        monkeypatch.setattr(hugepages, "probe", self._probe)
        self._refusal = refusal

    def _collapse(self) -> int:
        self.collapses += 1
        return self.size

    def _probe(self) -> str | None:
        self.probes += 1
        return self._refusal


def test_auto_collapses_once_the_template_is_large_and_again_when_it_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = _Kernel(monkeypatch, refusal=None)
    pages = HugePages("auto")

    kernel.size = THRESHOLD - MIB
    pages.before_fork()
    assert (kernel.collapses, kernel.probes) == (0, 0)

    kernel.size = THRESHOLD
    pages.before_fork()
    pages.before_fork()
    assert kernel.collapses == 1

    kernel.size = 2 * THRESHOLD - MIB
    pages.before_fork()
    assert kernel.collapses == 1

    kernel.size = 2 * THRESHOLD
    pages.before_fork()
    assert kernel.collapses == 2
    assert pages.collapsed == 3 * THRESHOLD
    assert kernel.probes == 1


def test_on_collapses_at_the_first_fork_whatever_the_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = _Kernel(monkeypatch, refusal=None)
    kernel.size = 30 * MIB
    pages = HugePages("on")

    pages.before_fork()
    pages.before_fork()

    assert kernel.collapses == 1


def test_off_never_asks_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = _Kernel(monkeypatch, refusal=None)
    kernel.size = 10 * THRESHOLD
    pages = HugePages("off")

    pages.before_fork()

    assert (kernel.collapses, kernel.probes) == (0, 0)
    assert pages.refusal() is None


def test_a_refusing_kernel_is_asked_once_and_nothing_is_collapsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = _Kernel(monkeypatch, refusal="the kernel refused MADV_COLLAPSE (EINVAL)")
    kernel.size = 10 * THRESHOLD
    pages = HugePages("auto")

    pages.before_fork()
    pages.before_fork()

    assert (kernel.collapses, kernel.probes) == (0, 1)
    assert pages.known_refusal() == "the kernel refused MADV_COLLAPSE (EINVAL)"


@can_collapse
def test_collapse_moves_anonymous_memory_onto_huge_pages() -> None:
    held = bytearray(64 * MIB)
    for offset in range(0, len(held), 4096):
        held[offset] = 1

    moved = hugepages.collapse()

    assert moved >= 32 * MIB
    assert _anon_huge_pages() >= 32 * MIB
    del held


@can_collapse
@needs_fork
def test_on_moves_the_template_onto_huge_pages_and_tests_still_pass(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def table():
            return {i: str(i) for i in range(200_000)}

        @pytest.mark.parametrize("key", [1, 2, 3])
        def test_reads(table, key):
            assert table[key] == str(key)
            table.clear()
        """
    )

    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-hugepages=on", timeout=INNER_TIMEOUT
    )

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["cowfork: * MiB of the template moved onto huge pages in *.* s"]
    )
    result.stdout.no_fnmatch_line("cowfork: 0 MiB*")


@needs_fork
def test_off_moves_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")

    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-hugepages=off", timeout=INNER_TIMEOUT
    )

    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*huge pages*")


@needs_fork
def test_a_refusal_is_said_once_in_the_header_and_the_run_goes_on(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        from pytest_cowfork import hugepages

        hugepages.probe = lambda: "the kernel refused MADV_COLLAPSE (EINVAL)"
        """
    )
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass")

    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-hugepages=on", timeout=INNER_TIMEOUT
    )

    result.assert_outcomes(passed=2)
    expected = (
        "cowfork: no huge pages, forks copy every page table: "
        "the kernel refused MADV_COLLAPSE (EINVAL)"
    )
    assert result.stdout.lines.count(expected) == 1


@needs_fork
def test_a_refusal_in_a_run_of_marked_tests_is_said_in_the_summary(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        from pytest_cowfork import hugepages

        hugepages.probe = lambda: "the kernel refused MADV_COLLAPSE (EPERM)"
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.cowfork
        def test_a():
            pass
        """
    )

    result = pytester.runpytest_subprocess(
        "--cowfork-hugepages=on", timeout=INNER_TIMEOUT
    )

    result.assert_outcomes(passed=1)
    expected = (
        "cowfork: no huge pages, forks copy every page table: "
        "the kernel refused MADV_COLLAPSE (EPERM)"
    )
    assert result.stdout.lines.count(expected) == 1


def _anon_huge_pages() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1]) * 1024
    return 0
