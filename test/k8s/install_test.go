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

	coordinationv1 "k8s.io/api/coordination/v1"
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
// No kubelet runs: Pods are created and bound to nodes, but no container ever starts; the test
// registers the nodes and renews their Leases in the kubelet's place (addNode, nodeHeartbeat).
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
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("--- %s (tail) ---\n%s", name, b)
	}
}

// diagnose logs what decides scheduling, for a failed run: each Pod's PodScheduled condition and
// node, each Node's taints, conditions and allocatable, the node Leases, and the namespace's events.
func diagnose(t *testing.T, cs kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	if pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s/%s node=%q phase=%s", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase)
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled {
					fmt.Fprintf(&b, " PodScheduled=%s reason=%s message=%q", c.Status, c.Reason, c.Message)
				}
			}
			b.WriteString("\n")
		}
	} else {
		fmt.Fprintf(&b, "pods: %v\n", err)
	}
	if nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range nodes.Items {
			fmt.Fprintf(&b, "node %s taints=%v unschedulable=%v allocatable=%v\n", n.Name, n.Spec.Taints, n.Spec.Unschedulable, n.Status.Allocatable)
			for _, c := range n.Status.Conditions {
				fmt.Fprintf(&b, "  condition %s=%s reason=%s heartbeat=%s\n", c.Type, c.Status, c.Reason, c.LastHeartbeatTime.Format(time.RFC3339))
			}
		}
	}
	if leases, err := cs.CoordinationV1().Leases("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, l := range leases.Items {
			var holder string
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			fmt.Fprintf(&b, "lease %s/%s holder=%q renew=%v\n", l.Namespace, l.Name, holder, l.Spec.RenewTime)
		}
	}
	if evs, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "event %s %s/%s %s: %s (x%d)\n", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message, e.Count)
		}
	}
	t.Logf("--- cluster state ---\n%s", b.String())
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

	// Every default controller (Deployments -> ReplicaSets -> Pods, Jobs, StatefulSets, persistent
	// volume binding, garbage collection, service accounts) including the node lifecycle controller:
	// the TaintNodesByCondition admission plugin gives each new Node the taint
	// node.kubernetes.io/not-ready:NoSchedule, and only that controller lifts it once the node is
	// Ready. It also watches the node Leases: nodeHeartbeat renews them as a kubelet would, or it
	// would taint the nodes unreachable after --node-monitor-grace-period (50 s by default; shorter
	// here, so that one run shows both sides: a node without heartbeat is tainted, the others not).
	cp.start(t, "kube-controller-manager", kcm, "--kubeconfig", cp.kubeconfig, "--leader-elect=false",
		"--controllers=*", fmt.Sprintf("--node-monitor-grace-period=%v", nodeMonitorGracePeriod), "--node-monitor-period=2s", "--secure-port=0", "--service-account-private-key-file", keyFile,
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

// addNode creates a Ready node with the given allocatable resources and its Lease in
// kube-node-lease, as a kubelet registers itself (none runs: the test plays its part; nodeHeartbeat
// renews the Lease).
func addNode(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string, spec corev1.NodeSpec, res corev1.ResourceList) {
	t.Helper()
	ctx := context.Background()
	labels["kubernetes.io/hostname"] = name
	labels["kubernetes.io/os"] = "linux"
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	holder, duration, now := name, int32(40), metav1.NowMicro()
	if _, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: n.UID}}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &duration, RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
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

// nodeMonitorGracePeriod is how long the node lifecycle controller waits for a node's heartbeat
// before it marks the node Unknown and taints it unreachable (50 s by default).
const nodeMonitorGracePeriod = 20 * time.Second

// nodeHeartbeat renews the nodes' Leases every few seconds until the test ends: the part of a
// kubelet that tells the node lifecycle controller its node is alive (a kubelet renews every 10 s
// against the default 50 s grace period; here every 4 s against nodeMonitorGracePeriod). The Ready
// condition itself stays as addNode wrote it: the controller takes a renewed Lease as the heartbeat.
func nodeHeartbeat(t *testing.T, cs kubernetes.Interface, nodes ...string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(4 * time.Second)
		defer tick.Stop()
		for {
			for _, name := range nodes {
				err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
					l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						return err
					}
					now := metav1.NowMicro()
					l.Spec.RenewTime = &now
					_, err = cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(ctx, l, metav1.UpdateOptions{})
					return err
				})
				if err != nil && ctx.Err() == nil {
					t.Logf("heartbeat of node %s: %v", name, err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// nodeTaints is the taint keys of a node.
func nodeTaints(t *testing.T, cs kubernetes.Interface, name string) []string {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tn := range n.Spec.Taints {
		keys = append(keys, tn.Key+":"+string(tn.Effect))
	}
	return keys
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
//   - three Node objects stand in for machines: a GPU node (4 nvidia.com/gpu, the usual GPU taint), a
//     CPU node, and a cordoned one. No kubelet runs, so no container ever starts: Pods are created
//     and bound to nodes, and stay Pending. The test plays the kubelet's registration (Node status,
//     Lease) and its heartbeat (nodeHeartbeat renews the Leases of the first two), so the node
//     lifecycle controller lifts the not-ready taint that admission puts on every new Node; the
//     third node gets no heartbeat and must end up tainted unreachable (the control);
//   - the controllers create the Pods and the scheduler binds the GPU workloads (inference, GPU
//     training workers) to the GPU node and the others to the CPU node, the only one their
//     tolerations allow; the NATS server's JetStream claim binds a static PersistentVolume;
//   - helm upgrade with changed values changes the Deployments (5 inference replicas on a node with
//     4 GPUs, one taken by a worker: 3 bound, 2 unschedulable for lack of nvidia.com/gpu; the
//     bridge rolls to a new ReplicaSet);
//   - no secret value appears in a ConfigMap or in `helm get values`; the pods reference the Secrets;
//   - helm uninstall removes everything it created (bound Pods are left marked for deletion: only a
//     kubelet could confirm it; the StatefulSet's JetStream claim is retained, as on any cluster).
func TestInstallOnKubeAPIServer(t *testing.T) {
	if os.Getenv("HPA_K8S") == "" {
		t.Skip("the install test needs the Kubernetes control plane built by `make test-k8s`, which runs it")
	}
	helmBin(t)
	t0 := time.Now()
	cp := startControlPlane(t)
	t.Logf("control plane ready in %v", time.Since(t0).Round(time.Millisecond))
	cs := kubernetes.NewForConfigOrDie(cp.cfg)
	t.Cleanup(func() {
		if t.Failed() {
			diagnose(t, cs)
		}
	})
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
	// Two nodes with a heartbeat (one with 4 GPUs and the usual GPU taint, one CPU only), and a
	// cordoned one without: the control that the node lifecycle controller is at work.
	gpuNode, cpuNode, staleNode := "gpu-node-1", "cpu-node-1", "stale-node-1"
	addNode(t, cs, gpuNode, map[string]string{"nvidia.com/gpu.present": "true"},
		corev1.NodeSpec{Taints: []corev1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}}},
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods: resource.MustParse("110"), gpuResource: resource.MustParse("4")})
	cpuRes := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods: resource.MustParse("110")}
	addNode(t, cs, cpuNode, map[string]string{}, corev1.NodeSpec{}, cpuRes)
	addNode(t, cs, staleNode, map[string]string{}, corev1.NodeSpec{Unschedulable: true}, cpuRes)
	nodesAt := time.Now()
	nodeHeartbeat(t, cs, gpuNode, cpuNode)
	// The admission plugin TaintNodesByCondition tainted both nodes not-ready at creation; the node
	// lifecycle controller lifts the taint from a Ready node with a live Lease.
	for _, name := range []string{gpuNode, cpuNode} {
		waitFor(t, "the node lifecycle controller to lift the not-ready taint of "+name, time.Minute, func() (bool, error) {
			taints := nodeTaints(t, cs, name)
			return !slices.ContainsFunc(taints, func(k string) bool { return strings.HasPrefix(k, "node.kubernetes.io/") }), fmt.Errorf("taints %v", taints)
		})
	}
	t.Logf("nodes ready for scheduling: %s taints %v, %s taints %v", gpuNode, nodeTaints(t, cs, gpuNode), cpuNode, nodeTaints(t, cs, cpuNode))

	if withNATS {
		// The JetStream PVC of the NATS chart names no StorageClass and the cluster has no default
		// one (no provisioner runs here): an administrator's static PersistentVolume of the size
		// the chart asks for binds it, as on a cluster without dynamic provisioning.
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "nats-jetstream-pv"},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("20Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/hpa-test/nats"}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

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
	if withNATS {
		// The NATS server (no GPU toleration) on the CPU node, with its JetStream volume bound.
		var nats corev1.Pod
		waitFor(t, "the NATS pod bound", time.Minute, func() (bool, error) {
			p, err := cs.CoreV1().Pods(namespace).Get(ctx, release+"-nats-0", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			nats = *p
			return p.Spec.NodeName != "", fmt.Errorf("%s not bound: %v", p.Name, p.Status.Conditions)
		})
		pvc, err := cs.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, release+"-nats-js-"+release+"-nats-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pod %s (NATS) -> node %s; PVC %s %s to %s", nats.Name, nats.Spec.NodeName, pvc.Name, pvc.Status.Phase, pvc.Spec.VolumeName)
		if nats.Spec.NodeName != cpuNode || pvc.Status.Phase != corev1.ClaimBound {
			t.Errorf("NATS pod on %q, want %s; PVC %s", nats.Spec.NodeName, cpuNode, pvc.Status.Phase)
		}
	}

	// No secret value in ConfigMaps or in the release's values.
	cms, err := cs.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secretValue := func(v string) bool {
		return strings.Contains(v, s3Secret) || strings.Contains(v, natsSecret) || strings.Contains(v, "AKIAHPATEST")
	}
	for _, cm := range cms.Items {
		for k, v := range cm.Data {
			if secretValue(v) {
				t.Errorf("ConfigMap %s key %s holds a secret value", cm.Name, k)
			}
		}
	}
	gv, err := helm(t, append([]string{"get", "values", release, "--all", "-o", "yaml"}, kc...)...)
	if err != nil {
		t.Fatal(err)
	}
	if secretValue(gv) {
		t.Error("helm get values shows a secret value")
	}
	// ... while the pods do get them, by reference to the Secret.
	inferencePod := slices.IndexFunc(listPods(), func(p corev1.Pod) bool { return p.Labels["app.kubernetes.io/component"] == "inference" })
	if inferencePod < 0 {
		t.Fatal("no inference pod")
	}
	refs := map[string]string{}
	for _, e := range listPods()[inferencePod].Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	if refs["HPA_S3_ACCESS_KEY"] != "s3-keys/access-key" || refs["HPA_S3_SECRET_KEY"] != "s3-keys/secret-key" {
		t.Errorf("inference pod's S3 credentials from Secrets: %v", refs)
	}
	t.Logf("no secret value in %d ConfigMaps nor in `helm get values --all`; the inference pod reads %v", len(cms.Items), refs)

	// Upgrade: inference off autoscaling with 5 replicas, a new env on the bridge.
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
	for _, p := range listPods() {
		node := p.Spec.NodeName
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				node = "unscheduled: " + c.Message
			}
		}
		t.Logf("after upgrade: pod %s (component %s) -> %s", p.Name, p.Labels["app.kubernetes.io/component"], node)
	}
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
	t.Logf("helm uninstall and garbage collection: %v", time.Since(t3).Round(time.Millisecond))
	var left []string
	if pods, err := cs.CoreV1().Pods(namespace).List(ctx, sel); err == nil {
		left = append(left, fmt.Sprintf("%d Pods marked for deletion (only a kubelet confirms it)", len(pods.Items)))
	}
	// The StatefulSet controller, not helm, created the JetStream claim; like every StatefulSet
	// claim it outlives the release (retention policy Retain), and the stream data with it.
	if pvcs, err := cs.CoreV1().PersistentVolumeClaims(namespace).List(ctx, metav1.ListOptions{}); err == nil {
		for _, c := range pvcs.Items {
			left = append(left, "PVC "+c.Name+" (retained)")
		}
	}
	t.Logf("left after uninstall: %s", strings.Join(left, "; "))

	// The heartbeat is what keeps the nodes schedulable: the node without one is marked Unknown and
	// tainted unreachable (NoSchedule; NoExecute too unless every node is down, which the controller
	// takes for a partition, not for dead nodes) once its Lease is older than the grace period; the
	// others are not.
	waitFor(t, "the node lifecycle controller to taint "+staleNode+" unreachable", nodeMonitorGracePeriod+time.Minute, func() (bool, error) {
		taints := nodeTaints(t, cs, staleNode)
		return slices.Contains(taints, corev1.TaintNodeUnreachable+":"+string(corev1.TaintEffectNoSchedule)), fmt.Errorf("taints %v", taints)
	})
	t.Logf("%s tainted %v %v after it stopped renewing its Lease", staleNode, nodeTaints(t, cs, staleNode), time.Since(nodesAt).Round(time.Second))
	time.Sleep(4 * time.Second) // two more passes of the controller (--node-monitor-period=2s) over the live nodes
	for _, name := range []string{gpuNode, cpuNode} {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				t.Errorf("node %s Ready=%s (%s) %v after its creation despite the heartbeat", name, c.Status, c.Reason, time.Since(nodesAt).Round(time.Second))
			}
		}
		if taints := nodeTaints(t, cs, name); slices.ContainsFunc(taints, func(k string) bool { return strings.HasPrefix(k, "node.kubernetes.io/") }) {
			t.Errorf("node %s tainted %v despite the heartbeat", name, taints)
		}
	}
	t.Logf("whole test %v", time.Since(t0).Round(time.Millisecond))
}
