"""Policy as code: Rego modules judged against each plan (`rego`)."""
