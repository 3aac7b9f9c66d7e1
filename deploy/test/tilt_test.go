package deploytest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// tiltCalls records what the Tiltfile asked Tilt for.
type tiltCalls struct {
	images    map[string]map[string]starlark.Value // docker_build ref -> kwargs
	locals    map[string]map[string]starlark.Value // local_resource name -> kwargs
	resources map[string]map[string]starlark.Value // k8s_resource name -> kwargs
	helm      map[string]map[string]starlark.Value // helm_resource name -> kwargs
	yaml      []map[string]any                     // k8s_yaml's objects
	syncs     []string                             // sync(src, dest) sources
}

// The Tiltfile, evaluated by a Starlark interpreter with stand-ins for Tilt's functions (the
// real `tilt` could not be installed; see docs/deploy.md): it builds an image for every service
// scripts/build-service knows, from a host binary with live_update, deploys the dev overlay and
// NATS, and makes every workload of the dev overlay a resource that waits on NATS.
func TestTiltfile(t *testing.T) {
	calls := evalTiltfile(t)
	built := builtServices(t)
	dev := load(t, "dev")

	for _, svc := range built {
		ref := "brokerflow/" + svc
		kw, ok := calls.images[ref]
		if !ok {
			t.Errorf("no docker_build of %s", ref)
			continue
		}
		if lu, _ := kw["live_update"].(*starlark.List); lu == nil || lu.Len() < 2 {
			t.Errorf("docker_build %s: want live_update with a sync and a restart", ref)
		}
		lr, ok := calls.locals[svc+"-binary"]
		if !ok {
			t.Errorf("no local_resource %s-binary builds %s on the host", svc, svc)
		} else if cmd, _ := starlark.AsString(lr["cmd"]); !strings.Contains(cmd, "scripts/build-service "+svc+" ") {
			t.Errorf("local_resource %s-binary runs %q, not scripts/build-service", svc, cmd)
		}
	}
	for ref := range calls.images {
		if !slices.Contains(built, imageService(ref)) {
			t.Errorf("docker_build %s: not a service scripts/build-service builds", ref)
		}
	}
	// Every workload of the dev overlay is a resource; services wait on NATS and the apply Job.
	var workloads []string
	for _, w := range dev.workloads() {
		workloads = append(workloads, w.name)
		c := w.pod.Spec.Containers[0]
		if _, ok := calls.images[strings.Split(c.Image, ":")[0]]; !ok {
			t.Errorf("%s %s runs %s, which Tilt does not build", w.kind, w.name, c.Image)
		}
		kw, ok := calls.resources[w.name]
		if !ok {
			t.Errorf("no k8s_resource for %s %s", w.kind, w.name)
			continue
		}
		deps := stringList(kw["resource_deps"])
		if w.name != "sandbox" && !slices.Contains(deps, "nats") {
			t.Errorf("k8s_resource %s does not wait on nats: %v", w.name, deps)
		}
		if w.kind == "Deployment" && w.name != "sandbox" && !slices.Contains(deps, "streams-apply") {
			t.Errorf("k8s_resource %s does not wait on the apply Job: %v", w.name, deps)
		}
		if labels := stringList(kw["labels"]); len(labels) == 0 {
			t.Errorf("k8s_resource %s has no labels", w.name)
		}
	}
	for name := range calls.resources {
		if !slices.Contains(workloads, name) {
			t.Errorf("k8s_resource %s: no such workload in the dev overlay", name)
		}
	}
	if _, ok := calls.helm["nats"]; !ok {
		t.Error("no helm_resource nats")
	} else if flags := strings.Join(stringList(calls.helm["nats"]["flags"]), " "); !strings.Contains(flags, "deploy/nats/values-dev.yaml") {
		t.Errorf("helm_resource nats: flags %q do not use deploy/nats/values-dev.yaml", flags)
	}
	// What Tilt deploys is the dev overlay, with only readOnlyRootFilesystem lifted.
	if len(calls.yaml) != len(dev.objs) {
		t.Errorf("k8s_yaml got %d objects, the dev overlay has %d", len(calls.yaml), len(dev.objs))
	}
	for _, src := range calls.syncs {
		if !strings.HasPrefix(src, "bin/linux/") {
			t.Errorf("live_update syncs %s, not a host-built binary", src)
		}
	}
}

func stringList(v starlark.Value) []string {
	l, ok := v.(*starlark.List)
	if !ok {
		return nil
	}
	var out []string
	for i := range l.Len() {
		if s, ok := starlark.AsString(l.Index(i)); ok {
			out = append(out, s)
		}
	}
	return out
}

func evalTiltfile(t *testing.T) *tiltCalls {
	t.Helper()
	calls := &tiltCalls{
		images: map[string]map[string]starlark.Value{}, locals: map[string]map[string]starlark.Value{},
		resources: map[string]map[string]starlark.Value{}, helm: map[string]map[string]starlark.Value{},
	}
	record := func(into map[string]map[string]starlark.Value) *starlark.Builtin {
		return starlark.NewBuiltin("record", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s: no name", b.Name())
			}
			name, _ := starlark.AsString(args[0])
			kw := map[string]starlark.Value{}
			for i, a := range args[1:] {
				kw[fmt.Sprintf("$%d", i+1)] = a
			}
			for _, p := range kwargs {
				k, _ := starlark.AsString(p[0])
				kw[k] = p[1]
			}
			if _, dup := into[name]; dup {
				return nil, fmt.Errorf("%s %q declared twice", b.Name(), name)
			}
			into[name] = kw
			return starlark.None, nil
		})
	}
	noop := starlark.NewBuiltin("noop", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		return starlark.None, nil
	})
	step := func(name string) *starlark.Builtin {
		return starlark.NewBuiltin(name, func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			if name == "sync" && len(args) > 0 {
				s, _ := starlark.AsString(args[0])
				calls.syncs = append(calls.syncs, s)
			}
			return starlark.String(name), nil
		})
	}
	predeclared := starlark.StringDict{
		"allow_k8s_contexts": noop,
		"local_resource":     record(calls.locals),
		"docker_build":       record(calls.images),
		"k8s_resource":       record(calls.resources),
		"sync":               step("sync"),
		"run":                step("run"),
		"kustomize": starlark.NewBuiltin("kustomize", func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			dir, _ := starlark.AsString(args[0])
			m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, dir))
			if err != nil {
				return nil, err
			}
			b, err := m.AsYaml()
			return starlark.String(b), err
		}),
		"decode_yaml_stream": starlark.NewBuiltin("decode_yaml_stream", func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			s, _ := starlark.AsString(args[0])
			var out []starlark.Value
			for doc := range strings.SplitSeq(s, "\n---\n") {
				var v any
				if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
					return nil, err
				}
				out = append(out, toStarlark(v))
			}
			return starlark.NewList(out), nil
		}),
		"encode_yaml_stream": starlark.NewBuiltin("encode_yaml_stream", func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			return args[0], nil // k8s_yaml below reads the list itself
		}),
		"k8s_yaml": starlark.NewBuiltin("k8s_yaml", func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			l, ok := args[0].(*starlark.List)
			if !ok {
				return nil, fmt.Errorf("k8s_yaml: want the encoded stream of the overlay, got %s", args[0].Type())
			}
			for i := range l.Len() {
				if m, ok := fromStarlark(l.Index(i)).(map[string]any); ok {
					calls.yaml = append(calls.yaml, m)
				}
			}
			return starlark.None, nil
		}),
	}
	helmExt := starlark.StringDict{"helm_repo": noop, "helm_resource": record(calls.helm)}
	opts := &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true}
	cache := map[string]starlark.StringDict{}
	var load func(*starlark.Thread, string) (starlark.StringDict, error)
	load = func(th *starlark.Thread, module string) (starlark.StringDict, error) {
		if module == "ext://helm_resource" {
			return helmExt, nil
		}
		if strings.Contains(module, "://") {
			return nil, fmt.Errorf("extension %s has no stand-in in tilt_test.go", module)
		}
		if g, ok := cache[module]; ok {
			return g, nil
		}
		src, err := os.ReadFile(filepath.Join(repoRoot, module))
		if err != nil {
			return nil, err
		}
		g, err := starlark.ExecFileOptions(opts, &starlark.Thread{Name: module, Load: load}, module, src, predeclared)
		cache[module] = g
		return g, err
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "Tiltfile"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := starlark.ExecFileOptions(opts, &starlark.Thread{Name: "Tiltfile", Load: load}, "Tiltfile", src, predeclared); err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			t.Fatalf("Tiltfile: %s", ee.Backtrace())
		}
		t.Fatalf("Tiltfile: %v", err)
	}
	return calls
}

func toStarlark(v any) starlark.Value {
	switch v := v.(type) {
	case map[string]any:
		d := starlark.NewDict(len(v))
		for k, e := range v {
			_ = d.SetKey(starlark.String(k), toStarlark(e))
		}
		return d
	case []any:
		var l []starlark.Value
		for _, e := range v {
			l = append(l, toStarlark(e))
		}
		return starlark.NewList(l)
	case string:
		return starlark.String(v)
	case bool:
		return starlark.Bool(v)
	case float64:
		if v == float64(int64(v)) {
			return starlark.MakeInt64(int64(v))
		}
		return starlark.Float(v)
	case nil:
		return starlark.None
	}
	return starlark.String(fmt.Sprint(v))
}

func fromStarlark(v starlark.Value) any {
	switch v := v.(type) {
	case *starlark.Dict:
		m := map[string]any{}
		for _, k := range v.Keys() {
			e, _, _ := v.Get(k)
			ks, _ := starlark.AsString(k)
			m[ks] = fromStarlark(e)
		}
		return m
	case *starlark.List:
		var l []any
		for i := range v.Len() {
			l = append(l, fromStarlark(v.Index(i)))
		}
		return l
	case starlark.String:
		return string(v)
	case starlark.Bool:
		return bool(v)
	case starlark.Int:
		i, _ := v.Int64()
		return i
	}
	return v.String()
}
