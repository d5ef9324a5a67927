package infraplan

import rego.v1

# Fleets labelled env: prod never drop to zero on a release and never run on spot capacity.
deny contains msg if {
	some rc in input.resource_changes
	rc.infraplan.kind == "fleet"
	not "delete" in rc.change.actions
	rc.change.after.labels.env == "prod"
	rc.change.after.rollout.strategy == "recreate"
	msg := sprintf("%s is a prod fleet: a recreate rollout would stop every replica; use rolling, blue_green or canary", [rc.address])
}

deny contains msg if {
	some rc in input.resource_changes
	rc.infraplan.kind == "replica"
	not "delete" in rc.change.actions
	rc.change.after.labels.env == "prod"
	rc.change.after.use_spot == true
	msg := sprintf("%s is in a prod fleet: no spot capacity in prod", [rc.address])
}

warn contains msg if {
	some rc in input.resource_changes
	rc.infraplan.kind == "fleet"
	rc.change.after.labels.env == "prod"
	not rc.change.after.rollout
	msg := sprintf("%s is a prod fleet without a rollout block: new versions replace replicas without gates", [rc.address])
}
