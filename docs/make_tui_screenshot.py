"""Save an SVG screenshot of the TUI's compare screen: python docs/make_tui_screenshot.py DB OUT.svg"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tui.app import SaeBenchApp


async def main(db: Path, out: Path) -> None:
    app = SaeBenchApp(db)
    async with app.run_test(size=(100, 34)) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause(1.0)
        app.save_screenshot(filename=out.name, path=str(out.parent))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
