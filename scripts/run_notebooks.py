"""Execute the course notebooks with papermill and print a table (notebook, seconds, ok/failed).

    python scripts/run_notebooks.py --out runs/notebooks            # copies, as `make notebooks` does
    python scripts/run_notebooks.py --in-place                      # refresh the committed notebooks
    python scripts/run_notebooks.py --out runs/notebooks --size full -p SEED 1

Every notebook runs even when one fails; the exit code is 1 if any failed.

What is stored is clean by construction: progress bars are off while executing (TQDM_DISABLE=1), so no
stored output shows a frozen bar, and papermill's metadata keeps only the notebook's file name, never an
absolute path of the machine that ran it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def parse_value(text: str):
    """papermill -p values: ints, floats, booleans and None as Python values, anything else as a string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def clean_metadata(path: Path) -> None:
    """Replace papermill's absolute input/output paths by the notebook's file name.

    Also drop the saved widget state when no output displays a widget: a library that builds a hidden
    progress bar leaves its model there, and the file should hold only what a reader can see.
    """
    notebook = json.loads(path.read_text())
    meta = notebook.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if key in meta:
            meta[key] = path.name
    outputs = json.dumps([cell.get("outputs", []) for cell in notebook.get("cells", [])])
    if "application/vnd.jupyter.widget-view+json" not in outputs:
        notebook.get("metadata", {}).pop("widgets", None)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder for the executed copies")
    where.add_argument("--in-place", action="store_true", help="overwrite the notebooks with their executed form")
    parser.add_argument("--size", help="value of the SIZE parameter (e.g. full)")
    parser.add_argument("--only", help="comma-separated notebook numbers or names to run (e.g. 01,02)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)

    import papermill

    parameters = {name: parse_value(value) for name, value in args.parameter}
    if args.size:
        parameters["SIZE"] = args.size
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        paths = [p for p in paths if any(p.name.startswith(w) or p.stem == w for w in wanted)]
    if not paths:
        print("no notebooks matched", file=sys.stderr)
        return 1
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    os.environ["TQDM_DISABLE"] = "1"  # inherited by the kernels: no bars in the stored outputs
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers' own bars ("Loading weights")
    results = []
    for path in paths:
        target = path if args.in_place else args.out / path.name
        print(f"running {path.name} ...", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(path), str(target), parameters=parameters, cwd=str(NOTEBOOKS), progress_bar=False,
            )
            status = "ok"
        except Exception as err:  # papermill raises on a failing cell; keep going, report at the end
            status = f"failed ({type(err).__name__})"
        seconds = time.perf_counter() - start
        if target.exists():
            clean_metadata(target)
        results.append((path.name, seconds, status))
        print(f"  {path.name}: {status} in {seconds:.1f} s", flush=True)
    width = max(len(name) for name, _, _ in results)
    print(f"\n{'notebook':<{width}}  {'seconds':>8}  result")
    for name, seconds, status in results:
        print(f"{name:<{width}}  {seconds:>8.1f}  {status}")
    failed = [name for name, _, status in results if status != "ok"]
    if args.out:
        print(f"\nexecuted copies in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
