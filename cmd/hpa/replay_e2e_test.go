package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
)

func runReplayCLI(t *testing.T, args ...string) string {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("hpa %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func labelDigest(t *testing.T, b []byte) string {
	t.Helper()
	l, err := labels.ParseLabel(b)
	if err != nil {
		t.Fatal(err)
	}
	return l.Model.ManifestDigest
}

// The README's replay story with the real commands: a plate uploaded before the service existed
// is labeled by `hpa replay --endpoints`; after another model version is promoted,
// `hpa replay` (only stale, the default) relabels that plate with it and nothing else.
func TestReplayReadmeEndToEnd(t *testing.T) {
	manifest := labelModelSet(t)
	m, err := model.ReadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	v1, _ := m.Digest()
	dir := t.TempDir()
	// The plate lands in the bucket; then the service's NATS state is wiped and its labels removed:
	// the objects are there, no event of them is anywhere (as before the service existed).
	r := startUp(t, dir, manifest)
	r.upload(t, "old plate", "s1", 1)
	r.upload(t, "old plate", "s2", 2)
	for _, id := range []string{"s1", "s2"} {
		r.waitLabel(t, "old plate", id)
	}
	time.Sleep(300 * time.Millisecond) // let the plate CSV settle
	for _, k := range []string{"s1.json", "s2.json"} {
		if err := r.store.Delete(context.Background(), r.ep.LabelsPrefix+"old plate/"+k); err != nil {
			t.Fatal(err)
		}
	}
	r.stop(t)
	if err := os.RemoveAll(filepath.Join(dir, "nats")); err != nil {
		t.Fatal(err)
	}
	r = startUp(t, dir, manifest)
	ep := filepath.Join(dir, "endpoints.json")
	time.Sleep(500 * time.Millisecond)
	if _, err := r.store.Get(context.Background(), r.ep.LabelsPrefix+"old plate/s1.json", 0); err == nil {
		t.Fatal("labeled without a replay")
	}
	out := runReplayCLI(t, "replay", "--endpoints", ep, "s3://plates/incoming/old plate", "--model", manifest, "--progress", "off")
	if !strings.Contains(out, "published 2,") {
		t.Fatalf("replay:\n%s", out)
	}
	for _, id := range []string{"s1", "s2"} {
		if d := labelDigest(t, r.waitLabel(t, "old plate", id)); d != v1 {
			t.Fatalf("label %s digest %s, want %s", id, d, v1)
		}
	}
	// Promote another model version (uploaded to the bucket, announced on NATS).
	newSet := benchModelSet(t, 64, 1)
	m2, err := model.ReadManifest(newSet)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := m2.Digest()
	ents, _ := os.ReadDir(filepath.Dir(newSet))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(newSet), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.store.Put(context.Background(), "models/v2/"+e.Name(), b, "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(r.ep.NATSURL, nats.UserInfo(r.ep.NATSUser, r.ep.NATSPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("hpa.models.promoted", []byte("s3://plates/models/v2/")); err != nil {
		t.Fatal(err)
	}
	// A plate uploaded now is labeled live by the new version.
	deadline := time.Now().Add(60 * time.Second)
	for id := 0; ; id++ {
		r.upload(t, "new plate", "n1", 9)
		if labelDigest(t, r.waitLabel(t, "new plate", "n1")) == v2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the promotion was not served")
		}
		_ = r.store.Delete(context.Background(), r.ep.LabelsPrefix+"new plate/n1.json")
		time.Sleep(200 * time.Millisecond)
	}
	newLabel := r.waitLabel(t, "new plate", "n1")
	// Only stale: the old plate (v1 labels) is published, the new plate (v2) is up to date.
	out = runReplayCLI(t, "replay", "--endpoints", ep, "s3://plates/incoming/", "--model", "s3://plates/models/v2/", "--progress", "off")
	if !strings.Contains(out, "published 2,") || !strings.Contains(out, "skipped as up to date 1") {
		t.Fatalf("only-stale replay:\n%s", out)
	}
	for _, id := range []string{"s1", "s2"} {
		deadline := time.Now().Add(90 * time.Second)
		for labelDigest(t, r.waitLabel(t, "old plate", id)) != v2 {
			if time.Now().After(deadline) {
				t.Fatalf("old plate %s not relabeled with %s", id, v2)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if b := r.waitLabel(t, "new plate", "n1"); !bytes.Equal(b, newLabel) {
		t.Fatal("the up-to-date plate was relabeled")
	}
	// Again: nothing is stale any more.
	out = runReplayCLI(t, "replay", "--endpoints", ep, "s3://plates/incoming/", "--model", "s3://plates/models/v2/", "--progress", "off")
	if !strings.Contains(out, "published 0,") || !strings.Contains(out, "skipped as up to date 3") {
		t.Fatalf("second only-stale replay:\n%s", out)
	}
}

// Bad invocations are refused before anything is contacted, with the reason.
func TestReplayBridgeCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "what to replay"},
		{[]string{"replay", "--stream"}, "--stream needs --since"},
		{[]string{"replay", "--since", "yesterday", "s3://plates/incoming/"}, `"yesterday" is not an RFC 3339 time`},
		{[]string{"replay", "--since", "2024-02-01", "--until", "2024-01-01", "s3://plates/incoming/"}, "is not after --since"},
		{[]string{"replay", "--reconcile", "--force", "s3://plates/incoming/"}, "--force does not apply"},
		{[]string{"replay", "--progress", "fancy", "s3://plates/incoming/"}, `progress "fancy"`},
		{[]string{"replay", "--rate", "-1", "s3://plates/incoming/"}, "--rate"},
		{[]string{"bridge"}, "SQS queue URL is required"},
	} {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(tc.args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("hpa %s: %v, want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
