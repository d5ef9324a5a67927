"""The `infraplan` command line: `main` (the click group and most commands), `common` (options, error handling), `commands/` (commands in files of their own), `views/` (rendering for people)."""
