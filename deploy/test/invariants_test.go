package deploytest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natsauth"
)

// rendered is an overlay's objects, decoded.
type rendered struct {
	name        string
	objs        []object
	deployments []appsv1.Deployment
	jobs        []batchv1.Job
	services    []corev1.Service
	accounts    []corev1.ServiceAccount
	pdbs        []policyv1.PodDisruptionBudget
	policies    []networkingv1.NetworkPolicy
	ingresses   []networkingv1.Ingress
	configMaps  []corev1.ConfigMap
}

func load(t *testing.T, overlay string) rendered {
	t.Helper()
	r := rendered{name: overlay, objs: render(t, kustomization(overlay))}
	for _, o := range r.objs {
		var err error
		switch o.Kind {
		case "Deployment":
			var d appsv1.Deployment
			err = decode(o, &d)
			r.deployments = append(r.deployments, d)
		case "Job":
			var j batchv1.Job
			err = decode(o, &j)
			r.jobs = append(r.jobs, j)
		case "Service":
			var s corev1.Service
			err = decode(o, &s)
			r.services = append(r.services, s)
		case "ServiceAccount":
			var s corev1.ServiceAccount
			err = decode(o, &s)
			r.accounts = append(r.accounts, s)
		case "PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			err = decode(o, &p)
			r.pdbs = append(r.pdbs, p)
		case "NetworkPolicy":
			var p networkingv1.NetworkPolicy
			err = decode(o, &p)
			r.policies = append(r.policies, p)
		case "Ingress":
			var i networkingv1.Ingress
			err = decode(o, &i)
			r.ingresses = append(r.ingresses, i)
		case "ConfigMap":
			var c corev1.ConfigMap
			err = decode(o, &c)
			r.configMaps = append(r.configMaps, c)
		}
		if err != nil {
			t.Fatalf("%s: %v", o, err)
		}
	}
	return r
}

// workload is a pod template and whose it is.
type workload struct {
	kind, name string
	pod        corev1.PodTemplateSpec
}

func (r rendered) workloads() []workload {
	var out []workload
	for _, d := range r.deployments {
		out = append(out, workload{"Deployment", d.Name, d.Spec.Template})
	}
	for _, j := range r.jobs {
		out = append(out, workload{"Job", j.Name, j.Spec.Template})
	}
	return out
}

// Every pod runs as uid 65532, non-root, with a read-only root filesystem, every capability
// dropped, no privilege escalation, the runtime's seccomp profile, no service account token,
// and requests and limits for CPU and memory.
func TestHardening(t *testing.T) {
	for _, ov := range overlays(t) {
		t.Run(ov, func(t *testing.T) {
			r := load(t, ov)
			if len(r.workloads()) == 0 {
				t.Fatal("no workloads")
			}
			for _, w := range r.workloads() {
				at := w.kind + " " + w.name
				ps := w.pod.Spec
				psc := ps.SecurityContext
				if psc == nil {
					t.Errorf("%s: no pod securityContext", at)
				} else {
					if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
						t.Errorf("%s: pod runAsNonRoot is not true", at)
					}
					if psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.RunAsGroup == nil || *psc.RunAsGroup != 65532 {
						t.Errorf("%s: pod must run as uid and gid 65532 (the images' user)", at)
					}
					if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
						t.Errorf("%s: seccompProfile is not RuntimeDefault", at)
					}
				}
				if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
					t.Errorf("%s: automountServiceAccountToken is not false", at)
				}
				if ps.ServiceAccountName == "" || !slices.ContainsFunc(r.accounts, func(a corev1.ServiceAccount) bool { return a.Name == ps.ServiceAccountName }) {
					t.Errorf("%s: service account %q is not in the overlay", at, ps.ServiceAccountName)
				}
				if ps.HostNetwork || ps.HostPID || ps.HostIPC {
					t.Errorf("%s: shares a host namespace", at)
				}
				for _, c := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
					at := at + " container " + c.Name
					sc := c.SecurityContext
					if sc == nil {
						t.Errorf("%s: no securityContext", at)
						continue
					}
					if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
						t.Errorf("%s: readOnlyRootFilesystem is not true", at)
					}
					if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
						t.Errorf("%s: allowPrivilegeEscalation is not false", at)
					}
					if sc.Privileged != nil && *sc.Privileged {
						t.Errorf("%s: privileged", at)
					}
					if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
						t.Errorf("%s: capabilities must drop ALL and add none", at)
					}
					if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
						t.Errorf("%s: runs as root", at)
					}
					for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						if _, ok := c.Resources.Requests[res]; !ok {
							t.Errorf("%s: no %s request", at, res)
						}
						if _, ok := c.Resources.Limits[res]; !ok {
							t.Errorf("%s: no %s limit", at, res)
						}
					}
					if img := c.Image; !strings.Contains(img[strings.LastIndex(img, "/")+1:], ":") || strings.HasSuffix(img, ":latest") {
						t.Errorf("%s: image %q has no tag, or :latest", at, img)
					}
				}
			}
		})
	}
}

// Every service's Deployment runs its own image, probes its ops endpoints on the port its
// <PREFIX>OPS_ADDR names, gives shutdown time to finish (the grace period is longer than the
// preStop sleep plus twice <PREFIX>SHUTDOWN_TIMEOUT: the handlers' wait, then the NATS drain),
// connects as its own NATS user from the Secret `brokerflow users secrets` renders, and has a
// PodDisruptionBudget and a NetworkPolicy that select its pods.
func TestServicesWiring(t *testing.T) {
	built := builtServices(t)
	for _, ov := range overlays(t) {
		t.Run(ov, func(t *testing.T) {
			r := load(t, ov)
			natsNS := natsNamespace(t, r)
			for _, svc := range bus.Services {
				d := findDeployment(r, svc.Name)
				if d == nil {
					t.Errorf("no Deployment %s for the service bus.Services declares", svc.Name)
					continue
				}
				prefix := envPrefix(t, svc.Name)
				checkService(t, r, d, svc.Name, prefix, natsNS)
			}
			for _, d := range r.deployments {
				c := d.Spec.Template.Spec.Containers[0]
				if !slices.Contains(built, imageService(c.Image)) {
					t.Errorf("Deployment %s: image %s is not a service scripts/build-service builds (%v)", d.Name, c.Image, built)
				}
				checkDisruptionAndPolicy(t, r, d)
			}
		})
	}
}

func checkService(t *testing.T, r rendered, d *appsv1.Deployment, name, prefix, natsNS string) {
	t.Helper()
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("Deployment %s: want one container, have %d", name, len(spec.Containers))
	}
	c := spec.Containers[0]
	env := envMap(c)
	if got := imageService(c.Image); got != name {
		t.Errorf("Deployment %s runs the image of %q", name, got)
	}
	// Ops endpoints: the port of <PREFIX>OPS_ADDR is the container port named ops, probed.
	opsAddr, ok := env[prefix+"OPS_ADDR"]
	if !ok {
		t.Errorf("%s: %sOPS_ADDR is not set", name, prefix)
	}
	opsPort := containerPort(c, "ops")
	if _, p, _ := strings.Cut(opsAddr, ":"); p != strconv.Itoa(int(opsPort)) {
		t.Errorf("%s: %sOPS_ADDR %q, but the ops container port is %d", name, prefix, opsAddr, opsPort)
	}
	for probeName, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[probeName]
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", name, probeName)
			continue
		}
		if probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "ops" {
			t.Errorf("%s: %s probe is %s on %s, want %s on ops", name, probeName, probe.HTTPGet.Path, probe.HTTPGet.Port.String(), want)
		}
	}
	// Shutdown: the grace period covers the preStop sleep, the handlers' wait and the drain.
	st, ok := env[prefix+"SHUTDOWN_TIMEOUT"]
	if !ok {
		t.Errorf("%s: %sSHUTDOWN_TIMEOUT is not set", name, prefix)
	}
	shutdown, err := time.ParseDuration(st)
	if err != nil && ok {
		t.Errorf("%s: %sSHUTDOWN_TIMEOUT: %v", name, prefix, err)
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	need := preStop + 2*shutdown
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= need {
		t.Errorf("%s: terminationGracePeriodSeconds must exceed preStop %s + 2 x %sSHUTDOWN_TIMEOUT %s = %s", name, preStop, prefix, shutdown, need)
	}
	// Its own NATS user: the Secret `brokerflow users secrets` renders for it, mounted, and
	// <PREFIX>NATS_NKEY_FILE pointing at its key.
	checkNkey(t, spec, c, name, prefix+"NATS_NKEY_FILE", natsauth.SecretName(name))
	if u := env[prefix+"NATS_URL"]; u != "" {
		t.Errorf("%s: %sNATS_URL is a literal %q; take it from the brokerflow-nats ConfigMap", name, prefix, u)
	}
	checkNATSURLRef(t, r, c, name, prefix+"NATS_URL")
	checkEgressToNATS(t, r, d.Spec.Template.Labels, name, natsNS)
	// Every variable of its own prefix is one its code reads (a typo is a silent default).
	known := configVars(t, name, prefix)
	for k := range env {
		if strings.HasPrefix(k, prefix) && !known[k] {
			t.Errorf("%s: %s is not a setting of %s (config.go)", name, k, name)
		}
	}
}

func checkNkey(t *testing.T, spec corev1.PodSpec, c corev1.Container, who, envName, secret string) {
	t.Helper()
	file := envMap(c)[envName]
	if file == "" {
		t.Errorf("%s: %s is not set", who, envName)
		return
	}
	var vol string
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret {
			vol = v.Name
			if len(v.Secret.Items) > 0 {
				t.Errorf("%s: volume %s selects items of %s; mount the whole Secret", who, v.Name, secret)
			}
		}
	}
	if vol == "" {
		t.Errorf("%s: no volume of Secret %s (rendered by `brokerflow users secrets`)", who, secret)
		return
	}
	for _, m := range c.VolumeMounts {
		if m.Name == vol {
			if want := filepath.Join(m.MountPath, natsauth.SecretKey); file != want {
				t.Errorf("%s: %s=%s, but Secret %s's key is mounted at %s", who, envName, file, secret, want)
			}
			if !m.ReadOnly {
				t.Errorf("%s: the mount of %s is not read-only", who, secret)
			}
			return
		}
	}
	t.Errorf("%s: volume %s of Secret %s is not mounted", who, vol, secret)
}

func checkNATSURLRef(t *testing.T, r rendered, c corev1.Container, who, envName string) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name != envName {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
			t.Errorf("%s: %s is not taken from a ConfigMap", who, envName)
			return
		}
		ref := e.ValueFrom.ConfigMapKeyRef
		for _, cm := range r.configMaps {
			if cm.Name == ref.Name {
				if _, ok := cm.Data[ref.Key]; !ok {
					t.Errorf("%s: %s: ConfigMap %s has no key %s", who, envName, ref.Name, ref.Key)
				}
				return
			}
		}
		t.Errorf("%s: %s: no ConfigMap %s in the overlay", who, envName, ref.Name)
		return
	}
	t.Errorf("%s: %s is not set", who, envName)
}

// natsNamespace is the namespace of the NATS URL every pod uses (brokerflow-nats).
func natsNamespace(t *testing.T, r rendered) string {
	t.Helper()
	for _, cm := range r.configMaps {
		if strings.HasPrefix(cm.Name, "brokerflow-nats") {
			u, err := url.Parse(cm.Data["url"])
			if err != nil || u.Scheme != "nats" {
				t.Fatalf("ConfigMap %s: url %q is not a nats:// URL", cm.Name, cm.Data["url"])
			}
			parts := strings.Split(u.Hostname(), ".")
			if len(parts) < 3 || parts[0] != "nats" || parts[2] != "svc" || u.Port() != "4222" {
				t.Fatalf("ConfigMap %s: url %q is not the NATS chart's Service nats.<namespace>.svc...:4222", cm.Name, cm.Data["url"])
			}
			return parts[1]
		}
	}
	t.Fatal("no ConfigMap brokerflow-nats")
	return ""
}

func checkEgressToNATS(t *testing.T, r rendered, podLabels map[string]string, who, natsNS string) {
	t.Helper()
	for _, p := range selectingPolicies(r, podLabels) {
		for _, e := range p.Spec.Egress {
			for _, to := range e.To {
				if to.NamespaceSelector == nil || to.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != natsNS {
					continue
				}
				for _, port := range e.Ports {
					if port.Port != nil && port.Port.IntValue() == 4222 {
						return
					}
				}
			}
		}
	}
	t.Errorf("%s: no NetworkPolicy lets it reach NATS (namespace %s, port 4222)", who, natsNS)
}

func selectingPolicies(r rendered, podLabels map[string]string) []networkingv1.NetworkPolicy {
	var out []networkingv1.NetworkPolicy
	for _, p := range r.policies {
		sel, err := metaSelector(p.Spec.PodSelector.MatchLabels)
		if err == nil && sel.Matches(labels.Set(podLabels)) {
			out = append(out, p)
		}
	}
	return out
}

func metaSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

// Every Deployment and Job has a NetworkPolicy (ingress and egress) selecting its pods, and every
// Deployment a PodDisruptionBudget.
func checkDisruptionAndPolicy(t *testing.T, r rendered, d appsv1.Deployment) {
	t.Helper()
	podLabels := d.Spec.Template.Labels
	sel, err := metaSelector(d.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(labels.Set(podLabels)) {
		t.Errorf("Deployment %s: its selector does not select its own pods", d.Name)
	}
	n := 0
	for _, p := range r.pdbs {
		if s, err := metaSelector(p.Spec.Selector.MatchLabels); err == nil && s.Matches(labels.Set(podLabels)) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("Deployment %s: %d PodDisruptionBudgets select its pods, want 1", d.Name, n)
	}
	pols := selectingPolicies(r, podLabels)
	if len(pols) == 0 {
		t.Errorf("Deployment %s: no NetworkPolicy selects its pods", d.Name)
	}
	for _, p := range pols {
		if !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			t.Errorf("NetworkPolicy %s: policyTypes must be Ingress and Egress", p.Name)
		}
	}
}

// Services select pods and name their ports; the Ingress routes to a Service port.
func TestServicesAndIngressReferences(t *testing.T) {
	for _, ov := range overlays(t) {
		t.Run(ov, func(t *testing.T) {
			r := load(t, ov)
			for _, s := range r.services {
				sel, err := metaSelector(s.Spec.Selector)
				if err != nil {
					t.Errorf("Service %s: no selector", s.Name)
					continue
				}
				var target *appsv1.Deployment
				for i, d := range r.deployments {
					if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						target = &r.deployments[i]
					}
				}
				if target == nil {
					t.Errorf("Service %s selects no Deployment's pods", s.Name)
					continue
				}
				for _, p := range s.Spec.Ports {
					if containerPort(target.Spec.Template.Spec.Containers[0], p.TargetPort.String()) == 0 {
						t.Errorf("Service %s: targetPort %s is not a port of %s", s.Name, p.TargetPort.String(), target.Name)
					}
				}
			}
			if find(r.objs, "Service", "ingest-gateway-grpc") == nil {
				t.Error("no Service ingest-gateway-grpc for the gRPC intake")
			}
			if len(r.ingresses) == 0 {
				t.Error("no Ingress for the gateway")
			}
			for _, ing := range r.ingresses {
				for _, rule := range ing.Spec.Rules {
					for _, p := range rule.HTTP.Paths {
						b := p.Backend.Service
						i := slices.IndexFunc(r.services, func(s corev1.Service) bool { return s.Name == b.Name })
						if i < 0 {
							t.Errorf("Ingress %s: no Service %s", ing.Name, b.Name)
							continue
						}
						if !slices.ContainsFunc(r.services[i].Spec.Ports, func(sp corev1.ServicePort) bool {
							return sp.Name == b.Port.Name || (b.Port.Number != 0 && sp.Port == b.Port.Number)
						}) {
							t.Errorf("Ingress %s: Service %s has no port %q/%d", ing.Name, b.Name, b.Port.Name, b.Port.Number)
						}
						if b.Name == "ingest-gateway" && !strings.HasPrefix(p.Path, "/webhooks") {
							t.Errorf("Ingress %s exposes %s; only /webhooks/ may be public", ing.Name, p.Path)
						}
					}
				}
			}
		})
	}
}

// The apply Job runs `brokerflow streams apply` as the operator user, at R1 in dev and R3 in
// prod, and no Secret is committed in any overlay.
func TestApplyJobAndSecrets(t *testing.T) {
	wantReplicas := map[string]string{"dev": "1", "prod": "3"}
	for _, ov := range overlays(t) {
		t.Run(ov, func(t *testing.T) {
			r := load(t, ov)
			if s := ofKind(r.objs, "Secret"); len(s) > 0 {
				t.Errorf("the overlay renders Secrets %v; Secrets are referenced, never committed", s)
			}
			if len(r.jobs) != 1 {
				t.Fatalf("want one Job (streams apply), have %d", len(r.jobs))
			}
			j := r.jobs[0]
			c := j.Spec.Template.Spec.Containers[0]
			if imageService(c.Image) != "brokerflow" || !slices.Equal(c.Args, []string{"streams", "apply"}) {
				t.Errorf("Job %s runs %s %v, want the brokerflow image with streams apply", j.Name, c.Image, c.Args)
			}
			checkNkey(t, j.Spec.Template.Spec, c, "Job "+j.Name, "BROKERFLOW_NATS_NKEY_FILE", natsauth.SecretName(bus.UserOperator))
			checkNATSURLRef(t, r, c, "Job "+j.Name, "BROKERFLOW_NATS_URL")
			checkEgressToNATS(t, r, j.Spec.Template.Labels, "Job "+j.Name, natsNamespace(t, r))
			if want, ok := wantReplicas[baseOverlay(ov)]; ok && envMap(c)["BROKERFLOW_BUS_REPLICAS"] != want {
				t.Errorf("Job %s: BROKERFLOW_BUS_REPLICAS=%q, want %s in %s", j.Name, envMap(c)["BROKERFLOW_BUS_REPLICAS"], want, ov)
			}
			if len(selectingPolicies(r, j.Spec.Template.Labels)) == 0 {
				t.Errorf("Job %s: no NetworkPolicy selects its pods", j.Name)
			}
		})
	}
}

// The kustomizations use labels:, not the deprecated commonLabels (which also rewrites
// selectors, including a NetworkPolicy's peers).
func TestNoCommonLabels(t *testing.T) {
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if regexp.MustCompile(`(?m)^commonLabels:`).Match(b) {
			t.Errorf("%s uses commonLabels; use labels:", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func findDeployment(r rendered, name string) *appsv1.Deployment {
	for i := range r.deployments {
		if r.deployments[i].Name == name {
			return &r.deployments[i]
		}
	}
	return nil
}

func envMap(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name || strconv.Itoa(int(p.ContainerPort)) == name {
			return p.ContainerPort
		}
	}
	return 0
}

// imageService is the service an image reference names: brokerflow/<service>, with any
// registry before it and any tag after it.
func imageService(image string) string {
	name := image[strings.LastIndex(image, "/")+1:]
	name, _, _ = strings.Cut(name, "@")
	name, _, _ = strings.Cut(name, ":")
	return name
}

var prefixRE = regexp.MustCompile(`(?m)^const Prefix = "([A-Z_]+)"`)

// envPrefix reads the service's environment prefix from its code (const Prefix).
func envPrefix(t *testing.T, svc string) string {
	t.Helper()
	var found string
	_ = filepath.WalkDir(filepath.Join(repoRoot, "services", svc), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if m := prefixRE.FindSubmatch(b); m != nil {
			found = string(m[1])
		}
		return nil
	})
	if found == "" {
		t.Fatalf("services/%s declares no `const Prefix = \"...\"`", svc)
	}
	return found
}

var envTagRE = regexp.MustCompile("`[^`]*env:\"([A-Z0-9_]+)\"[^`]*`")
var prefixTagRE = regexp.MustCompile("`[^`]*envPrefix:\"([A-Z0-9_]+)\"[^`]*`")

// configVars is every variable a service reads: its Config's env tags under its prefix, with
// the nested prefixes (NATS_, BUS_, LOG_, FUB_, ...) and the shared structs of pkg/service. It
// over-approximates (any tag under any nested prefix), which is enough to catch a typo.
func configVars(t *testing.T, svc, prefix string) map[string]bool {
	t.Helper()
	var leaves, nested []string
	// The CRM and TMS adapters own their settings (pkg/crm/<vendor>, pkg/tms/<vendor>), read
	// under crm-sync's and tms-sync's prefixes.
	for _, dir := range []string{filepath.Join(repoRoot, "services", svc), filepath.Join(repoRoot, "pkg", "service"), filepath.Join(repoRoot, "pkg", "crm"), filepath.Join(repoRoot, "pkg", "tms"), filepath.Join(repoRoot, "pkg", "ledger")} {
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range envTagRE.FindAllSubmatch(b, -1) {
				leaves = append(leaves, string(m[1]))
			}
			for _, m := range prefixTagRE.FindAllSubmatch(b, -1) {
				nested = append(nested, string(m[1]))
			}
			return nil
		})
	}
	known := map[string]bool{}
	for _, l := range leaves {
		known[prefix+l] = true
		for _, n := range nested {
			known[prefix+n+l] = true
		}
	}
	return known
}

var (
	builtOnce sync.Once
	builtList []string
	builtErr  error
)

// builtServices is `scripts/build-service --list`.
func builtServices(t *testing.T) []string {
	t.Helper()
	builtOnce.Do(func() {
		out, err := exec.CommandContext(context.Background(), filepath.Join(repoRoot, "scripts", "build-service"), "--list").Output()
		builtList, builtErr = strings.Fields(string(out)), err
	})
	if builtErr != nil || len(builtList) == 0 {
		t.Fatalf("scripts/build-service --list: %v %v", builtList, builtErr)
	}
	return builtList
}
