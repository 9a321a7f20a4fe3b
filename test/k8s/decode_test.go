package k8s

import (
	"fmt"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// strictScheme knows the built-in kinds of Kubernetes, KEDA's and prometheus-operator's.
var strictScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, kedav1alpha1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strictYAML decodes YAML into the registered Go type of its apiVersion/kind and fails on unknown
// or duplicate fields (the serializer kube-apiserver uses for fieldValidation=Strict).
var strictYAML = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, strictScheme, strictScheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// object is one rendered object decoded into its Go type.
type object struct {
	source string
	gvk    schema.GroupVersionKind
	name   string
	obj    runtime.Object
}

func (o object) String() string { return fmt.Sprintf("%s %s (%s)", o.gvk.Kind, o.name, o.source) }

// decodeStrict decodes every document of a manifest; an unknown kind, unknown field, duplicate
// field or wrong type is an error naming the object.
func decodeStrict(manifest string) ([]object, error) {
	var out []object
	var errs []string
	for _, d := range splitDocs(manifest) {
		obj, gvk, err := strictYAML.Decode([]byte(d.text), nil, nil)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", d.source, err))
			continue
		}
		name := ""
		if m, ok := obj.(interface{ GetName() string }); ok {
			name = m.GetName()
		}
		out = append(out, object{source: d.source, gvk: *gvk, name: name, obj: obj})
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("strict decoding failed:\n  %s", strings.Join(errs, "\n  "))
	}
	return out, nil
}

// The strict decoder itself: a misspelled field, a wrong type and an unknown kind are caught.
func TestStrictDecoderRejects(t *testing.T) {
	cases := map[string]string{
		"misspelled field": `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replica: 2
  selector: {matchLabels: {a: b}}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}`,
		"misspelled nested field": `apiVersion: v1
kind: Pod
metadata: {name: x}
spec: {containers: [{name: c, image: i, resource: {limits: {cpu: "1"}}}]}`,
		"wrong type": `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: x}
spec: {maxUnavailable: [1]}`,
		"KEDA field": `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: x}
spec:
  scaleTargetRef: {name: d}
  minReplicas: 0
  triggers: [{type: nats-jetstream, metadata: {stream: s}}]`,
		"unknown kind": `apiVersion: example.com/v1
kind: Widget
metadata: {name: x}`,
	}
	for name, y := range cases {
		if _, err := decodeStrict(y); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	ok := `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: x}
spec:
  scaleTargetRef: {name: d}
  minReplicaCount: 0
  triggers: [{type: nats-jetstream, metadata: {stream: s}}]`
	if _, err := decodeStrict(ok); err != nil {
		t.Errorf("a valid ScaledObject: %v", err)
	}
}
