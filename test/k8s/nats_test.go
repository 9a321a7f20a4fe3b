package k8s

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// With the official NATS chart as the dependency (needs ../shared/charts; skipped without it, failed
// under CI): its objects decode strictly too, the values the hpa chart sets for it land where they
// should (the NATS chart has no schema: a misspelled key would be ignored silently), and KEDA's
// monitoring endpoint is the headless service NATS really renders, with the monitoring port. The
// clustered case (3 servers) is the one where KEDA must find the consumer leader through it.
func TestChartWithNATSSubchart(t *testing.T) {
	for _, c := range []struct {
		name     string
		values   map[string]any
		replicas int32
	}{
		{"single", map[string]any{}, 1},
		{"clustered", map[string]any{"nats": map[string]any{"config": map[string]any{"cluster": map[string]any{"enabled": true}}}}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := renderCase(t, true, c.values)
			checkInvariants(t, r)
			var sts *appsv1.StatefulSet
			for _, s := range objectsOf[*appsv1.StatefulSet](r) {
				if s.Name == release+"-nats" {
					sts = s
				}
			}
			if sts == nil {
				t.Fatal("no NATS StatefulSet")
			}
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != c.replicas {
				t.Errorf("NATS replicas %v, want %d", sts.Spec.Replicas, c.replicas)
			}
			// Streams and KV buckets get as many replicas as the bundled NATS has servers.
			if got, _ := lookup(r.config(t), "nats.replicas"); fmt.Sprint(got) != fmt.Sprint(c.replicas) {
				t.Errorf("config nats.replicas %v, want %d (the NATS servers)", got, c.replicas)
			}
			if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "20Gi" {
				t.Errorf("JetStream PVC: %+v", sts.Spec.VolumeClaimTemplates)
			}
			for _, ctr := range sts.Spec.Template.Spec.Containers {
				if ctr.Resources.Limits.Memory().IsZero() || ctr.Resources.Requests.Cpu().IsZero() {
					t.Errorf("NATS container %s without resources (nats.container/reloader.merge)", ctr.Name)
				}
			}
			endpoint := scaledObjects(r)["inference"].Spec.Triggers[0].Metadata["natsServerMonitoringEndpoint"]
			host, port, _ := strings.Cut(endpoint, ":")
			svcName, _, _ := strings.Cut(host, ".")
			var headless *corev1.Service
			for _, s := range objectsOf[*corev1.Service](r) {
				if s.Name == svcName {
					headless = s
				}
			}
			if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Fatalf("KEDA endpoint %s: no headless Service %s rendered", endpoint, svcName)
			}
			hasPort := false
			for _, p := range headless.Spec.Ports {
				hasPort = hasPort || p.Port == 8222 && port == "8222"
			}
			if !hasPort {
				t.Errorf("headless Service %s has no monitoring port %s: %+v", svcName, port, headless.Spec.Ports)
			}
			// KEDA reaches a server as <server_name>.<endpoint>: server names must be the pod names.
			var cm *corev1.ConfigMap
			for _, x := range objectsOf[*corev1.ConfigMap](r) {
				if x.Name == release+"-nats-config" {
					cm = x
				}
			}
			if cm == nil || !regexp.MustCompile(`"?server_name"?:\s*\$SERVER_NAME`).MatchString(cm.Data["nats.conf"]) {
				t.Errorf("NATS server_name is not $SERVER_NAME: %v", cm)
			}
			var serverName, podName bool
			for _, ctr := range sts.Spec.Template.Spec.Containers {
				for _, e := range ctr.Env {
					serverName = serverName || e.Name == "SERVER_NAME" && e.Value == "$(POD_NAME)"
					podName = podName || e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
				}
			}
			if !serverName || !podName {
				t.Error("NATS SERVER_NAME is not the pod name (a serverNamePrefix breaks KEDA's <server>.<headless service> lookup)")
			}
			if cfg := r.config(t); !strings.HasPrefix(mustString(lookup(cfg, "nats.url")), "nats://"+release+"-nats.") {
				t.Errorf("nats.url does not name the NATS Service")
			}
		})
	}
}

func mustString(v any, _ bool) string { s, _ := v.(string); return s }
