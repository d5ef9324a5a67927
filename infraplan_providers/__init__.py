"""Built-in providers: `local` (processes on 127.0.0.1), `null` (state only) and `skypilot` (clouds). They import only the provider SDK, `serving`, `models`, `errors`, `diagnostics` and `util`."""
