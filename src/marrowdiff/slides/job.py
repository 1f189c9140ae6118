"""One slide counted into its report folder: check its scale, choose and order its tiles,
count them (shared among the ranks of a torchrun job), journal each finished tile, and
write the report from the journal. `count_slide` is what `marrowdiff count SLIDE` runs."""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marrowdiff.counting.report import About, ReportConfig
from marrowdiff.distributed import launched, world_size
from marrowdiff.inference.predict import Classifier
from marrowdiff.slides.count import (
    FLAG_CODES,
    SlideCountConfig,
    TileCells,
    classify_tile,
    in_differential,
    prepare_tile,
)
from marrowdiff.slides.journal import close_journal, open_journal
from marrowdiff.slides.plan import Plan, plan_slide
from marrowdiff.slides.reader import Slide, SlideError
from marrowdiff.slides.report import write_slide_report

AHEAD = 2  # tiles each reader holds ready ahead of the one being classified
READERS = 2  # threads reading and detecting tiles (OpenSlide and NumPy release the GIL)


def columns(classes: list[str]) -> list[str]:
    """cells.csv's columns for a slide."""
    return ["slide", "tile", "x", "y", "x_um", "y_um", "class", "probability", "flag",
            "distance", *(f"p_{k}" for k in classes)]  # fmt: skip


def rows_of(cells: TileCells, name: str, classes: list[str], mpp: float) -> list[list]:
    out = []
    for i in range(len(cells)):
        d = cells.distance[i]
        out.append(
            [name, cells.tile, round(cells.x[i], 1), round(cells.y[i], 1),
             round(cells.x[i] * mpp, 2), round(cells.y[i] * mpp, 2), classes[cells.label[i]],
             round(float(cells.probability[i]), 4), FLAG_CODES[cells.flag[i]],
             round(float(d), 4) if np.isfinite(d) else "",
             *(round(float(v), 4) for v in cells.proba[i])]
        )  # fmt: skip
    return out


def count_tiles(
    classifier: Classifier,
    slide: Slide,
    plan: Plan,
    config: SlideCountConfig,
    todo: list[int],
    target: int | None,
    done_cells: int = 0,
    on_tile=None,
    progress: bool = False,
    log=print,
) -> tuple[list[TileCells], list[str]]:
    """Count the tiles `todo` in order until `target` cells are in the differential (None:
    all); `on_tile(TileCells)` after each. Returns the tiles' cells (when `on_tile` is None)
    and a sentence for each tile that could not be read (the slide is opened again, and the
    count goes on). `READERS` threads read and detect the next tiles (each its own handle on
    the slide, sharing one cache) while this one classifies; tiles are taken in order."""
    counted = np.asarray(classifier.counted, bool)
    kept, failed = [], []
    n = done_cells
    stop = threading.Event()
    readers = min(READERS, max(1, len(todo)))
    handles = [slide] + [slide.twin() for _ in range(readers - 1)]
    queues = [queue.Queue(maxsize=AHEAD) for _ in range(readers)]

    def prepare(k: int) -> None:
        handle, out = handles[k], queues[k]
        try:
            for index in todo[k::readers]:
                if stop.is_set():
                    break
                try:
                    out.put(prepare_tile(handle, plan.tiles[index], plan.working, config.count))
                except SlideError as exc:
                    out.put(exc)
                    handle.reopen()
        except BaseException as exc:  # a bug: raised again in the counting thread
            out.put(exc)
        finally:
            out.put(None)

    threads = [
        threading.Thread(target=prepare, args=(k,), name=f"marrowdiff-tiles-{k}", daemon=True)
        for k in range(readers)
    ]
    for thread in threads:
        thread.start()
    bar = tqdm(total=len(todo), desc="tiles", unit="tile", disable=not progress, leave=False)
    try:
        for position in range(len(todo)):
            item = queues[position % readers].get()
            if item is None:  # that reader stopped early (a bug, raised below)
                break
            bar.update()
            if isinstance(item, SlideError):
                failed.append(str(item))
                log(f"skipped a tile: {item}")
                continue
            if isinstance(item, BaseException):
                raise item
            cells = classify_tile(classifier, item, config.count)
            n += in_differential(cells, counted)
            if on_tile is not None:
                on_tile(cells)
            else:
                kept.append(cells)
            bar.set_postfix(cells=n)
            if target is not None and n >= target:
                break
    finally:
        stop.set()
        for thread, q in zip(threads, queues, strict=True):
            while thread.is_alive():  # let it see `stop` (it may wait on a full queue)
                with contextlib.suppress(queue.Empty):
                    q.get(timeout=0.05)
        for handle in handles[1:]:
            handle.close()
        bar.close()
    return kept, failed


def count_slide(
    classifier: Classifier,
    path: str | Path,
    config: SlideCountConfig,
    report: ReportConfig,
    out: Path,
    model_name: str,
    log=print,
    progress: bool = False,
    case: dict | None = None,
) -> dict | None:
    """Count one slide into `out` (report.html, report.json, cells.csv, cells.geojson,
    slide-map.png); returns the summary (None on a torchrun rank other than 0)."""
    size = classifier.global_.size
    model_mpp = size.mpp if size is not None else None
    with Slide(path) as slide:
        plan = plan_slide(slide, model_mpp, config, progress)
        name, classes, mpp = str(slide.path), classifier.classes, plan.working.slide_mpp
        key = _key(slide, classifier, config)
        if launched():
            parts = _count_shared(classifier, slide, plan, config, progress, log)
            if parts is None:
                return None
            tiles_cells, failed = parts
            journal = open_journal(out, key, columns(classes), log, resume=False)
            for cells in tiles_cells:
                journal.add(cells.tile, rows_of(cells, name, classes, mpp))
        else:
            journal = open_journal(out, key, columns(classes), log)
            before = _counted_in(journal, classifier)
            todo = [i for i in plan.order if i not in journal.done]

            def on_tile(cells: TileCells) -> None:
                journal.add(cells.tile, rows_of(cells, name, classes, mpp))

            _, failed = count_tiles(classifier, slide, plan, config, todo, config.cells,
                                    before, on_tile, progress, log)  # fmt: skip
        if failed and not journal.done:
            raise SlideError(
                f"{path}: none of its {len(failed)} tile(s) could be read: the file is damaged "
                f"({failed[0]}); copy it again from the scanner"
            )
        if config.cells is not None:
            report = replace(report, target=config.cells)
        about = _about(classifier, config, model_name, case)
        summary = write_slide_report(out, slide, plan, journal, classifier, config, report,
                                     about, failed)  # fmt: skip
    close_journal(journal)
    return summary


def _about(classifier: Classifier, config: SlideCountConfig, model_name: str, case) -> About:
    return About(
        model=model_name,
        cell_radius=config.count.detect.cell_radius,
        tta=config.count.tta,
        calibration=classifier.calibration(config.count.tta).to_dict(),
        detect=config.count.detect.to_dict(),
        model_sha256=classifier.checksum or None,
        stain_normalisation=None if classifier.stain_method == "none" else classifier.stain_method,
        **(case or {}),
    )


def _counted_in(journal, classifier: Classifier) -> int:
    """Cells of the journal's finished tiles that are in the differential."""
    counted = {c for c, k in zip(classifier.classes, classifier.counted, strict=True) if k}
    return sum(row["flag"] != "border" and row["class"] in counted for row in journal.rows())


def _count_shared(classifier, slide, plan, config, progress, log):
    """Under torchrun: each rank counts every world-th tile of the order (towards its share
    of the target); rank 0 gets every tile's cells back in the order's sequence."""
    from marrowdiff.distributed.shards import on_every_rank

    def work(mine: list[int]):
        target = None if config.cells is None else -(-config.cells // world_size())
        return count_tiles(classifier, slide, plan, config, mine, target, 0, None, progress, log)

    parts = on_every_rank(work, plan.order)
    if parts is None:
        return None
    rank = {index: i for i, index in enumerate(plan.order)}
    cells = sorted((c for part, _ in parts for c in part), key=lambda c: rank[c.tile])
    return cells, [f for _, failed in parts for f in failed]


def _key(slide: Slide, classifier: Classifier, config: SlideCountConfig) -> dict:
    """What a journal must match to be gone on with."""
    stat = slide.path.stat()
    return {
        "slide": str(slide.path.resolve()),
        "size": stat.st_size,
        "modified": stat.st_mtime_ns,
        "model": classifier.checksum,
        "config": config.to_dict(),
    }
