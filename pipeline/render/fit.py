"""Render and build the paper; with ``--fit auto``, apply the page-limit remedies until the main text fits.

    python -m pipeline.render.fit [--mode review] [--fit off|auto]

The remedies are ``paper.yaml``'s ``fit`` list, in order. Each is a template
switch (see ``templates/``); none drops a result, a table row or a figure.
The command reports each remedy it used. Without ``--fit auto`` a main text
over the limit fails the build with the number of lines it is over.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pipeline.experiments.schema import ResultsError
from pipeline.render import build, paper
from pipeline.render.config import CONFIG_PATH, ConfigError, load_config
from pipeline.render.related import RelatedError

logger = logging.getLogger(__name__)


def fit_paper(results_dir: Path, paper_dir: Path, figure_dir: Path, mode: str = "review", kit: Path | None = None,
              auto: bool = False, config_path: Path = CONFIG_PATH, draft: bool = False) -> tuple[Path, list[str]]:
    """Render and build; return the PDF and the remedies applied. Raise ``build.BuildError`` when it cannot fit."""
    remedies = list(load_config(config_path).fit)
    applied: list[str] = []
    while True:
        paper.render(results_dir, paper_dir, figure_dir, mode, kit, config_path, remedies=tuple(applied), draft=draft)
        try:
            return build.build(paper_dir), applied
        except build.PageLimitError as error:
            if not auto:
                raise build.PageLimitError(f"{error}\nRun `make paper FIT=auto` to apply the remedies of "
                                           f"{config_path.name} ({', '.join(remedies)}).") from None
            if len(applied) == len(remedies):
                raise build.PageLimitError(f"{error}\nEvery remedy is applied ({', '.join(applied)}) and the main "
                                           "text is still over the limit; shorten the text.") from None
            applied.append(remedies[len(applied)])
            logger.info("The main text is over the page limit; applying the remedy %s", applied[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.render.fit", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=paper.REPOSITORY / "data/results", help="results directory")
    parser.add_argument("--paper", type=Path, default=paper.REPOSITORY / "paper", help="output directory of main.tex")
    parser.add_argument("--figures", type=Path, default=paper.REPOSITORY / "figures", help="output directory of figures")
    parser.add_argument("--mode", default=os.environ.get("MODE", "review"), choices=paper.MODES)
    parser.add_argument("--kit", type=Path, default=os.environ.get("ICML_KIT") or None,
                        help="directory of the official ICML 2026 kit (default: $ICML_KIT, else our own style)")
    parser.add_argument("--fit", choices=("off", "auto"), default=os.environ.get("FIT") or "off",
                        help="auto: apply the remedies of paper.yaml until the main text fits (default: off)")
    parser.add_argument("--draft", action="store_true", default=os.environ.get("DRAFT") == "1",
                        help="accept merged results with holes and mark them in red (default: $DRAFT=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        pdf, applied = fit_paper(args.results, args.paper, args.figures, args.mode, args.kit, args.fit == "auto",
                                 draft=args.draft)
    except (paper.PaperError, ResultsError, ConfigError, RelatedError, ValueError) as error:
        logger.error("%s", error)
        # A PDF from other inputs (a draft, say) must not pass for the current one.
        (args.paper / build.BUILD_DIR / "main.pdf").unlink(missing_ok=True)
        return 1
    except build.BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        stale = args.paper / build.BUILD_DIR / "main.pdf"
        if stale.exists():
            stale.unlink()
        return 1
    if applied:
        logger.info("Fitted to the page limit with: %s", ", ".join(applied))
    print(f"Built {pdf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
