"""One module per screen; `tui.app` wires them together."""
