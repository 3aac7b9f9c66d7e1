package deploytest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// typed maps each built-in kind the manifests use to its Go type; decode fills it strictly.
var typed = map[string]func() any{
	"v1/Namespace":                       func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                  func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                         func() any { return &corev1.Service{} },
	"v1/ConfigMap":                       func() any { return &corev1.ConfigMap{} },
	"apps/v1/Deployment":                 func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                       func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget":      func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return &networkingv1.NetworkPolicy{} },
	"networking.k8s.io/v1/Ingress":       func() any { return &networkingv1.Ingress{} },
}

// crds maps each custom kind to its CRD, vendored in testdata/crds (see its README for the
// source and version of each file).
var crds = map[string]string{
	"keda.sh/v1alpha1/ScaledObject":           "keda.sh_scaledobjects.yaml",
	"monitoring.coreos.com/v1/ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
	"monitoring.coreos.com/v1/PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}

// decode fills a typed object from o's JSON, failing on an unknown field, a field whose case
// differs from the API's, or a duplicate field: what `kubectl apply --validate=strict` refuses.
func decode(o object, into any) error {
	strict, err := kjson.UnmarshalStrict(o.JSON, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return &strictError{msgs}
	}
	return nil
}

type strictError struct{ msgs []string }

func (e *strictError) Error() string { return "strict decoding: " + strings.Join(e.msgs, "; ") }

// Every object is a kind the test knows: a built-in kind decoded strictly into its API type, or
// a custom kind validated against its CRD's schema with unknown fields refused.
func TestObjectsDecodeStrictly(t *testing.T) {
	schemas := map[string]*jsonschema.Schema{}
	for gvk, file := range crds {
		schemas[gvk] = crdSchema(t, file, gvk)
	}
	for _, ov := range overlays(t) {
		t.Run(ov, func(t *testing.T) {
			for _, o := range render(t, kustomization(ov)) {
				gvk := o.APIVersion + "/" + o.Kind
				if newObj, ok := typed[gvk]; ok {
					if err := decode(o, newObj()); err != nil {
						t.Errorf("%s: %v", o, err)
					}
					continue
				}
				sch, ok := schemas[gvk]
				if !ok {
					t.Errorf("%s: no Go type or CRD schema known for %s; add one to decode_test.go", o, gvk)
					continue
				}
				inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(o.JSON))
				if err != nil {
					t.Fatal(err)
				}
				if err := sch.Validate(inst); err != nil {
					t.Errorf("%s does not match its CRD's schema: %v", o, err)
				}
			}
		})
	}
}

// crdSchema compiles the openAPIV3Schema of gvk's version in the CRD file, made strict: an
// object schema that lists its properties refuses others, unless the CRD preserves unknown
// fields there (as the API server's strict field validation does).
func crdSchema(t *testing.T, file, gvk string) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "crds", file))
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Group    string                `json:"group"`
			Names    struct{ Kind string } `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, v := range crd.Spec.Versions {
		if crd.Spec.Group+"/"+v.Name+"/"+crd.Spec.Names.Kind != gvk {
			continue
		}
		if !v.Served {
			t.Fatalf("%s: %s is not served", file, gvk)
		}
		schema := strictSchema(v.Schema.OpenAPIV3Schema)
		js, err := yaml.Marshal(schema) // via JSON-compatible YAML, then JSON
		if err != nil {
			t.Fatal(err)
		}
		jb, err := yaml.YAMLToJSON(js)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(jb))
		if err != nil {
			t.Fatal(err)
		}
		c := jsonschema.NewCompiler()
		// OpenAPI v3.0 schemas are JSON Schema draft 4 in form (boolean exclusiveMinimum).
		c.DefaultDraft(jsonschema.Draft4)
		if err := c.AddResource(file, doc); err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return sch
	}
	t.Fatalf("%s does not define %s", file, gvk)
	return nil
}

// strictSchema returns s with additionalProperties false on every object schema that lists
// properties and neither preserves unknown fields nor says what other properties may be.
func strictSchema(s map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range s {
		switch k {
		case "properties", "patternProperties", "definitions":
			props := map[string]any{}
			for name, p := range v.(map[string]any) {
				if pm, ok := p.(map[string]any); ok {
					props[name] = strictSchema(pm)
				}
			}
			out[k] = props
		case "items", "additionalProperties", "not":
			if m, ok := v.(map[string]any); ok {
				out[k] = strictSchema(m)
			} else {
				out[k] = v
			}
		case "allOf", "anyOf", "oneOf":
			var list []any
			for _, p := range v.([]any) {
				if pm, ok := p.(map[string]any); ok {
					list = append(list, strictSchema(pm))
				}
			}
			out[k] = list
		default:
			out[k] = v
		}
	}
	_, hasProps := s["properties"]
	_, hasAdditional := s["additionalProperties"]
	preserve, _ := s["x-kubernetes-preserve-unknown-fields"].(bool)
	if hasProps && !hasAdditional && !preserve {
		out["additionalProperties"] = false
	}
	return out
}
