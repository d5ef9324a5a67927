package infraplan

import rego.v1

# H100s run only in these regions (a data-residency and capacity agreement).
approved_h100_regions := {"us-east-1", "us-central1"}

region_name(r) := r if is_string(r)

region_name(r) := "(none)" if not is_string(r)

deny contains msg if {
	some rc in input.resource_changes
	rc.infraplan.kind == "replica"
	not "delete" in rc.change.actions
	startswith(object.get(rc.change.after, "accelerators", ""), "H100")
	region := object.get(rc.change.after, "region", null)
	not region in approved_h100_regions
	# (regopy 1.5 leaves quotes in a concat() result passed to sprintf: the regions are named in the text)
	msg := sprintf("%s: H100s run only in us-east-1 and us-central1, not in region %s", [rc.address, region_name(region)])
}
