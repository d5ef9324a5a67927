"""Planning: desired resources (expand) vs refreshed state (refresh) -> one Change per address (planner, model).

Steps in data-flow order: `expand` (Config -> DesiredResource per address), `refresh`
(providers report what runs), `diff` (attribute-level), `planner` (actions, reasons,
risks, rollout checks, cost and fit), `model` (the Plan and its JSON). The stored
plan format lives in `model`; the human view is `infraplan.cli.views.plan`.
"""
