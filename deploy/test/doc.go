// Package deploytest checks deploy/: the kustomize overlays rendered in process, every object
// strictly decoded into its Kubernetes type or validated against its CRD's schema, the
// hardening and the cross-references between the manifests and the code (service names,
// ports, Secrets, JetStream consumers, metric names), the NATS chart's values, and the images'
// binaries built by scripts/build-service.
//
// It is a module of its own, outside the go.work workspace, so that the Kubernetes, kustomize
// and Prometheus modules it needs never move the workspace's versions. `make test` runs it with
// GOWORK=off. It reads pkg/bus (the declarations) through a replace directive.
package deploytest
