"""The TUI on a lab-sized results file: seconds to the first screen (runs) and to the layer
screen of a run, through Textual's Pilot (headless, as the tests drive it).

    python benchmarks/store_tui.py FILE        # e.g. a file from benchmarks/store_synth.py

Wall and CPU seconds, each step once; the app is the real one, reading the real file.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def measure(db: Path) -> list[tuple[str, float, float]]:
    from tui.app import SaeBenchApp
    from tui.screens.layers import LayersScreen
    from tui.screens.runs import RunsScreen

    steps = []
    start, cpu = time.perf_counter(), time.process_time()
    app = SaeBenchApp(db)
    async with app.run_test(size=(120, 40)) as pilot:
        while not isinstance(app.screen, RunsScreen):
            await pilot.pause(0.01)
        await pilot.pause()
        steps.append(("first screen (runs)", time.perf_counter() - start, time.process_time() - cpu))
        start, cpu = time.perf_counter(), time.process_time()
        await pilot.press("enter")
        while not isinstance(app.screen, LayersScreen):
            await pilot.pause(0.01)
        await pilot.pause()
        steps.append(("layer screen of the newest run", time.perf_counter() - start, time.process_time() - cpu))
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(50):
            await pilot.press("down")
        await pilot.pause()
        steps.append(("50 rows down on the layer screen", time.perf_counter() - start, time.process_time() - cpu))
    return steps


def main() -> None:
    db = Path(sys.argv[1])
    print("| TUI step | wall s | CPU s |\n|---|---:|---:|")
    for name, wall, cpu in asyncio.run(measure(db)):
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
