package k8s

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/util/retry"
	sigsyaml "sigs.k8s.io/yaml"
)

// controlPlane is a real Kubernetes control plane on loopback: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler, built from source by `scripts/setup.sh --k8s`.
// No kubelet runs: Pods are created and bound to nodes, but no container ever starts.
type controlPlane struct {
	dir        string
	kubeconfig string
	cfg        *rest.Config
	procs      []*exec.Cmd
	logs       map[string]string
}

func k8sBin(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(repoRoot, ".cache", "bin", name)
	if _, err := os.Stat(p); err != nil {
		needTool(t, name+" ("+p+")", "make test-k8s builds it: scripts/setup.sh --k8s")
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (cp *controlPlane) start(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(cp.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cp.procs = append(cp.procs, cmd)
	cp.logs[name] = logPath
}

func (cp *controlPlane) stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		p := cp.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
}

func (cp *controlPlane) dumpLogs(t *testing.T) {
	for name, p := range cp.logs {
		b, _ := os.ReadFile(p)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- %s (tail) ---\n%s", name, b)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		done, err := ok()
		if done {
			return
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, last)
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	etcd, apiserver := k8sBin(t, "etcd"), k8sBin(t, "kube-apiserver")
	kcm, sched := k8sBin(t, "kube-controller-manager"), k8sBin(t, "kube-scheduler")
	cp := &controlPlane{dir: t.TempDir(), logs: map[string]string{}}
	t.Cleanup(cp.stop)
	t.Cleanup(func() {
		if t.Failed() {
			cp.dumpLogs(t)
		}
	})

	// etcd
	client, peer := freePort(t), freePort(t)
	cu, pu := fmt.Sprintf("http://127.0.0.1:%d", client), fmt.Sprintf("http://127.0.0.1:%d", peer)
	cp.start(t, "etcd", etcd, "--name", "default", "--data-dir", filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu, "--listen-peer-urls", pu,
		"--initial-advertise-peer-urls", pu, "--initial-cluster", "default="+pu, "--unsafe-no-fsync", "--log-level", "warn")
	waitFor(t, "etcd /health", 60*time.Second, func() (bool, error) {
		r, err := http.Get(cu + "/health")
		if err != nil {
			return false, err
		}
		r.Body.Close()
		return r.StatusCode == 200, nil
	})

	// kube-apiserver: static token of a system:masters user, service-account key pair.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(cp.dir, "sa.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "hpa-install-test-admin-token"
	tokenFile := filepath.Join(cp.dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cp.start(t, "kube-apiserver", apiserver, "--etcd-servers", cu, "--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1", fmt.Sprintf("--secure-port=%d", port), "--cert-dir", filepath.Join(cp.dir, "certs"),
		"--endpoint-reconciler-type", "none", "--token-auth-file", tokenFile, "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local", "--service-account-key-file", keyFile,
		"--service-account-signing-key-file", keyFile, "--service-cluster-ip-range", "10.96.0.0/16",
		"--enable-priority-and-fairness=false", "--profiling=false", "--v=0")
	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, server, token)
	cp.kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	if err := os.WriteFile(cp.kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	cp.cfg = &rest.Config{Host: server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 50, Burst: 100}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	waitFor(t, "kube-apiserver /readyz", 3*time.Minute, func() (bool, error) {
		req, _ := http.NewRequest("GET", server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		r, err := insecure.Do(req)
		if err != nil {
			return false, err
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return r.StatusCode == 200, fmt.Errorf("%d %s", r.StatusCode, body)
	})

	// Controllers (Deployments -> ReplicaSets -> Pods, garbage collection, service accounts) without
	// the node lifecycle controller: with no kubelet it would taint the nodes not-ready.
	cp.start(t, "kube-controller-manager", kcm, "--kubeconfig", cp.kubeconfig, "--leader-elect=false",
		"--controllers=*,-nodelifecycle", "--secure-port=0", "--service-account-private-key-file", keyFile,
		"--root-ca-file", filepath.Join(cp.dir, "certs", "apiserver.crt"), "--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=2", "--v=0")
	cp.start(t, "kube-scheduler", sched, "--kubeconfig", cp.kubeconfig, "--leader-elect=false", "--secure-port=0", "--v=0")
	return cp
}

// installKEDACRDs installs KEDA's CRDs from its Go module (config/crd/bases).
func installKEDACRDs(t *testing.T, cfg *rest.Config) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kedacore/keda/v2").Output()
	if err != nil {
		t.Fatalf("go list KEDA module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases")
	files, err := filepath.Glob(filepath.Join(dir, "keda.sh_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no KEDA CRDs in %s", dir)
	}
	cs := apiextensionsclient.NewForConfigOrDie(cfg)
	ctx := context.Background()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := sigsyaml.UnmarshalStrict(b, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("CRD %s: %v", crd.Name, err)
		}
	}
	waitFor(t, "KEDA CRDs established", time.Minute, func() (bool, error) {
		c, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "scaledobjects.keda.sh", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range c.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// addNode creates a Ready node with the given allocatable resources (no kubelet: the test plays its part).
func addNode(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string, taints []corev1.Taint, res corev1.ResourceList) {
	t.Helper()
	ctx := context.Background()
	labels["kubernetes.io/hostname"] = name
	labels["kubernetes.io/os"] = "linux"
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.NodeSpec{Taints: taints}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Controllers touch a new Node too: update its status on the latest version.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err = cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status = corev1.NodeStatus{Capacity: res, Allocatable: res, Phase: corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dryRunStrict sends every object of a manifest to the server as a dry-run create with
// fieldValidation=Strict: the server's own schema (built-in types and the KEDA CRDs) accepts each.
func dryRunStrict(t *testing.T, cfg *rest.Config, manifest string) int {
	t.Helper()
	dc := discovery.NewDiscoveryClientForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn := dynamic.NewForConfigOrDie(cfg)
	n := 0
	for _, d := range splitDocs(manifest) {
		var u unstructured.Unstructured
		if err := sigsyaml.Unmarshal([]byte(d.text), &u.Object); err != nil {
			t.Fatalf("%s: %v", d.source, err)
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			t.Errorf("%s %s: the server does not know the kind: %v", gvk.Kind, u.GetName(), err)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(namespace)
		}
		if _, err := ri.Create(context.Background(), &u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}); err != nil {
			t.Errorf("%s %s (%s): refused: %v", gvk.Kind, u.GetName(), d.source, err)
		}
		n++
	}
	return n
}

func usesGPU(p corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		if _, ok := c.Resources.Limits[gpuResource]; ok {
			return true
		}
	}
	return false
}

// TestInstallOnKubeAPIServer installs the chart into a real control plane (make test-k8s):
//   - the server accepts every rendered object (dry run with strict field validation, then helm install);
//   - the controllers create the Pods and the scheduler binds the GPU workloads (inference, GPU
//     training workers) to the node that advertises nvidia.com/gpu and the others to the CPU node;
//     no kubelet runs, so the Pods are bound but their containers never start;
//   - helm upgrade with changed values changes the Deployments (5 inference replicas on a node with
//     4 GPUs, one taken by a worker: 3 bound, 2 unschedulable for lack of nvidia.com/gpu);
//   - no secret value appears in a ConfigMap or in `helm get values`;
//   - helm uninstall removes everything it created (bound Pods are left marked for deletion: only a
//     kubelet could confirm it).
func TestInstallOnKubeAPIServer(t *testing.T) {
	if os.Getenv("HPA_K8S") == "" {
		t.Skip("the install test needs the Kubernetes control plane built by `make test-k8s`, which runs it")
	}
	helmBin(t)
	t0 := time.Now()
	cp := startControlPlane(t)
	t.Logf("control plane ready in %v", time.Since(t0).Round(time.Millisecond))
	cs := kubernetes.NewForConfigOrDie(cp.cfg)
	ctx := context.Background()
	installKEDACRDs(t, cp.cfg)

	withNATS := true
	if _, err := os.Stat(natsChartTgz); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the packaged NATS chart %s is missing (under CI nothing may skip)", natsChartTgz)
		}
		t.Logf("notice: %s missing: installing without the bundled NATS chart", natsChartTgz)
		withNATS = false
	}
	chart := chartDir(t, withNATS)

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const s3Secret, natsSecret = "s3-secret-value-4a7e91", "nats-password-value-c02d55"
	for name, data := range map[string]map[string]string{
		"s3-keys":   {"access-key": "AKIAHPATEST", "secret-key": s3Secret},
		"nats-auth": {"password": natsSecret},
	} {
		if _, err := cs.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gpuNode, cpuNode := "gpu-node-1", "cpu-node-1"
	addNode(t, cs, gpuNode, map[string]string{"nvidia.com/gpu.present": "true"},
		[]corev1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}},
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods: resource.MustParse("110"), gpuResource: resource.MustParse("4")})
	addNode(t, cs, cpuNode, map[string]string{}, nil,
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"),
			corev1.ResourcePods: resource.MustParse("110")})

	values := map[string]any{
		"s3Credentials": map[string]any{"existingSecret": "s3-keys"},
		"config":        map[string]any{"s3": map[string]any{"endpoint": "http://minio.minio:9000", "path_style": true}},
		"inference":     map[string]any{"gpu": map[string]any{"nodeSelector": map[string]any{"nvidia.com/gpu.present": "true"}}},
		"bridge":        map[string]any{"enabled": true, "sqsQueueURL": "https://sqs.us-east-1.amazonaws.com/123456789012/hpa"},
		"web":           map[string]any{"enabled": true},
		"replay":        map[string]any{"enabled": true, "args": []any{"s3://plates/incoming/", "--dry-run"}},
		"networkPolicy": map[string]any{"enabled": true},
	}
	if !withNATS {
		values["nats"] = map[string]any{"enabled": false}
		values["config"].(map[string]any)["nats"] = map[string]any{"url": "nats://nats.messaging:4222", "user": "hpa"}
		values["natsCredentials"] = map[string]any{"existingSecret": "nats-auth", "passwordKey": "password"}
		values["keda"] = map[string]any{"natsMonitoringEndpoint": "nats-headless.messaging.svc.cluster.local:8222"}
	}
	vf := valuesFile(t, values)
	kc := []string{"--kubeconfig", cp.kubeconfig, "--namespace", namespace}

	manifest, err := helm(t, append([]string{"template", release, chart, "-f", vf, "--api-versions", "keda.sh/v1alpha1", "--kube-version", kubeVersion}, kc[2:]...)...)
	if err != nil {
		t.Fatal(err)
	}
	n := dryRunStrict(t, cp.cfg, manifest)
	t.Logf("server accepted %d objects (dry run, strict field validation)", n)
	if t.Failed() {
		t.FailNow()
	}

	t1 := time.Now()
	out, err := helm(t, append([]string{"install", release, chart, "-f", vf}, kc...)...)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	// NOTES.txt tells how to upload a plate and where its labels appear, with this release's names.
	_, notes, _ := strings.Cut(out, "NOTES:")
	for _, want := range []string{"aws s3 cp --recursive ./plate-42/ s3://plates/incoming/plate-42/ --endpoint-url http://minio.minio:9000",
		"s3://plates/labels/plate-42/<id>.json", "deployment/" + release + "-inference", "hpa.labels.<plate>", "job/" + release + "-replay-1"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, notes)
		}
	}
	t.Logf("helm install: %v", time.Since(t1).Round(time.Millisecond))

	listPods := func() []corev1.Pod {
		pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/name=hpa"})
		if err != nil {
			t.Fatal(err)
		}
		return pods.Items
	}
	// inference, coordinator, worker, bridge, web: one Pod each, plus the replay Job's.
	waitFor(t, "6 hpa Pods bound to nodes", 3*time.Minute, func() (bool, error) {
		pods := listPods()
		bound := 0
		for _, p := range pods {
			if p.Spec.NodeName != "" {
				bound++
			}
		}
		return bound == 6 && len(pods) == 6, fmt.Errorf("%d pods, %d bound", len(pods), bound)
	})
	t.Logf("pods bound %v after install", time.Since(t1).Round(time.Millisecond))
	gpuPods := 0
	for _, p := range listPods() {
		want := cpuNode
		if usesGPU(p) {
			want = gpuNode
			gpuPods++
		}
		t.Logf("pod %s (component %s, GPU %v) -> node %s", p.Name, p.Labels["app.kubernetes.io/component"], usesGPU(p), p.Spec.NodeName)
		if p.Spec.NodeName != want {
			t.Errorf("pod %s (GPU %v) bound to %s, want %s", p.Name, usesGPU(p), p.Spec.NodeName, want)
		}
		if p.Status.Phase != corev1.PodPending {
			t.Errorf("pod %s phase %s: no kubelet runs, so it stays Pending", p.Name, p.Status.Phase)
		}
	}
	if gpuPods != 2 {
		t.Errorf("%d GPU pods, want 2 (inference and a training worker)", gpuPods)
	}

	// No secret value in ConfigMaps or in the release's values.
	cms, err := cs.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		for k, v := range cm.Data {
			if strings.Contains(v, s3Secret) || strings.Contains(v, natsSecret) {
				t.Errorf("ConfigMap %s key %s holds a secret value", cm.Name, k)
			}
		}
	}
	gv, err := helm(t, append([]string{"get", "values", release, "--all", "-o", "yaml"}, kc...)...)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(gv, s3Secret) || strings.Contains(gv, natsSecret) || strings.Contains(gv, "AKIAHPATEST") {
		t.Error("helm get values shows a secret value")
	}

	// Upgrade: inference off autoscaling with 5 replicas, a new env on the coordinator.
	values["inference"] = map[string]any{"autoscaling": map[string]any{"enabled": false}, "replicaCount": 5,
		"gpu": map[string]any{"nodeSelector": map[string]any{"nvidia.com/gpu.present": "true"}}}
	// (The bridge rolls: a surge pod with the new template. A Recreate Deployment such as the
	// coordinator would wait forever for its old Pod, which only a kubelet can finish deleting.)
	values["bridge"].(map[string]any)["extraEnv"] = []any{map[string]any{"name": "HPA_LOG_LEVEL", "value": "debug"}}
	t2 := time.Now()
	if out, err := helm(t, append([]string{"upgrade", release, chart, "-f", valuesFile(t, values)}, kc...)...); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	inf, err := cs.AppsV1().Deployments(namespace).Get(ctx, release+"-inference", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if inf.Spec.Replicas == nil || *inf.Spec.Replicas != 5 {
		t.Errorf("inference replicas after upgrade: %v", inf.Spec.Replicas)
	}
	br, err := cs.AppsV1().Deployments(namespace).Get(ctx, release+"-bridge", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := envOf(br.Spec.Template.Spec.Containers[0], "HPA_LOG_LEVEL"); !ok {
		t.Error("bridge Deployment not changed by the upgrade")
	}
	gvr := schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	if _, err := dynamic.NewForConfigOrDie(cp.cfg).Resource(gvr).Namespace(namespace).Get(ctx, release+"-inference", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("inference ScaledObject after autoscaling was turned off: %v", err)
	}
	waitFor(t, "5 inference pods: 3 bound to the GPU node, 2 unschedulable for lack of GPUs", 3*time.Minute, func() (bool, error) {
		var bound, unschedulable int
		for _, p := range listPods() {
			if p.Labels["app.kubernetes.io/component"] != "inference" {
				continue
			}
			if p.Spec.NodeName == gpuNode {
				bound++
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, string(gpuResource)) {
					unschedulable++
				}
			}
		}
		return bound == 3 && unschedulable == 2, fmt.Errorf("%d bound, %d unschedulable", bound, unschedulable)
	})
	waitFor(t, "the new bridge pod", time.Minute, func() (bool, error) {
		for _, p := range listPods() {
			if _, ok := envOf(p.Spec.Containers[0], "HPA_LOG_LEVEL"); ok && p.Spec.NodeName == cpuNode {
				return true, nil
			}
		}
		return false, nil
	})
	t.Logf("helm upgrade and rescheduling: %v", time.Since(t2).Round(time.Millisecond))

	// Uninstall: every object of the release goes, and the garbage collector takes the Pods.
	t3 := time.Now()
	if out, err := helm(t, append([]string{"uninstall", release, "--wait", "--timeout", "2m"}, kc...)...); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release}
	waitFor(t, "every object of the release removed", 2*time.Minute, func() (bool, error) {
		var left []string
		deps, _ := cs.AppsV1().Deployments(namespace).List(ctx, sel)
		rss, _ := cs.AppsV1().ReplicaSets(namespace).List(ctx, sel)
		sts, _ := cs.AppsV1().StatefulSets(namespace).List(ctx, sel)
		jobs, _ := cs.BatchV1().Jobs(namespace).List(ctx, sel)
		svcs, _ := cs.CoreV1().Services(namespace).List(ctx, sel)
		cms, _ := cs.CoreV1().ConfigMaps(namespace).List(ctx, sel)
		sas, _ := cs.CoreV1().ServiceAccounts(namespace).List(ctx, sel)
		pdbs, _ := cs.PolicyV1().PodDisruptionBudgets(namespace).List(ctx, sel)
		nps, _ := cs.NetworkingV1().NetworkPolicies(namespace).List(ctx, sel)
		pods, _ := cs.CoreV1().Pods(namespace).List(ctx, sel)
		// A Pod bound to a node is deleted for good only when its kubelet confirms; none runs here,
		// so being marked for deletion is as far as it goes.
		pods.Items = slices.DeleteFunc(pods.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
		sos, _ := dynamic.NewForConfigOrDie(cp.cfg).Resource(gvr).Namespace(namespace).List(ctx, sel)
		for kind, n := range map[string]int{"Deployment": len(deps.Items), "ReplicaSet": len(rss.Items), "StatefulSet": len(sts.Items),
			"Job": len(jobs.Items), "Service": len(svcs.Items), "ConfigMap": len(cms.Items), "ServiceAccount": len(sas.Items),
			"PodDisruptionBudget": len(pdbs.Items), "NetworkPolicy": len(nps.Items), "Pod": len(pods.Items), "ScaledObject": len(sos.Items)} {
			if n > 0 {
				left = append(left, fmt.Sprintf("%d %s", n, kind))
			}
		}
		slices.Sort(left)
		return len(left) == 0, fmt.Errorf("left: %s", strings.Join(left, ", "))
	})
	t.Logf("helm uninstall and garbage collection: %v; whole test %v", time.Since(t3).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}
