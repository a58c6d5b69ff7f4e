"""The quick start's training runs: what each one needs, how one trains, and several at once on separate cores.

Every run trains with the recipe's ``threads`` torch threads, whatever the machine's core count: a run's
numbers depend on its thread count (the kernels split their sums by thread), not on what runs beside it. On a
machine with spare cores, runs whose inputs are ready train side by side, each in its own process (``jobs``).
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

from distill.answer_store import MANIFEST, RECORDING
from distill.quickstart_schedule import StageSchedule

if TYPE_CHECKING:
    from distill.quickstart_plan import QuickstartPlan

# The runs on the longest path. They train at normal priority; the others, trained beside them, yield the CPU to
# them where the cores are oversubscribed (the distilled student's teachers answer in a thread of their own).
# Priority changes when a run's steps happen, never what they compute.
CRITICAL_RUNS = ("pose_teacher", "joint_student_kd")
YIELDING_NICENESS = 19
# The segmentation teacher's answers to the distilled student's batches, recorded while the pose teacher still trains
# (a core is idle then), so that the distilled student runs only its pose teacher (:mod:`distill.answer_store`).
ANSWERS_RUN = "seg_teacher_answers"
# Launch order among the runs that are ready: each of CRITICAL_RUNS before the runs that become ready with it.
PRIORITY = ("pose_teacher", "seg_teacher", ANSWERS_RUN, "joint_student_kd", "joint_student_gt", "pose_student_gt",
            "seg_student_gt")
# The file a finished run leaves (the others: best.pt).
RESULT_FILE = {"joint_student_gt": "student.pt", "joint_student_kd": "student.pt", ANSWERS_RUN: MANIFEST}
OUTPUT_LOG = "output.log"  # a run's console output when it trains in its own process
# (run name, plan, OUT) -> the run's training function and its arguments but the directory, resume and schedule
# (:func:`distill.quickstart.run_settings`); a module-level function, so that a spawned process can receive it.
RunSettings = Callable[[str, "QuickstartPlan", Path], Tuple[Callable[..., Any], Dict[str, Any]]]


def result_path(out: Path, name: str) -> Path:
    """The checkpoint a finished run leaves: ``OUT/runs/<name>/best.pt`` (``student.pt`` for joint students)."""
    return out / "runs" / name / RESULT_FILE.get(name, "best.pt")


def records_answers(plan: "QuickstartPlan", jobs: int) -> bool:
    """Whether the quick start records the segmentation teacher's answers ahead of the distilled student
    (:data:`ANSWERS_RUN`): where runs train side by side (``jobs`` > 1), so that a core is free for it, and the
    distilled student would run its teachers online (no teacher cache)."""
    return jobs > 1 and not plan.teacher_cache


def run_needs(plan: "QuickstartPlan", record: bool = False) -> Dict[str, Tuple[str, ...]]:
    """The runs each run of ``plan`` reads: the joint students start from the pose teacher (``student_init``),
    and the distilled one learns from both teachers (and, where ``record``, from :data:`ANSWERS_RUN`, which reads
    the segmentation teacher)."""
    init = ("pose_teacher",) if plan.student_init == "pose_teacher" else ()
    needs: Dict[str, Tuple[str, ...]] = {name: () for name in plan.runs}
    needs["joint_student_gt"] = init
    needs["joint_student_kd"] = tuple(dict.fromkeys(init + ("pose_teacher", "seg_teacher")))
    if record:
        needs[ANSWERS_RUN] = ("seg_teacher",)
        needs["joint_student_kd"] += (ANSWERS_RUN,)
    return needs


def available_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs(threads: int) -> int:
    """As many runs at once as the cores hold at ``threads`` each (at least one)."""
    return max(1, available_cores() // threads)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Runs the block with ``threads`` intra-op threads, then restores the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_run(name: str, plan: "QuickstartPlan", out: Path, schedule: StageSchedule, settings: RunSettings) -> Path:
    """Trains run ``name`` of ``plan`` (as ``settings`` sets it up) into ``OUT/runs/<name>/`` for ``schedule``,
    resuming from what an interrupted one left (its ``last.pt``, or a recording in progress); returns its result
    file."""
    train, kwargs = settings(name, plan, out)
    directory = out / "runs" / name
    resume = any((directory / left).is_file() for left in ("last.pt", RECORDING))
    with torch_threads(plan.threads):
        train(directory, resume=resume, epochs=schedule.epochs,
              steps_per_epoch=schedule.steps_per_epoch, val_every=schedule.val_every, **kwargs)
    return result_path(out, name)


def _train_in_child(name: str, plan: "QuickstartPlan", out: Path, schedule: StageSchedule,
                    settings: RunSettings) -> None:
    """A child process's body: the run's console output (C libraries' too) goes to its ``output.log``."""
    log = out / "runs" / name / OUTPUT_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", buffering=1) as stream:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        if name not in CRITICAL_RUNS and hasattr(os, "nice"):  # os.nice: POSIX only
            niceness = os.nice(YIELDING_NICENESS)
            print(f"quick start: {name} trains at niceness {niceness}, yielding the CPU to {', '.join(CRITICAL_RUNS)}")
        train_run(name, plan, out, schedule, settings)


@dataclass
class _Running:
    process: multiprocessing.process.BaseProcess
    started: float


def train_runs(plan: "QuickstartPlan", out: Path, schedules: Mapping[str, StageSchedule], settings: RunSettings,
               jobs: int = 1, announce: Callable[[str], None] = print) -> Dict[str, Path]:
    """Trains every run of ``plan`` whose result is missing, up to ``jobs`` at once, each as soon as the runs it
    needs are done; returns every run's result checkpoint. With more than one job, the segmentation teacher's
    answers to the distilled student's batches are recorded beside the pose teacher (:func:`records_answers`) and
    removed once that student is trained.

    With ``jobs`` 1 the runs train one after another in this process. With more, each trains in a process of
    its own (spawned, its console output in ``OUT/runs/<name>/output.log``); when one fails, the others are
    stopped (each resumes from its last checkpoint when the quick start is run again) and the error names the
    failed run and its log.
    """
    if jobs < 1:
        raise ValueError(f"jobs (--jobs) must be >= 1, got {jobs}")
    record = records_answers(plan, jobs)
    needs = run_needs(plan, record)
    schedules = {**schedules, ANSWERS_RUN: schedules["joint_student_kd"]} if record else schedules
    order = [name for name in PRIORITY if name in needs]
    done = {name for name in order if result_path(out, name).is_file()}
    if result_path(out, "joint_student_kd").is_file():
        done.add(ANSWERS_RUN)  # read by nothing that is left to train
    todo = [name for name in order if name not in done]

    def describe(name: str) -> str:
        s = schedules[name]
        steps = f"{s.epochs * s.steps_per_epoch} steps ({s.epochs} x {s.steps_per_epoch})"
        return f"{name}, the batches of joint_student_kd's {steps}" if name == ANSWERS_RUN else f"{name}, {steps}"

    if jobs == 1:
        for name in todo:  # PRIORITY lists every run after the runs it needs
            announce(f"quick start: {describe(name)}")
            train_run(name, plan, out, schedules[name], settings)
    elif todo:
        _train_side_by_side(plan, out, schedules, settings, todo, needs, done, jobs, describe, announce)
    if result_path(out, "joint_student_kd").is_file():
        # The recorded answers served the distilled student alone: they leave once it is trained (0.6 MB a step).
        shutil.rmtree(out / "runs" / ANSWERS_RUN, ignore_errors=True)
    return {name: result_path(out, name) for name in order if name != ANSWERS_RUN}


def _train_side_by_side(plan: "QuickstartPlan", out: Path, schedules: Mapping[str, StageSchedule],
                        settings: RunSettings, todo: List[str], needs: Mapping[str, Sequence[str]], done: set,
                        jobs: int, describe: Callable[[str], str], announce: Callable[[str], None]) -> None:
    context = multiprocessing.get_context("spawn")  # a fork of a process with OpenMP threads can hang
    running: Dict[str, _Running] = {}
    try:
        while todo or running:
            for name in [n for n in todo if set(needs[n]) <= done][: jobs - len(running)]:
                process = context.Process(target=_train_in_child, args=(name, plan, out, schedules[name], settings),
                                              name=name)
                process.start()
                running[name] = _Running(process, time.monotonic())
                todo.remove(name)
                announce(f"quick start: {describe(name)}, {plan.threads} thread(s), started beside "
                         f"{len(running) - 1} other run(s); output in {out / 'runs' / name / OUTPUT_LOG}")
            if not running:
                raise RuntimeError(f"quick start: runs {todo} wait on each other")
            multiprocessing.connection.wait([r.process.sentinel for r in running.values()])
            for name, run in list(running.items()):
                if run.process.exitcode is None:
                    continue
                del running[name]
                if run.process.exitcode != 0 or not result_path(out, name).is_file():
                    raise RuntimeError(_failure(out, name, run.process.exitcode))
                done.add(name)
                announce(f"quick start: {name} done in {(time.monotonic() - run.started) / 60:.1f} min")
    finally:
        for run in running.values():  # after a failure or an interrupt; each resumes from its last checkpoint
            run.process.terminate()
            run.process.join()


def _failure(out: Path, name: str, exitcode: Optional[int]) -> str:
    log = out / "runs" / name / OUTPUT_LOG
    tail = log.read_text(errors="replace").strip().splitlines()[-15:] if log.is_file() else []
    said = (f"Its output ({log}) ends:\n" + "\n".join(tail)) if tail else "It failed before writing its log (above)."
    return (f"quick start: run {name} failed (exit code {exitcode}); the runs beside it were stopped and resume from "
            f"their last checkpoints when the quick start is run again. {said}")


def schedule_seconds(seconds: Mapping[str, float], needs: Mapping[str, Sequence[str]], jobs: int) -> float:
    """Wall-clock seconds of runs taking ``seconds`` each, trained as :func:`train_runs` does: up to ``jobs``
    at once, in :data:`PRIORITY` order among those whose ``needs`` are done."""
    order = [name for name in PRIORITY if name in seconds]
    finish: Dict[str, float] = {}
    lanes: List[Tuple[float, str]] = []  # (finish time, run) of the runs in progress
    now, todo = 0.0, list(order)
    while todo:
        ready = [n for n in todo if all(d in finish and finish[d] <= now for d in needs.get(n, ()) if d in seconds)]
        if ready and len(lanes) < jobs:
            name = ready[0]
            todo.remove(name)
            finish[name] = now + seconds[name]
            lanes.append((finish[name], name))
            continue
        if not lanes:
            raise ValueError(f"runs {todo} wait on each other")
        lanes.sort()
        now = lanes.pop(0)[0]
    return max(finish.values(), default=0.0)

