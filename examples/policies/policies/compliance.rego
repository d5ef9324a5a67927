package infraplan

import rego.v1

# Every model served declares who owns it and under which license.
deny contains msg if {
	some rc in input.resource_changes
	rc.type == "model"
	not "delete" in rc.change.actions
	not rc.change.after.owner
	msg := sprintf("%s declares no owner", [rc.address])
}

deny contains msg if {
	some rc in input.resource_changes
	rc.type == "model"
	not "delete" in rc.change.actions
	not rc.change.after.compliance.license
	msg := sprintf("%s declares no compliance.license", [rc.address])
}
