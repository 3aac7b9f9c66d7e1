package deploytest

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// vendorRefs lists where a workload of r refers to a vendor: an environment
// variable whose name has one of names (e.g. "_FUB_"), whose value is one
// of values (e.g. "followupboss") or names a file whose base name starts
// with one of keys (e.g. "fub-"), or that takes a Secret or ConfigMap key
// starting with one of keys.
func vendorRefs(r rendered, names, values, keys []string) []string {
	var out []string
	hasPrefix := func(s string, prefixes []string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(s, p) {
				return true
			}
		}
		return false
	}
	for _, w := range r.workloads() {
		for _, c := range append(append([]corev1.Container{}, w.pod.Spec.InitContainers...), w.pod.Spec.Containers...) {
			for _, e := range c.Env {
				where := fmt.Sprintf("%s %s: %s", w.kind, w.name, e.Name)
				base := e.Value[strings.LastIndex(e.Value, "/")+1:]
				switch {
				case containsAny(e.Name, names):
					out = append(out, where)
				case e.Value != "" && (containsAny(strings.ToLower(e.Value), values) || (strings.HasPrefix(e.Value, "/") && hasPrefix(base, keys))):
					out = append(out, where+"="+e.Value)
				case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && hasPrefix(e.ValueFrom.SecretKeyRef.Key, keys):
					out = append(out, where+" from key "+e.ValueFrom.SecretKeyRef.Key)
				case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && hasPrefix(e.ValueFrom.ConfigMapKeyRef.Key, keys):
					out = append(out, where+" from key "+e.ValueFrom.ConfigMapKeyRef.Key)
				}
			}
		}
	}
	return out
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// The vendors' traces in a workload's settings.
var (
	followUpBoss = [3][]string{{"_FUB_"}, {"followupboss"}, {"fub-"}}
	liondesk     = [3][]string{{"_LIONDESK_"}, {"liondesk"}, {"liondesk-"}}
	dotloop      = [3][]string{{"_DOTLOOP_"}, {"dotloop"}, {"dotloop-"}}
	skyslope     = [3][]string{{"_SKYSLOPE_"}, {"skyslope"}, {"skyslope-"}}
)

// TestVendorComponents: a brokerage chooses its CRM and its TMS by listing
// components/liondesk and components/skyslope in its overlay (Follow Up Boss
// and Dotloop without them), and every service follows that choice. With a
// vendor chosen, no workload refers to the one it replaces (a leftover
// variable would name a Secret key the brokerage does not have, or call a
// vendor it has no account with); crm-sync and tms-sync name the same CRM
// (tms-sync reads the assigned agent only from Follow Up Boss), and
// tms-sync and ledger-sync the same TMS (ledger-sync reads each closing of
// tms-sync's TMS again, and no other).
func TestVendorComponents(t *testing.T) {
	for _, ov := range overlays(t) {
		t.Run(ov, func(t *testing.T) {
			r := load(t, ov)
			components := strings.Split(ov, "+")[1:]
			crm, tms := followUpBoss, dotloop
			wantCRM, wantTMS := "followupboss", "dotloop"
			for _, c := range components {
				switch c {
				case "liondesk":
					crm, wantCRM = liondesk, "liondesk"
				case "skyslope":
					tms, wantTMS = skyslope, "skyslope"
				default:
					t.Fatalf("unknown vendor component %q", c)
				}
			}
			gone := map[string][3][]string{}
			if wantCRM != "followupboss" {
				gone["Follow Up Boss"] = followUpBoss
			}
			if wantTMS != "dotloop" {
				gone["Dotloop"] = dotloop
			}
			if baseOverlay(ov) != "dev" { // the sandbox serves every vendor
				for _, other := range []struct {
					name string
					refs [3][]string
				}{{"LionDesk", liondesk}, {"SkySlope", skyslope}} {
					if other.refs[1][0] != wantCRM && other.refs[1][0] != wantTMS {
						gone[other.name] = other.refs
					}
				}
			}
			for vendor, refs := range gone {
				for _, where := range vendorRefs(r, refs[0], refs[1], refs[2]) {
					t.Errorf("%s refers to %s, which the overlay does not use", where, vendor)
				}
			}
			if len(vendorRefs(r, crm[0], crm[1], crm[2])) == 0 || len(vendorRefs(r, tms[0], tms[1], tms[2])) == 0 {
				t.Errorf("nothing refers to the chosen CRM %s or TMS %s", wantCRM, wantTMS)
			}
			env := func(deployment string) map[string]string {
				d := findDeployment(r, deployment)
				if d == nil {
					t.Fatalf("no Deployment %s", deployment)
				}
				return envMap(d.Spec.Template.Spec.Containers[0])
			}
			crmSync, tmsSync, ledgerSync := env("crm-sync"), env("tms-sync"), env("ledger-sync")
			if got := or(crmSync["CRMSYNC_CRM"], "followupboss"); got != wantCRM {
				t.Errorf("crm-sync: CRMSYNC_CRM=%s, want %s", got, wantCRM)
			}
			if got := or(tmsSync["TMSSYNC_CRM"], "none"); got != "none" && got != wantCRM {
				t.Errorf("tms-sync: TMSSYNC_CRM=%s, but crm-sync's CRM is %s", got, wantCRM)
			}
			if got := tmsSync["TMSSYNC_TMS"]; got != wantTMS {
				t.Errorf("tms-sync: TMSSYNC_TMS=%s, want %s", got, wantTMS)
			}
			if got := or(ledgerSync["LEDGERSYNC_TMS"], "dotloop"); got != tmsSync["TMSSYNC_TMS"] {
				t.Errorf("ledger-sync: LEDGERSYNC_TMS=%s, but tms-sync's TMS is %s", got, tmsSync["TMSSYNC_TMS"])
			}
		})
	}
}

func or(v, otherwise string) string {
	if v == "" {
		return otherwise
	}
	return v
}
