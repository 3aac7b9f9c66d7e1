package deploytest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// repoRoot is the repository's root, from this module's directory (deploy/test).
const repoRoot = "../.."

// object is one rendered manifest: its identity and its JSON.
type object struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	JSON       []byte
	// Map is JSON decoded into generic values, for the checks that read fields by path.
	Map map[string]any
}

func (o object) String() string { return fmt.Sprintf("%s/%s %s", o.APIVersion, o.Kind, o.Name) }

// overlays lists deploy/overlays/*, and the same overlays with vendor
// components (deploy/test/testdata/vendors/<overlay>+<component>…), so
// that every check holds whichever vendors a brokerage chooses.
func overlays(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{filepath.Join(repoRoot, "deploy", "overlays"), filepath.Join("testdata", "vendors")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, e.Name())
			}
		}
	}
	if !slices.Contains(out, "dev") || !slices.Contains(out, "prod") {
		t.Fatalf("overlays %v: want at least dev and prod", out)
	}
	return out
}

// kustomization is where the overlay name lies, under deploy/: an overlay
// with vendor components (its name has a "+") is one of deploy/test's own.
func kustomization(name string) string {
	if strings.Contains(name, "+") {
		return filepath.Join("test", "testdata", "vendors", name)
	}
	return filepath.Join("overlays", name)
}

// baseOverlay is the overlay of deploy/overlays that name starts from.
func baseOverlay(name string) string {
	base, _, _ := strings.Cut(name, "+")
	return base
}

var (
	renderMu    sync.Mutex
	renderCache = map[string][]object{}
)

// render runs kustomize (the krusty API, as `kubectl kustomize` does) on deploy/<path>.
func render(t *testing.T, path string) []object {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if objs, ok := renderCache[path]; ok {
		return objs
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, "deploy", path))
	if err != nil {
		t.Fatalf("kustomize build deploy/%s: %v", path, err)
	}
	var objs []object
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("deploy/%s: %s: %v", path, r.CurId(), err)
		}
		var mp map[string]any
		if err := json.Unmarshal(b, &mp); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, object{
			APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Name: r.GetName(), Namespace: r.GetNamespace(),
			JSON: b, Map: mp,
		})
	}
	if len(objs) == 0 {
		t.Fatalf("deploy/%s renders nothing", path)
	}
	renderCache[path] = objs
	return objs
}

// ofKind returns the objects of kind.
func ofKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// find returns the object of kind and name, or nil.
func find(objs []object, kind, name string) *object {
	for i := range objs {
		if objs[i].Kind == kind && objs[i].Name == name {
			return &objs[i]
		}
	}
	return nil
}

func TestOverlaysRender(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o, func(t *testing.T) {
			objs := render(t, kustomization(o))
			seen := map[string]bool{}
			for _, obj := range objs {
				if seen[obj.String()] {
					t.Errorf("%s rendered twice", obj)
				}
				seen[obj.String()] = true
				if obj.Kind != "Namespace" && obj.Namespace != "brokerflow" {
					t.Errorf("%s is in namespace %q, want brokerflow", obj, obj.Namespace)
				}
			}
		})
	}
}
