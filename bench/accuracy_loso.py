"""Defaults judged on systems they were not chosen on: leave-one-system-out over loghub-2k.

    python bench/accuracy_loso.py --data ../shared/data/loghub

Every setting of a grid (default: DBSCAN's `eps`, the cleaning's `max_constant_values` and
`template_similarity`) is scored on every system with faultline's chain (`bench/accuracy.py`'s
`faultline_groups`). Then, for each system, the setting with the best mean grouping accuracy on the
*other* systems is chosen (of settings scoring alike, the one nearest the product's default) and the
held-out system is scored with it: the mean of those held-out figures is what a system never seen
can expect of defaults chosen this way. Beside it: the in-sample figure of the product's defaults,
and the setting that is best on all systems.

Each (setting, system) score is kept in the output as it is made, so an interrupted run resumes.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from accuracy import (
    environment,
    faultline_configs,
    faultline_groups,
    find_datasets,
    grouping_accuracy,
    load_dataset,
)

BENCH = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH / "results" / "accuracy_loso.json"
DEFAULT_GRID = (
    "dbscan.eps=0.0025,0.005,0.01,0.02",
    "cleaning.max_constant_values=2,3,4",
    "cleaning.template_similarity=0.4,0.5,0.6",
)


def parse_grid(axes: list[str]) -> list[tuple[str, ...]]:
    """Every combination of the axes' values, each as `section.field=value` overrides."""
    choices = []
    for axis in axes:
        name, _, values = axis.partition("=")
        if not values:
            raise SystemExit(f"a grid axis is section.field=v1,v2,...; got {axis!r}")
        choices.append([f"{name}={value}" for value in values.split(",")])
    return [tuple(combination) for combination in itertools.product(*choices)]


def default_setting(grid: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The grid's setting that is the product's default Config, if the grid holds it."""
    shipped = faultline_configs()
    for setting in grid:
        if all(
            json.loads(value) == getattr(shipped[section], field)
            for override in setting
            for (section, field), value in [(override.split("=")[0].split("."), override.split("=")[1])]
        ):
            return setting
    return None


def steps_from(setting: tuple[str, ...], preferred: tuple[str, ...] | None, axes: list[list[str]]) -> int:
    """How many grid steps, summed over the axes, `setting` lies from the product's default."""
    if preferred is None:
        return 0
    return sum(
        abs(values.index(mine) - values.index(theirs))
        for values, mine, theirs in zip(axes, setting, preferred, strict=True)
    )


def grid_axes(settings: list[tuple[str, ...]]) -> list[list[str]]:
    """Each axis's values in grid order."""
    return [list(dict.fromkeys(setting[i] for setting in settings)) for i in range(len(settings[0]))]


def ranking_key(scores, systems: list[str], preferred, axes):
    """Best mean GA over `systems` first (to 4 places); of settings that score alike, the one fewest
    grid steps from the product's default: a change of default has to earn its distance."""
    return lambda setting: (
        -round(float(np.mean([scores[setting][system] for system in systems])), 4),
        steps_from(setting, preferred, axes),
    )


def leave_one_out(scores: dict[tuple[str, ...], dict[str, float]], systems: list[str],
                  preferred: tuple[str, ...] | None) -> dict[str, dict[str, object]]:  # fmt: skip
    """Per system: the setting best on the others (`ranking_key`) and the system's GA with it."""
    axes = grid_axes(list(scores))
    held_out = {}
    for system in systems:
        others = [other for other in systems if other != system]
        ranked = sorted(scores, key=ranking_key(scores, others, preferred, axes))
        chosen = ranked[0]
        held_out[system] = {
            "setting": list(chosen),
            "mean_ga_on_the_others": round(float(np.mean([scores[chosen][o] for o in others])), 4),
            "ga": round(scores[chosen][system], 4),
        }
    return held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of loghub-2k dataset folders")
    parser.add_argument("--grid", nargs="*", default=list(DEFAULT_GRID), metavar="SECTION.FIELD=V1,V2")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    datasets = find_datasets(args.data)
    systems = sorted(datasets)
    grid = parse_grid(args.grid)
    kept = json.loads(args.output.read_text()) if args.output.exists() else {}
    done = {tuple(row["setting"]): row["ga"] for row in kept.get("scores", []) if row["grid"] == args.grid}
    rows = [{"grid": args.grid, "setting": list(setting), "ga": ga} for setting, ga in done.items()]
    messages = {system: load_dataset(datasets[system]) for system in systems}
    started = time.monotonic()
    for number, setting in enumerate(grid, 1):
        scores = done.setdefault(setting, {})
        for system in systems:
            if system in scores:
                continue
            frame = messages[system]
            predicted = faultline_groups(frame["Content"], faultline_configs(list(setting)))
            scores[system] = round(grouping_accuracy(frame["EventId"], predicted), 4)
        row = {"grid": args.grid, "setting": list(setting), "ga": scores}
        rows = [r for r in rows if tuple(r["setting"]) != setting] + [row]
        args.output.write_text(json.dumps({"scores": rows}, indent=1) + "\n")
        print(f"{number}/{len(grid)} {' '.join(setting)}: mean GA {np.mean(list(scores.values())):.3f} "
              f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip

    scores = {setting: done[setting] for setting in grid}
    preferred = default_setting(grid)
    held_out = leave_one_out(scores, systems, preferred)
    best_in_sample = min(scores, key=ranking_key(scores, systems, preferred, grid_axes(grid)))
    result = {
        "method": __doc__.split("\n\n")[2].replace("\n", " "),
        "systems": systems,
        "grid": args.grid,
        "product_default": list(preferred) if preferred else None,
        "default_in_sample": {
            "per_system": scores[preferred] if preferred else None,
            "mean_ga": round(float(np.mean(list(scores[preferred].values()))), 4) if preferred else None,
            "min_ga": min(scores[preferred].values()) if preferred else None,
        },
        "best_in_sample": {
            "setting": list(best_in_sample),
            "mean_ga": round(float(np.mean(list(scores[best_in_sample].values()))), 4),
        },
        "leave_one_system_out": {
            "per_system": held_out,
            "mean_ga": round(float(np.mean([h["ga"] for h in held_out.values()])), 4),
            "min_ga": min(h["ga"] for h in held_out.values()),
        },
        "environment": environment(),
        "scores": rows,
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{'system':<12} {'default (in sample)':>20} {'left out: GA':>14}  setting chosen on the others")
    for system in systems:
        print(f"{system:<12} {scores[preferred][system] if preferred else float('nan'):>20.3f} "
              f"{held_out[system]['ga']:>14.3f}  {' '.join(held_out[system]['setting'])}")  # fmt: skip
    print(f"{'mean':<12} {result['default_in_sample']['mean_ga'] or float('nan'):>20.3f} "
          f"{result['leave_one_system_out']['mean_ga']:>14.3f}")  # fmt: skip
    print(f"best in sample: {' '.join(best_in_sample)} ({result['best_in_sample']['mean_ga']:.3f})")


if __name__ == "__main__":
    main()
