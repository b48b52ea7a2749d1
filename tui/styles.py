"""The app's stylesheet (a Python string, so an installed wheel carries it without package data)."""

CSS = """
Label { width: 100%; }  /* wrap long titles at the screen edge, never cut them */
.title { padding: 1 1 0 1; text-style: bold; }
#eval-title { padding: 0 1; }
#legend { padding: 0 1; }
#curves { grid-size: 2; grid-rows: 12; height: auto; }
.curve { height: 12; }
#by-layer { height: 16; }
#pickers { height: auto; }
#pickers Select { width: 1fr; }
DataTable { height: auto; max-height: 20; }
HelpScreen { align: center middle; }
#help-box {
    width: 76; max-width: 100%; height: auto; max-height: 100%;
    border: round $accent; background: $surface; padding: 0 1;
}
#message { padding: 1 2; }
"""
