"""The ``daclip restore`` and ``daclip classify`` commands: many image files in, results and probabilities out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_flags import given
from .errors import InvalidImageError, InvalidOptionError, OutputError
from .options import of as options_of

#: Exit codes: a user error (bad input, option or output) and a failure while working.
EXIT_USAGE, EXIT_FAILURE = 2, 1


def _print_scores(path, scores: dict[str, float]) -> None:
    top = ", ".join(f"{name} {probability:.1%}" for name, probability in list(scores.items())[:3])
    print(f"{path}: {top}")


def cmd_classify(args: argparse.Namespace) -> int:
    """Print each image's degradation probabilities (a stack's: averaged over its frames)."""
    import json

    from . import api, batch, imagefiles, stacks

    options = given(args)
    options_of(api.get_classifier(args.classifier)).check(f"classifier {args.classifier!r}", options)
    sources = batch.find_inputs(args.images)
    for path in sources:  # missing, unreadable and oversized files: refused before any work
        imagefiles.probe(path, max_pixels=args.max_pixels)
    results, failed = {}, 0
    for path in sources:
        try:
            picture = imagefiles.read_picture(path, max_pixels=args.max_pixels)
            if picture.stack:
                rgb = batch.is_rgb(picture)
                scores = stacks.classify_stack(picture.data, args.classifier, rgb=rgb, **options).mean_probabilities
            else:
                scores = api.classify(picture.data, classifier=args.classifier, **options)
        except InvalidImageError as exc:  # this file's own problem: the others go on
            print(f"{path}: failed: {exc}", file=sys.stderr)
            failed += 1
            continue
        results[str(path)] = scores
        if not args.json:
            _print_scores(path, scores)
    if args.json:
        print(json.dumps(results, indent=2))
    return _failures(failed, len(sources))


def _failures(failed: int, total: int) -> int:
    """The exit code of a run over files: 1, with a summary line, if any failed."""
    if failed:
        print(f"daclip: error: {failed} of {total} file(s) failed", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore images (files, folders, glob patterns); print their degradation probabilities; write NAME_restored files.

    Every output is planned and checked before any work (see daclip_plugin.outputs); a file
    whose pixels turn out unusable while it is read is reported and the others go on (exit
    code 1). With --workers or --scheduler the files are restored on Dask (see
    daclip_plugin.distributed).
    """
    from . import api, batch, imagefiles, outputs

    chosen = given(args)
    restorer = args.restorer or api.preferred_restorer(chosen.get("model"))
    classifier = None if args.no_classify else args.classifier or api.classifier_for(restorer)
    options, classify_options = api.split_options(chosen, restorer, classifier)
    _check_classifier_runs(restorer, set(chosen) - set(options))
    options = options_of(api.get_restorer(restorer)).check(f"restorer {restorer!r}", options)
    if args.workers is not None and args.workers < 1:
        raise InvalidOptionError(f"--workers must be at least 1, not {args.workers}")
    sources = batch.find_inputs(args.images)
    if args.workers is not None or args.scheduler is not None:
        return _restore_on_dask(args, sources, restorer, classifier, {**options, **classify_options})
    headers = [imagefiles.probe(source, max_pixels=args.max_pixels) for source in sources]
    planned = outputs.plan(sources, headers, args.output, overwrite=args.overwrite or args.skip_existing,
                           side_by_side=args.side_by_side)
    failed = 0
    for item in planned:
        if args.skip_existing and item.written():
            print(f"{item.source}: skipped, {item.target} exists")
            continue
        try:
            result = _restore_file(item, restorer, options, classifier, classify_options, args)
        except InvalidImageError as exc:  # this file's pixels (NaNs, ...): the others go on
            result = batch.FileResult(str(item.source), None, "failed", error=str(exc))
        _print_result(result, scores=not args.no_classify)
        failed += result.status == "failed"
    return _failures(failed, len(planned))


def _check_classifier_runs(restorer: str, classifier_only: set) -> None:
    """Refuse classifier options (``--prompts``) that would do nothing: a restorer steered by its own
    estimate reports that estimate's probabilities, and no classifier runs beside it."""
    from . import api

    if classifier_only and api.steers_itself(restorer):
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(classifier_only))
        raise InvalidOptionError(
            f"{flags} would change nothing: restorer {restorer!r} is steered by its own estimate, whose "
            "probabilities are printed, and no classifier runs beside it (score images with `daclip classify` instead)"
        )


def _restore_file(item, restorer: str, options, classifier, classify_options, args):
    from tqdm import tqdm

    from . import batch

    with tqdm(desc=f"restoring {item.source.name}", unit="step", leave=False, disable=args.quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return batch.restore_file(item, restorer, options, classifier, classify_options, max_pixels=args.max_pixels,
                                  progress=progress)


def _print_result(result, scores: bool = True) -> None:
    if result.probabilities and scores:
        _print_scores(result.source, result.probabilities)
    if result.status == "failed":
        print(f"{result.source}: failed: {result.error}", file=sys.stderr)
    elif result.status == "skipped":
        print(f"{result.source}: skipped, {result.target} exists")
    else:
        print(f"  -> {result.target}")


def _restore_on_dask(args, sources, restorer: str, classifier, options) -> int:
    """``daclip restore --workers N`` / ``--scheduler ADDRESS``: one Dask task per file; exit 1 if any failed."""
    from tqdm import tqdm

    from . import distributed
    from .batch import IMAGE_SUFFIXES

    out_dir = args.output
    named_file = Path(out_dir or "").suffix.lower() in IMAGE_SUFFIXES
    if out_dir is not None and not Path(out_dir).is_dir() and (Path(out_dir).exists() or named_file):
        raise OutputError(f"-o {out_dir} names a file: with --workers or --scheduler, -o names a folder")
    existing = "overwrite" if args.overwrite else "skip" if args.skip_existing else "error"
    with tqdm(total=len(sources), desc="files", unit="file", disable=args.quiet) as bar:
        def progress(done: int, total: int, result) -> None:
            bar.update(1)
            bar.clear()
            _print_result(result, scores=not args.no_classify)
            bar.refresh()

        results = distributed.restore_files(
            sources, out_dir, workers=args.workers, scheduler=args.scheduler, restorer=restorer, classifier=classifier,
            existing=existing, side_by_side=args.side_by_side, max_pixels=args.max_pixels, progress=progress, **options,
        )
    return _failures(sum(result.status == "failed" for result in results), len(results))
