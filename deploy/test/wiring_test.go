package deploytest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestVendorsWebhooksAndCRMAreWired: what the deployed services need of
// each other is there. tms-sync with Dotloop learns of closings only from
// Dotloop's webhooks, and ledger-sync of payments from QuickBooks' (or its
// poll), and both arrive at the gateway only when it has their secrets;
// those keys are optional (a brokerage may lack one), so a missing key
// must not stop the gateway's pods. tms-sync opens a loop in the contact's
// assigned agent's profile only when it reads crm-sync's CRM.
func TestVendorsWebhooksAndCRMAreWired(t *testing.T) {
	for _, ov := range overlays(t) {
		t.Run(ov, func(t *testing.T) {
			r := load(t, ov)
			gw := findDeployment(r, "ingest-gateway")
			if gw == nil {
				t.Fatal("no ingest-gateway Deployment")
			}
			gwEnv := gw.Spec.Template.Spec.Containers[0].Env
			need := map[string]string{} // gateway setting -> the service that needs it
			if d := findDeployment(r, "tms-sync"); d != nil && envMap(d.Spec.Template.Spec.Containers[0])["TMSSYNC_TMS"] == "dotloop" {
				need["GATEWAY_DOTLOOP_SIGNING_KEYS"] = "tms-sync (Dotloop's loop changes and closings)"
			}
			if d := findDeployment(r, "ledger-sync"); d != nil && envMap(d.Spec.Template.Spec.Containers[0])["LEDGERSYNC_LEDGER"] == "quickbooks" {
				need["GATEWAY_QUICKBOOKS_VERIFIER_TOKENS"] = "ledger-sync (QuickBooks' payments)"
			}
			for setting, who := range need {
				e, ok := envVar(gwEnv, setting)
				if !ok {
					e, ok = envVar(gwEnv, setting+"_FILE")
				}
				if !ok {
					t.Errorf("ingest-gateway: neither %s nor %s_FILE is set; %s gets no webhook", setting, setting, who)
					continue
				}
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && (ref.SecretKeyRef.Optional == nil || !*ref.SecretKeyRef.Optional) {
					t.Errorf("ingest-gateway: %s takes key %s of Secret %s without optional: true; a brokerage without it gets no gateway", e.Name, ref.SecretKeyRef.Key, ref.SecretKeyRef.Name)
				}
			}
			crm, tms := findDeployment(r, "crm-sync"), findDeployment(r, "tms-sync")
			if crm == nil || tms == nil {
				return
			}
			crmEnv, tmsEnv := envMap(crm.Spec.Template.Spec.Containers[0]), envMap(tms.Spec.Template.Spec.Containers[0])
			if crmEnv["CRMSYNC_CRM"] == "" || crmEnv["CRMSYNC_CRM"] == "followupboss" {
				if tmsEnv["TMSSYNC_CRM"] != "followupboss" || (tmsEnv["TMSSYNC_FUB_API_KEY_FILE"] == "" && tmsEnv["TMSSYNC_FUB_API_KEY"] == "") {
					t.Errorf("tms-sync: TMSSYNC_CRM=%q and no Follow Up Boss key, but crm-sync's CRM is Follow Up Boss: every loop would go to the default agent", tmsEnv["TMSSYNC_CRM"])
				}
				if baseOverlay(ov) == "dev" && !strings.Contains(tmsEnv["TMSSYNC_FUB_BASE_URL"], "sandbox") {
					t.Errorf("tms-sync in dev reads Follow Up Boss at %q, not the sandbox", tmsEnv["TMSSYNC_FUB_BASE_URL"])
				}
			}
		})
	}
}

// TestSecretFilesAreMounted: every <SETTING>_FILE a Deployment sets lies
// under one of its container's volume mounts; a path outside them is a
// file that does not exist, and the service refuses to start.
func TestSecretFilesAreMounted(t *testing.T) {
	for _, ov := range overlays(t) {
		t.Run(ov, func(t *testing.T) {
			r := load(t, ov)
			for _, d := range r.deployments {
				c := d.Spec.Template.Spec.Containers[0]
				for _, e := range c.Env {
					if !strings.HasSuffix(e.Name, "_FILE") || e.Value == "" {
						continue
					}
					if !mounted(c, e.Value) {
						t.Errorf("%s: %s=%s is under none of its volume mounts", d.Name, e.Name, e.Value)
					}
				}
			}
		})
	}
}

func envVar(env []corev1.EnvVar, name string) (corev1.EnvVar, bool) {
	for _, e := range env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func mounted(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}
