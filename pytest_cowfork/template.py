"""Run items in clones of this process and report their results (template).

The :class:`Template` plugin implements pytest's per-item protocol: set up
the item's wide fixtures here, fork a clone for the rest, and turn what the
clone sends back into the same hook calls an in-process run makes. With
more than one job, the protocol returns as soon as the clone is forked, so
the next item can start while earlier clones run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from _pytest.outcomes import OutcomeException
from _pytest.runner import CallInfo, runtestprotocol
from _pytest.warnings import catch_warnings_for_item

from pytest_cowfork import reruns, timeout_timer, wire
from pytest_cowfork.clone import current_id
from pytest_cowfork.coverage import TemplateCoverage
from pytest_cowfork.fork import CaptureFiles, ForkedClone, fork_clone
from pytest_cowfork.hazards import Hazards, PytestCowforkWarning
from pytest_cowfork.hugepages import HugePages
from pytest_cowfork.memory import CostLog
from pytest_cowfork.outcome import Job
from pytest_cowfork.scheduler import (
    Running,
    Scheduler,
    relay_to_terminal,
    selector_fds,
)
from pytest_cowfork.settings import ItemChoice, Settings, choose
from pytest_cowfork.terminal import Lender, borrow
from pytest_cowfork.warmup import (
    is_warm,
    warm,
    wide_params,
    would_skip,
    would_tear_down,
)

#: Why an item cannot run in a clone; its setup fails with this.
refusal_key = pytest.StashKey[str]()


@dataclasses.dataclass
class Stats:
    """Counts for the terminal summary."""

    clones: int = 0
    crashed: int = 0
    timed_out: int = 0
    costs: CostLog = dataclasses.field(default_factory=CostLog)


class Template:
    """The plugin object that forks clones and reports for them."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self._config = config
        self.settings = settings
        self._scheduler = Scheduler(relay=relay_to_terminal)
        self._jobs: dict[int, Job] = {}
        self._free_slots = list(range(settings.jobs))
        #: Files that back clones' captured output: all, and those free.
        self._all_capture: list[CaptureFiles] = []
        self._capture_pool: list[CaptureFiles] = []
        #: A clone forked ahead for the next item: the item, the clone, and
        #: its time limit.
        self._standby: tuple[pytest.Item, ForkedClone, float | None] | None = None
        #: The standby, once started before the main loop reached its item.
        self._early: tuple[pytest.Item, Running] | None = None
        self._forked_params: tuple[tuple[str, int], ...] | None = None
        self._hazards = Hazards(
            config,
            harmless=lambda thread: reruns.is_status_server(config, thread),
            own_fds=lambda: [*selector_fds(), *reruns.status_fds(config)],
        )
        #: The warning filters outside any item, which pytest starts each
        #: item's filters from.
        self._base_filters: list[Any] = []
        self._owner: Job | None = None
        #: Seconds the template spent setting up the item it forks for.
        self._warm_time = 0.0
        self.stats = Stats()
        self.hugepages = HugePages("off" if settings.disabled else settings.hugepages)
        #: Gathers what clones measure, when coverage.py measures this run.
        self.coverage = TemplateCoverage()
        #: Under xdist, each worker's clones take their own range of ids.
        self._first_clone_id = _xdist_worker_number(config) * settings.jobs
        self._terminal = Lender(config, _debugger_refusal(config, settings))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        """Run ``item`` in a clone, unless it is to run in the template."""
        choice = self._clone_choice(item)
        try:
            if choice is not None:
                if not self._rerun_in_clones(item, nextitem, choice.timeout):
                    self._run_in_clone(item, nextitem, choice.timeout)
                return True
            # The item runs here, in the template: no clone may still be
            # running from state it could change.
            self._discard_standby()
            self._drain()
            self._hazards.changed = True
        except KeyboardInterrupt:
            self._discard_standby()
            self._scheduler.interrupt_all()
            raise
        except BaseException:
            self._discard_standby()
            self._scheduler.kill_all()
            raise
        return None

    def forks(self, item: pytest.Item) -> bool:
        """Return True if ``item`` is to run in a clone."""
        return self._clone_choice(item) is not None

    def _clone_choice(self, item: pytest.Item) -> ItemChoice | None:
        """Return how ``item`` runs in a clone, or None if it runs here.

        A misused marker is noted on the item, whose setup then fails.
        """
        try:
            choice = choose(item, self.settings)
        except ValueError as exc:
            item.stash[refusal_key] = str(exc)
            return None
        return choice if choice.fork and not would_skip(item) else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Fail an item that cannot run in a clone; in a clone, announce it.

        The announcement runs inside the setup phase, so a plugin that
        fails to prepare the clone fails the item's setup.
        """
        problem = item.stash.get(refusal_key, None)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        clone_id = current_id()
        if clone_id is not None:
            item.config.hook.pytest_cowfork_clone_started(item=item, clone_id=clone_id)

    @pytest.hookimpl
    def pytest_enter_pdb(self) -> None:
        """In a clone, borrow the terminal for the debugger, or fail the test."""
        __tracebackhide__ = True
        borrow()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Iterator[None]:
        """Make sure no clone outlives the test loop, however it ends."""
        self._base_filters = list(warnings.filters)
        try:
            return (yield)
        finally:
            # Normally the last item drained every clone; after -x or
            # Ctrl-C, the clones still running are not waited for.
            self._discard_standby()
            self._scheduler.kill_all()
            self._terminal.reclaim()
            for files in self._all_capture:
                files.close()
            self._all_capture.clear()
            self._capture_pool.clear()

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(self) -> None:
        """Note that the template set something up the hazards may not know."""
        if current_id() is None:
            self._hazards.changed = True

    # The steps of one item's run, in order.

    def _run_in_clone(
        self, item: pytest.Item, nextitem: pytest.Item | None, timeout: float | None
    ) -> None:
        """Run ``item`` in a clone, or here if its template setup failed."""
        live = self.settings.jobs == 1
        if live:
            item.ihook.pytest_runtest_logstart(
                nodeid=item.nodeid, location=item.location
            )
        self._warm_time = 0.0
        clone = self._take_early(item)
        if clone is None:
            handle = self._take_standby(item)
            if handle is not None:
                handle.start()
            else:
                handle = self._fork_for(item, nextitem, started=live)
                if handle is None:
                    return
            clone = self._watch(handle, timeout)
        job = self._new_job(item, nextitem, clone, live)
        self._jobs[clone.pid] = job
        if live:
            if nextitem is not None:
                self._prepare_standby(nextitem)
            self._finish_live(job)
            return

        session = item.session
        job.owns_teardown = (
            nextitem is None
            or would_tear_down(session, nextitem)
            or bool(session.shouldfail or session.shouldstop)
        )
        if job.owns_teardown:
            self._drain()

    def _watch(self, handle: ForkedClone, timeout: float | None) -> Running:
        """Have the event loop watch a clone that has started its item."""
        clone = Running(handle=handle, timeout=timeout)
        self._scheduler.add(clone)
        return clone

    def _new_job(
        self,
        item: pytest.Item,
        nextitem: pytest.Item | None,
        clone: Running,
        live: bool,
    ) -> Job:
        """Return the job of ``item``'s clone, counted for the summary."""
        self.stats.clones += 1
        return Job(
            item=item,
            nextitem=nextitem,
            clone=clone,
            live=live,
            warm_time=self._warm_time,
        )

    def _fork_for(
        self, item: pytest.Item, nextitem: pytest.Item | None, started: bool
    ) -> ForkedClone | None:
        """Warm the template for ``item`` and fork its clone.

        Return None if the item had to run here instead.
        """
        params = wide_params(item, self.settings.scope)
        if params != self._forked_params:
            self._drain()
        while not self._free_slots:
            self._poll()
        session = item.session
        if session.shouldfail or session.shouldstop:
            # A clone that ended while this item waited stopped the run
            # (-x, --maxfail): like pytest, set up and run nothing more.
            return None
        handle = self._warm_and_fork(item, params)
        if handle is None:
            self._run_here(item, nextitem, started)
        return handle

    def _warm_and_fork(
        self, item: pytest.Item, params: tuple[tuple[str, int], ...]
    ) -> ForkedClone | None:
        """Warm the template for ``item`` and fork; None if it must run here."""
        template_top = self._warm(item)
        if template_top is not None:
            try:
                self._hazards.check(item)
            except PytestCowforkWarning as warning:
                # This run turns warnings into errors: the item fails its setup.
                item.stash[refusal_key] = str(warning)
        if template_top is None or refusal_key in item.stash:
            return None
        self._forked_params = params
        slot = min(self._free_slots)
        self._free_slots.remove(slot)
        self.hugepages.before_fork()
        return fork_clone(
            item,
            slot,
            template_top,
            self._spare_capture(),
            clone_id=self._first_clone_id + slot,
            measure_memory=self.settings.memory,
            debugger_refusal=self._terminal.refusal,
            cov=self.coverage.before_fork(),
        )

    def _rerun_in_clones(
        self, item: pytest.Item, nextitem: pytest.Item | None, timeout: float | None
    ) -> bool:
        """Let pytest-rerunfailures run ``item``, each attempt in a clone.

        Return False if it does not rerun ``item``.
        """
        module = reruns.find(self._config)
        if module is None:
            refused = reruns.refusal(item)
            if refused is not None:
                item.stash[refusal_key] = refused
            return False
        handled = reruns.run_protocol(
            module, item, nextitem, lambda: self._run_attempt(item, nextitem, timeout)
        )
        if handled and would_tear_down(item.session, nextitem):
            # The last attempt held the wide fixtures back for a rerun that
            # did not come (--max-suite-reruns ran out).
            self._tear_down_late(item, nextitem)
        return handled

    def _run_attempt(
        self, item: pytest.Item, nextitem: pytest.Item | None, timeout: float | None
    ) -> list[pytest.TestReport]:
        """Run one attempt of ``item`` in a clone; return its reports, unlogged."""
        self._discard_standby()
        self._drain()
        self._warm_time = 0.0
        handle = self._warm_and_fork(item, wide_params(item, self.settings.scope))
        if handle is None:
            with timeout_timer.running(item):
                return runtestprotocol(item, nextitem=nextitem, log=False)
        clone = self._watch(handle, timeout)
        job = self._new_job(item, nextitem, clone, live=False)
        try:
            while clone.pid in self._scheduler.running:
                self._scheduler.poll()
        finally:
            self._free_slots.append(handle.slot)
            self._capture_pool.append(handle.capture)
        self._take_in(job)
        job.decode()
        stop = job.stop_request()
        if stop is not None:
            raise stop
        reruns.adopt_state(item, job.rerun_state(), job.reports)
        self._fail_unfinished(job)
        if not reruns.expects_rerun(item):
            self._tear_down_wide(job)
        return job.reports

    def _tear_down_late(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Tear down template state after ``item``'s reports are logged."""
        call = self._tear_down_template(item, nextitem)
        if call.excinfo is not None:
            report = item.ihook.pytest_runtest_makereport(item=item, call=call)
            item.ihook.pytest_runtest_logreport(report=report)

    def _tear_down_template(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> CallInfo[None]:
        """Tear down what ``nextitem`` does not need, capturing its output."""
        with self._capture("teardown", item):
            return CallInfo.from_call(
                lambda: item.session._setupstate.teardown_exact(nextitem),
                when="teardown",
                reraise=(pytest.exit.Exception, KeyboardInterrupt),
            )

    def _warm(self, item: pytest.Item) -> pytest.Collector | None:
        """Set up ``item``'s share of the template; None if that failed.

        pytest caches the failure, so the item's own setup raises it again
        when it runs here, and reports it exactly as without cowfork.
        """
        started = time.perf_counter()
        try:
            with self._capture("setup", item):
                return warm(item, self.settings.scope)
        except (pytest.exit.Exception, KeyboardInterrupt):
            raise
        except (Exception, OutcomeException):
            if hasattr(item, "_initrequest"):
                # pytest 8.0 leaves the request unusable after a failure.
                item._initrequest()
            return None
        finally:
            # Part of the item's setup, as pytest would time it.
            self._warm_time = time.perf_counter() - started

    def _prepare_standby(self, nextitem: pytest.Item) -> None:
        """Fork ``nextitem``'s clone now, to wait while the current one runs.

        Only when the template already holds all ``nextitem`` needs, so
        nothing runs here earlier than it would without a standby, and no
        thread would make the fork risky.
        """
        if self._hazards.other_threads() or self._hazards.changed:
            # The checks run at the next ordinary fork.
            return
        choice = self._clone_choice(nextitem)
        scope = self.settings.scope
        if (
            choice is None
            or timeout_timer.may_time(nextitem)
            or would_tear_down(nextitem.session, nextitem)
            or wide_params(nextitem, scope) != self._forked_params
            or not is_warm(nextitem, scope)
        ):
            return
        template_top = list(nextitem.session._setupstate.stack)[-1]
        with self._warning_filters(nextitem):
            handle = fork_clone(
                nextitem,
                0,  # Standbys serve one job, whose only slot is 0.
                template_top,  # type: ignore[arg-type]
                self._spare_capture(),
                standby=True,
                clone_id=self._first_clone_id,
                measure_memory=self.settings.memory,
                debugger_refusal=self._terminal.refusal,
                cov=self.coverage.before_fork(),
            )
        self._standby = (nextitem, handle, choice.timeout)

    def _take_standby(self, item: pytest.Item) -> ForkedClone | None:
        """Return the standby clone forked for ``item``, if there is one."""
        if self._standby is None:
            return None
        if self._standby[0] is not item:
            self._discard_standby()
            return None
        handle = self._standby[1]
        self._standby = None
        self._free_slots.remove(handle.slot)
        return handle

    def _take_early(self, item: pytest.Item) -> Running | None:
        """Return the clone already started for ``item``, if there is one."""
        if self._early is None or self._early[0] is not item:
            self._discard_standby()
            return None
        clone = self._early[1]
        self._early = None
        return clone

    def _discard_standby(self) -> None:
        """Kill the clones forked or started ahead for an item not run next."""
        if self._standby is not None:
            handle = self._standby[1]
            self._standby = None
            handle.discard()
            self._scheduler.abandon(handle)
            self._capture_pool.append(handle.capture)
        if self._early is not None:
            clone = self._early[1]
            self._early = None
            self._scheduler.kill(clone)
            self._free_slots.append(clone.handle.slot)
            self._capture_pool.append(clone.handle.capture)

    def _finish_live(self, job: Job) -> None:
        """Wait for the only running clone, logging its reports as they come.

        When it passed, the next item's standby starts before this item's
        reports are logged: logging makes the template copy pages it
        shares with clones, and that work then overlaps the next test.
        """
        clone = job.clone
        try:
            while clone.pid in self._scheduler.running:
                self._scheduler.poll()
                self._log(job, final=False)
                self._lend_terminal(job)
        finally:
            # Before the next clone starts, which may ask for it too.
            self._terminal.reclaim()
        del self._jobs[clone.pid]
        self._free_slots.append(clone.handle.slot)
        job.owns_teardown = True
        try:
            self._start_next_early(job)
            self._complete(job)
        finally:
            self._capture_pool.append(clone.handle.capture)
        owner, self._owner = self._owner, None
        if owner is not None:
            self._tear_down_wide(owner)
            self._log(owner, final=True)

    def _lend_terminal(self, job: Job) -> None:
        """Answer the clone's request for the terminal, if it made one.

        Called once the reports that arrived before the request are logged,
        so they reach the terminal before anything the debugger writes.
        """
        clone = job.clone
        handle = clone.handle
        if handle.answers is None or job.terminal_answered:
            return
        if not any(kind is wire.Kind.TERMINAL for kind, _ in clone.messages):
            return
        job.terminal_answered = True
        # A clone past its time limit is about to be killed.
        lent = not clone.timed_out and self._terminal.lend(clone.pid)
        if lent:
            # A debugger waits for its user, however long that takes.
            clone.timeout = None
        handle.answer(lent)

    def _start_next_early(self, job: Job) -> None:
        """Start the standby now if nothing in ``job`` can stop the run.

        A failure may stop the session (-x, --maxfail), and a test that did
        not finish gets crash reports: in both cases the next test waits
        until those reports are logged.
        """
        if self._standby is None or job.stop_request() is not None:
            return
        job.decode()
        if job.missing_phase() is not None or any(r.failed for r in job.reports):
            return
        item, handle, timeout = self._standby
        self._standby = None
        self._free_slots.remove(handle.slot)
        handle.start()
        self._early = (item, self._watch(handle, timeout))

    def _run_here(
        self, item: pytest.Item, nextitem: pytest.Item | None, started: bool
    ) -> None:
        """Run ``item`` in the template after all, as pytest's runner would."""
        self._discard_standby()
        self._drain()
        self._hazards.changed = True
        if not started:
            item.ihook.pytest_runtest_logstart(
                nodeid=item.nodeid, location=item.location
            )
        with timeout_timer.running(item):
            runtestprotocol(item, nextitem=nextitem)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def _drain(self) -> None:
        """Wait for every running clone, then finish the teardown owner."""
        while self._scheduler.running:
            self._poll()
        owner, self._owner = self._owner, None
        if owner is not None:
            self._tear_down_wide(owner)
            self._log(owner, final=True)

    def _poll(self) -> None:
        ended = self._scheduler.poll()
        for job in self._jobs.values():
            if job.live:
                self._log(job, final=False)
        for clone in ended:
            job = self._jobs.pop(clone.pid)
            try:
                self._complete(job)
            finally:
                self._free_slots.append(clone.handle.slot)
                self._capture_pool.append(clone.handle.capture)

    def _complete(self, job: Job) -> None:
        """Take in the last of a clone's messages and log or hold its reports."""
        self._take_in(job)
        job.decode()
        stop = job.stop_request()
        if stop is not None:
            self._log(job, final=True, finish=False)
            raise stop
        self._fail_unfinished(job)
        if job.owns_teardown:
            self._owner = job
        else:
            self._log(job, final=True)

    def _fail_unfinished(self, job: Job) -> None:
        """Add failed reports for the phases ``job``'s clone did not report."""
        missing = job.missing_phase()
        if missing is None:
            return
        # The crash reports pass through pytest-rerunfailures' hooks.
        reruns.ensure_state(job.item, job.rerun_state(), job.reports)
        ending = job.add_crash_reports(missing)
        self.stats.crashed += ending.timeout is None
        self.stats.timed_out += ending.timeout is not None

    def _take_in(self, job: Job) -> None:
        """Pass on what an ended clone measured: its costs and its coverage."""
        job.report_finished()
        self.coverage.receive(job.coverage_payloads())
        self.stats.costs.add(
            job.item.nodeid, job.clone.handle.fork_time, job.private_dirty()
        )

    def _tear_down_wide(self, job: Job) -> None:
        """Tear down the template state ``job``'s item was the last to use."""
        item, session = job.item, job.item.session
        nextitem = job.nextitem
        if session.shouldfail or session.shouldstop:
            # As pytest does: the last item tears everything down, so its
            # teardown report carries the errors.
            nextitem = None
        if not would_tear_down(session, nextitem):
            return
        self._discard_standby()
        before = len(item._report_sections)
        call = self._tear_down_template(item, nextitem)
        sections = [
            (f"Captured {key} {when}", content)
            for when, key, content in item._report_sections[before:]
        ]
        report = job.reports[-1]
        report.sections = [*report.sections, *sections]
        if call.excinfo is None:
            report.duration += call.duration
            return
        # The report passes through pytest-rerunfailures' hooks.
        reruns.ensure_state(item, job.rerun_state(), job.reports)
        failed: pytest.TestReport = item.ihook.pytest_runtest_makereport(
            item=item, call=call
        )
        if report.passed:
            failed.sections = report.sections
            failed.duration += report.duration
            job.reports[-1] = failed
        else:
            report.sections.append(("template teardown error", str(failed.longrepr)))

    def _log(self, job: Job, final: bool, finish: bool = True) -> None:
        """Log the reports not logged yet; the teardown one only if final."""
        job.decode()
        item = job.item
        if job.logged == 0 and not job.live and job.reports:
            item.ihook.pytest_runtest_logstart(
                nodeid=item.nodeid, location=item.location
            )
        pending = job.reports[job.logged :]
        if not final:
            pending = [report for report in pending if report.when != "teardown"]
        for report in pending:
            item.ihook.pytest_runtest_logreport(report=report)
        job.logged += len(pending)
        if final and finish:
            item.ihook.pytest_runtest_logfinish(
                nodeid=item.nodeid, location=item.location
            )
            job.record_warnings()

    @contextlib.contextmanager
    def _warning_filters(self, item: pytest.Item) -> Iterator[None]:
        """Give ``item``'s warning filters to a clone forked inside this block.

        A standby is forked while another item's filters are in force; it
        must have its own, as pytest sets them around each item's protocol.
        """
        if not self._config.pluginmanager.has_plugin("warnings"):
            yield
            return
        with warnings.catch_warnings():
            # pytest builds each item's filters on top of these.
            warnings.filters = list(self._base_filters)
            with catch_warnings_for_item(
                self._config, item.ihook, when="runtest", item=item
            ):
                yield

    @contextlib.contextmanager
    def _capture(self, when: str, item: pytest.Item) -> Iterator[None]:
        """Capture template-side output into ``item``'s report sections."""
        capman = self._config.pluginmanager.getplugin("capturemanager")
        if capman is None:
            yield
            return
        with capman.item_capture(when, item):
            yield

    def _spare_capture(self) -> CaptureFiles:
        if not self._capture_pool:
            files = CaptureFiles.create()
            self._all_capture.append(files)
            return files
        return self._capture_pool.pop()


def _debugger_refusal(config: pytest.Config, settings: Settings) -> str | None:
    """Return why a debugger may not start in this run's clones, or None."""
    if getattr(config, "workerinput", None) is not None:
        return (
            "this test started a debugger, which needs the terminal, and a clone "
            "under pytest-xdist has none: run the test again without -n, or "
            "with --no-cowfork"
        )
    if settings.jobs > 1:
        return (
            "this test started a debugger, which needs the terminal, and a clone "
            f"gets it only with --cowfork-jobs 1 (this run has {settings.jobs}): "
            "run the test again with --cowfork-jobs 1, or with --no-cowfork"
        )
    return None


def _xdist_worker_number(config: pytest.Config) -> int:
    """Return N for the xdist worker gwN, or 0 outside xdist."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return 0
    return int(str(workerinput.get("workerid", "gw0")).lstrip("gw") or 0)
