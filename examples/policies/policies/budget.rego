package infraplan

import rego.v1

# What the fleets may cost per hour after apply (the plan's own cost, from SkyPilot's catalogs).
max_hourly_usd := 200

deny contains msg if {
	input.infraplan.cost.after_hourly > max_hourly_usd
	msg := sprintf("the plan costs $%v/h after apply, over the budget of $%v/h", [input.infraplan.cost.after_hourly, max_hourly_usd])
}
