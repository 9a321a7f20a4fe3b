package k8s

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

const gpuResource = corev1.ResourceName("nvidia.com/gpu")

// rendered is one rendering of the chart, decoded.
type rendered struct {
	objs []object
}

func (r rendered) deployments() map[string]*appsv1.Deployment {
	out := map[string]*appsv1.Deployment{}
	for _, o := range r.objs {
		if d, ok := o.obj.(*appsv1.Deployment); ok {
			out[d.Labels["app.kubernetes.io/component"]] = d
		}
	}
	return out
}

func objectsOf[T any](r rendered) []T {
	var out []T
	for _, o := range r.objs {
		if x, ok := o.obj.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// config is the ConfigMap's config.yaml.
func (r rendered) config(t testing.TB) map[string]any {
	t.Helper()
	for _, cm := range objectsOf[*corev1.ConfigMap](r) {
		if cm.Name == release+"-config" {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &m); err != nil {
				t.Fatalf("config.yaml of the ConfigMap: %v", err)
			}
			return m
		}
	}
	t.Fatalf("no ConfigMap %s-config", release)
	return nil
}

func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func envOf(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// renderCase renders the chart with values (the NATS subchart in when withNATS), lints it, and
// decodes every object strictly.
func renderCase(t *testing.T, withNATS bool, values map[string]any) rendered {
	t.Helper()
	chart := chartDir(t, withNATS)
	if out, err := lint(t, chart, values); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	manifest, err := render(t, chart, values)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatal("nothing rendered")
	}
	return rendered{objs: objs}
}

// checkInvariants holds for every rendering: hardened pods with probes, resources on every
// container, the GPU only where asked for, no Secret and no secret in the ConfigMap.
func checkInvariants(t *testing.T, r rendered) {
	t.Helper()
	podSpecs := map[string]corev1.PodSpec{}
	for _, o := range r.objs {
		switch x := o.obj.(type) {
		case *appsv1.Deployment:
			if x.Labels["app.kubernetes.io/name"] == "hpa" {
				podSpecs[o.String()] = x.Spec.Template.Spec
				if x.Spec.Template.Annotations["checksum/config"] == "" {
					t.Errorf("%s: no checksum/config annotation (a changed ConfigMap would not roll the pods)", o)
				}
				// `hpa web` listens on web.addr and serves no /metrics.
				if x.Labels["app.kubernetes.io/component"] == "web" {
					if _, ok := x.Spec.Template.Annotations["prometheus.io/scrape"]; ok {
						t.Errorf("%s: scrape annotations on the viewer, which serves no /metrics", o)
					}
					if e, ok := envOf(x.Spec.Template.Spec.Containers[0], "HPA_WEB_ADDR"); !ok ||
						e.Value != fmt.Sprintf(":%d", x.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort) {
						t.Errorf("%s: HPA_WEB_ADDR %q is not the container port", o, e.Value)
					}
				}
			}
		case *corev1.Service:
			if x.Labels["hpa.io/metrics"] == "true" && x.Labels["app.kubernetes.io/component"] == "web" {
				t.Errorf("%s: a metrics Service for the viewer, which serves no /metrics", o)
			}
		case *batchv1.Job:
			podSpecs[o.String()] = x.Spec.Template.Spec
		case *corev1.Secret:
			if x.Labels["app.kubernetes.io/name"] == "hpa" {
				t.Errorf("%s: the chart renders no Secret (credentials come from existing Secrets)", o)
			}
		}
	}
	for name, ps := range podSpecs {
		psc := ps.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil ||
			psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod security context not non-root + seccomp RuntimeDefault: %+v", name, psc)
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token it does not use", name)
		}
		for _, c := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s container %s: security context not hardened: %+v", name, c.Name, sc)
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[res]; !ok {
					t.Errorf("%s container %s: no %s request", name, c.Name, res)
				}
				if _, ok := c.Resources.Limits[res]; !ok {
					t.Errorf("%s container %s: no %s limit", name, c.Name, res)
				}
			}
			if len(c.Command) != 1 || c.Command[0] != "hpa" || !slices.Contains(c.Args, "--config") {
				t.Errorf("%s container %s: not `hpa ... --config /etc/hpa/config.yaml`: %q %q", name, c.Name, c.Command, c.Args)
			}
			if len(c.Ports) > 0 {
				// `hpa web` serves /healthz beside its pages, and no /readyz.
				ready := "/readyz"
				if c.Name == "web" {
					ready = "/healthz"
				}
				if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
					c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != ready {
					t.Errorf("%s container %s: liveness /healthz and readiness %s expected", name, c.Name, ready)
				}
				if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
					t.Errorf("%s container %s: no preStop hook", name, c.Name)
				}
			}
			for _, e := range c.Env {
				if strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "PASSWORD") || strings.Contains(e.Name, "TOKEN") {
					if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						t.Errorf("%s container %s: %s is not taken from a Secret", name, c.Name, e.Name)
					}
				}
			}
			_, gpuLimit := c.Resources.Limits[gpuResource]
			hasTol := slices.ContainsFunc(ps.Tolerations, func(t corev1.Toleration) bool { return t.Key == string(gpuResource) })
			if gpuLimit != hasTol {
				t.Errorf("%s: GPU limit %v but GPU toleration %v", name, gpuLimit, hasTol)
			}
			if gpuLimit != strings.Contains(c.Image, "-gpu") {
				t.Errorf("%s: GPU limit %v but image %s", name, gpuLimit, c.Image)
			}
		}
		if ps.TerminationGracePeriodSeconds == nil || *ps.TerminationGracePeriodSeconds < 30 {
			t.Errorf("%s: terminationGracePeriodSeconds %v too short to drain", name, ps.TerminationGracePeriodSeconds)
		}
	}
	cfg := r.config(t)
	for _, k := range secretKeys {
		if _, ok := lookup(cfg, k); ok {
			t.Errorf("ConfigMap has the secret key %s", k)
		}
	}
}

func gpuLimit(d *appsv1.Deployment) bool {
	_, ok := d.Spec.Template.Spec.Containers[0].Resources.Limits[gpuResource]
	return ok
}

func scaledObjects(r rendered) map[string]*kedav1alpha1.ScaledObject {
	out := map[string]*kedav1alpha1.ScaledObject{}
	for _, so := range objectsOf[*kedav1alpha1.ScaledObject](r) {
		out[so.Labels["app.kubernetes.io/component"]] = so
	}
	return out
}

func hpas(r rendered) map[string]*autoscalingv2.HorizontalPodAutoscaler {
	out := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	for _, h := range objectsOf[*autoscalingv2.HorizontalPodAutoscaler](r) {
		out[h.Labels["app.kubernetes.io/component"]] = h
	}
	return out
}

// checkTrigger checks a ScaledObject's nats-jetstream trigger.
func checkTrigger(t *testing.T, so *kedav1alpha1.ScaledObject, endpoint, stream, consumer string) {
	t.Helper()
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "nats-jetstream" {
		t.Fatalf("%s: want one nats-jetstream trigger, got %+v", so.Name, so.Spec.Triggers)
	}
	md := so.Spec.Triggers[0].Metadata
	want := map[string]string{"natsServerMonitoringEndpoint": endpoint, "account": "$G", "stream": stream, "consumer": consumer}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("%s: trigger %s = %q, want %q", so.Name, k, md[k], v)
		}
	}
	for _, k := range []string{"lagThreshold", "activationLagThreshold", "useHttps"} {
		if md[k] == "" {
			t.Errorf("%s: trigger has no %s", so.Name, k)
		}
	}
	if so.Spec.ScaleTargetRef == nil || so.Spec.ScaleTargetRef.Name != so.Name {
		t.Errorf("%s: scales %+v", so.Name, so.Spec.ScaleTargetRef)
	}
}

const bundledEndpoint = release + "-nats-headless." + namespace + ".svc.cluster.local:8222"

// The values matrix of the issue (defaults, GPU off, external NATS, KEDA off, bridge on, training
// off) plus everything on: each is linted, rendered, decoded strictly and checked.
func TestChartValuesMatrix(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]any
		check  func(t *testing.T, r rendered)
	}{
		{"defaults", map[string]any{}, func(t *testing.T, r rendered) {
			ds := r.deployments()
			for _, c := range []string{"inference", "training-coordinator", "training-worker"} {
				if ds[c] == nil {
					t.Fatalf("no %s Deployment; have %v", c, keys(ds))
				}
			}
			if len(ds) != 3 {
				t.Errorf("Deployments %v, want inference and training only", keys(ds))
			}
			if !gpuLimit(ds["inference"]) || !gpuLimit(ds["training-worker"]) || gpuLimit(ds["training-coordinator"]) {
				t.Error("GPU limits: want inference and workers on GPUs, the coordinator on CPU")
			}
			if ds["training-coordinator"].Spec.Replicas == nil || *ds["training-coordinator"].Spec.Replicas != 1 ||
				ds["training-coordinator"].Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Error("coordinator: want exactly 1 replica, Recreate")
			}
			if ds["inference"].Spec.Replicas != nil {
				t.Error("inference: autoscaled Deployments leave replicas to KEDA")
			}
			sos := scaledObjects(r)
			checkTrigger(t, sos["inference"], bundledEndpoint, "HPA_READY", "hpa-labeler")
			checkTrigger(t, sos["training-worker"], bundledEndpoint, "HPA_TRAIN_JOBS", "hpa-train-workers")
			if sos["training-worker"].Spec.MinReplicaCount == nil || *sos["training-worker"].Spec.MinReplicaCount != 0 {
				t.Error("training workers: want scaled from zero")
			}
			if len(hpas(r)) != 0 {
				t.Error("HPAs rendered next to KEDA")
			}
			if len(objectsOf[*policyv1.PodDisruptionBudget](r)) != 1 {
				t.Error("want the inference PodDisruptionBudget")
			}
			cfg := r.config(t)
			for k, want := range map[string]any{"nats.url": "nats://" + release + "-nats." + namespace + ".svc.cluster.local:4222",
				"ort.provider": "cuda", "inference.model": "/opt/hpa/models/bundled/manifest.json",
				"inference.metrics_addr": ":9090", "cache_dir": "/var/cache/hpa"} {
				if got, _ := lookup(cfg, k); got != want {
					t.Errorf("ConfigMap %s = %v, want %v", k, got, want)
				}
			}
			inf := ds["inference"].Spec.Template.Spec.Containers[0]
			if e, _ := envOf(inf, "HPA_INFERENCE_METRICS_ADDR"); e.Value != ":9090" {
				t.Errorf("inference metrics address env %+v", e)
			}
			w := ds["training-worker"].Spec.Template.Spec.Containers[0]
			if e, _ := envOf(w, "HPA_TRAINING_WORKER_DEVICE"); e.Value != "cuda" {
				t.Errorf("worker device env %+v", e)
			}
			if !slices.Equal(w.Args[:2], []string{"training", "worker"}) {
				t.Errorf("worker args %q", w.Args)
			}
			if ds["inference"].Spec.Template.Spec.TopologySpreadConstraints == nil {
				t.Error("inference: no topology spread")
			}
		}},
		{"gpu-off", map[string]any{"inference": map[string]any{"gpu": map[string]any{"enabled": false}},
			"training": map[string]any{"worker": map[string]any{"gpu": map[string]any{"enabled": false}}}}, func(t *testing.T, r rendered) {
			for c, d := range r.deployments() {
				if gpuLimit(d) || len(d.Spec.Template.Spec.Tolerations) > 0 {
					t.Errorf("%s: GPU limit or toleration with the GPU off", c)
				}
			}
			if got, _ := lookup(r.config(t), "ort.provider"); got != "cpu" {
				t.Errorf("ort.provider %v, want cpu", got)
			}
			w := r.deployments()["training-worker"].Spec.Template.Spec.Containers[0]
			if e, _ := envOf(w, "HPA_TRAINING_WORKER_DEVICE"); e.Value != "cpu" {
				t.Errorf("worker device env %+v", e)
			}
		}},
		{"external-nats", map[string]any{"nats": map[string]any{"enabled": false},
			"config":          map[string]any{"nats": map[string]any{"url": "nats://nats.messaging:4222", "user": "hpa"}},
			"natsCredentials": map[string]any{"existingSecret": "nats-auth", "passwordKey": "password"},
			"keda":            map[string]any{"natsMonitoringEndpoint": "nats-headless.messaging.svc.cluster.local:8222"}}, func(t *testing.T, r rendered) {
			cfg := r.config(t)
			if got, _ := lookup(cfg, "nats.url"); got != "nats://nats.messaging:4222" {
				t.Errorf("nats.url %v", got)
			}
			for c, d := range r.deployments() {
				e, ok := envOf(d.Spec.Template.Spec.Containers[0], "HPA_NATS_PASSWORD")
				if !ok || e.ValueFrom.SecretKeyRef.Name != "nats-auth" || e.ValueFrom.SecretKeyRef.Key != "password" {
					t.Errorf("%s: HPA_NATS_PASSWORD %+v", c, e)
				}
			}
			for _, so := range scaledObjects(r) {
				if got := so.Spec.Triggers[0].Metadata["natsServerMonitoringEndpoint"]; got != "nats-headless.messaging.svc.cluster.local:8222" {
					t.Errorf("%s: endpoint %s", so.Name, got)
				}
			}
		}},
		{"clustered-nats", map[string]any{"nats": map[string]any{"config": map[string]any{"cluster": map[string]any{"enabled": true, "replicas": 3}}}},
			func(t *testing.T, r rendered) {
				// Only the consumer leader reports the true lag: KEDA must query the headless service
				// (TestChartWithNATSSubchart checks the NATS chart renders it with this name and port).
				for c, so := range scaledObjects(r) {
					if got := so.Spec.Triggers[0].Metadata["natsServerMonitoringEndpoint"]; got != bundledEndpoint {
						t.Errorf("%s: KEDA endpoint %s, want the headless service %s", c, got, bundledEndpoint)
					}
				}
			}},
		{"keda-off", map[string]any{"keda": map[string]any{"enabled": false}}, func(t *testing.T, r rendered) {
			if n := len(scaledObjects(r)); n != 0 {
				t.Errorf("%d ScaledObjects with KEDA off", n)
			}
			h := hpas(r)
			for _, c := range []string{"inference", "training-worker"} {
				if h[c] == nil {
					t.Fatalf("no CPU HPA for %s", c)
				}
				if *h[c].Spec.MinReplicas < 1 || h[c].Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
					t.Errorf("%s HPA: %+v", c, h[c].Spec)
				}
			}
		}},
		{"bridge-on", map[string]any{"bridge": map[string]any{"enabled": true, "sqsQueueURL": "https://sqs.eu-west-1.amazonaws.com/123456789012/hpa-uploads"},
			"serviceAccount": map[string]any{"annotations": map[string]any{"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/hpa"}},
			"config":         map[string]any{"s3": map[string]any{"region": "eu-west-1", "bucket": "lab-plates"}}}, func(t *testing.T, r rendered) {
			b := r.deployments()["bridge"]
			if b == nil {
				t.Fatal("no bridge Deployment")
			}
			c := b.Spec.Template.Spec.Containers[0]
			if e, _ := envOf(c, "HPA_BRIDGE_SQS_QUEUE_URL"); !strings.HasSuffix(e.Value, "/hpa-uploads") {
				t.Errorf("bridge queue env %+v", e)
			}
			if c.Args[0] != "bridge" || gpuLimit(b) {
				t.Errorf("bridge args %q gpu %v", c.Args, gpuLimit(b))
			}
			sas := objectsOf[*corev1.ServiceAccount](r)
			if len(sas) != 1 || sas[0].Annotations["eks.amazonaws.com/role-arn"] == "" {
				t.Errorf("ServiceAccount without the IRSA annotation: %+v", sas)
			}
			if _, ok := envOf(c, "HPA_S3_ACCESS_KEY"); ok {
				t.Error("static S3 keys without s3Credentials.existingSecret")
			}
		}},
		{"training-off", map[string]any{"training": map[string]any{"enabled": false}}, func(t *testing.T, r rendered) {
			ds := r.deployments()
			if len(ds) != 1 || ds["inference"] == nil {
				t.Errorf("Deployments %v, want inference only", keys(ds))
			}
			if so := scaledObjects(r); len(so) != 1 {
				t.Errorf("ScaledObjects %v", keys(so))
			}
		}},
		{"everything-on", map[string]any{
			"replay":           map[string]any{"enabled": true, "args": []any{"s3://plates/incoming/", "--since", "2024-01-01T00:00:00Z", "--rate", "50"}},
			"web":              map[string]any{"enabled": true, "ingress": map[string]any{"enabled": true, "className": "nginx", "tlsSecret": "hpa-tls"}},
			"bridge":           map[string]any{"enabled": true, "sqsQueueURL": "https://sqs.us-east-1.amazonaws.com/1/q"},
			"metrics":          map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}},
			"networkPolicy":    map[string]any{"enabled": true},
			"s3Credentials":    map[string]any{"existingSecret": "s3-keys"},
			"models":           map[string]any{"location": "s3://plates/models/v3/", "pointer": "models/current"},
			"cache":            map[string]any{"existingClaim": "hpa-cache"},
			"inference":        map[string]any{"gpu": map[string]any{"provider": "tensorrt", "nodeSelector": map[string]any{"nvidia.com/gpu.present": "true"}}},
			"imagePullSecrets": []any{map[string]any{"name": "regcred"}},
		}, func(t *testing.T, r rendered) {
			ds := r.deployments()
			if len(ds) != 5 {
				t.Errorf("Deployments %v", keys(ds))
			}
			jobs := objectsOf[*batchv1.Job](r)
			if len(jobs) != 1 || !slices.Equal(jobs[0].Spec.Template.Spec.Containers[0].Args[:2], []string{"replay", "s3://plates/incoming/"}) {
				t.Errorf("replay Job: %+v", jobs)
			}
			if len(objectsOf[*networkingv1.Ingress](r)) != 1 || len(objectsOf[*networkingv1.NetworkPolicy](r)) != 1 ||
				len(objectsOf[*monitoringv1.ServiceMonitor](r)) != 1 {
				t.Error("want an Ingress, a NetworkPolicy and a ServiceMonitor")
			}
			cfg := r.config(t)
			if got, _ := lookup(cfg, "inference.model"); got != "s3://plates/models/v3/" {
				t.Errorf("inference.model %v", got)
			}
			if got, _ := lookup(cfg, "inference.model_pointer"); got != "models/current" {
				t.Errorf("inference.model_pointer %v", got)
			}
			if got, _ := lookup(cfg, "ort.provider"); got != "tensorrt" {
				t.Errorf("ort.provider %v", got)
			}
			inf := ds["inference"].Spec.Template.Spec
			if inf.NodeSelector["nvidia.com/gpu.present"] != "true" {
				t.Errorf("GPU node selector %v", inf.NodeSelector)
			}
			for c, d := range ds {
				e, ok := envOf(d.Spec.Template.Spec.Containers[0], "HPA_S3_SECRET_KEY")
				if !ok || e.ValueFrom.SecretKeyRef.Name != "s3-keys" {
					t.Errorf("%s: HPA_S3_SECRET_KEY %+v", c, e)
				}
				if v := d.Spec.Template.Spec.Volumes; !slices.ContainsFunc(v, func(v corev1.Volume) bool {
					return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "hpa-cache"
				}) {
					t.Errorf("%s: cache claim not mounted", c)
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := renderCase(t, false, c.values)
			checkInvariants(t, r)
			c.check(t, r)
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// values.schema.json and the chart's own checks refuse what cannot work, with a message that says
// what to fix.
func TestChartRejectsBadValues(t *testing.T) {
	chart := chartDir(t, false)
	cases := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown top-level key", map[string]any{"inferense": map[string]any{"enabled": true}}, "inferense"},
		{"misspelled nested key", map[string]any{"inference": map[string]any{"gpu": map[string]any{"enabeld": false}}}, "enabeld"},
		{"wrong type", map[string]any{"inference": map[string]any{"replicaCount": "two"}}, "replicaCount"},
		{"config key not in config.yaml", map[string]any{"config": map[string]any{"inference": map[string]any{"bach": 4}}}, "bach"},
		{"secret in values", map[string]any{"config": map[string]any{"s3": map[string]any{"secret_key": "x"}}}, "secret_key"},
		{"bad provider", map[string]any{"inference": map[string]any{"gpu": map[string]any{"provider": "rocm"}}}, "provider"},
		{"external NATS without URL", map[string]any{"nats": map[string]any{"enabled": false}}, "url"},
		{"external NATS, KEDA without endpoint", map[string]any{"nats": map[string]any{"enabled": false},
			"config": map[string]any{"nats": map[string]any{"url": "nats://n:4222"}}}, "natsMonitoringEndpoint"},
		{"bridge without queue", map[string]any{"bridge": map[string]any{"enabled": true}}, "sqsQueueURL"},
		{"replay without args", map[string]any{"replay": map[string]any{"enabled": true}}, "args"},
		{"model location not s3", map[string]any{"models": map[string]any{"location": "/models/x"}}, "location"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, lerr := lint(t, chart, c.values)
			_, terr := render(t, chart, c.values)
			for what, err := range map[string]error{"helm lint": lerr, "helm template": terr} {
				if err == nil {
					t.Errorf("%s accepted %v", what, c.values)
				} else if !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: error does not name %q:\n%v", what, c.want, err)
				}
			}
		})
	}
}
