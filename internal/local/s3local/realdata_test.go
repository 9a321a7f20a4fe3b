package s3local

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/testenv"
)

// Real HPA channel PNGs uploaded concurrently by the SDK: each arrives intact and is announced by
// one event whose key maps back to the sample id and channel of its file name.
func TestRealImagesUploadAndEvents(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.HPAFixture(t), "*_sample", "*.png"))
	if err != nil || len(files) < 24 {
		t.Fatalf("testdata/hpa-real: %d files, %v", len(files), err)
	}
	sort.Strings(files)
	files = files[:24]
	b := startBus(t, t.TempDir(), 0)
	s := startServer(t, Options{Buckets: []string{"plates"}, Publisher: bus.JetStreamPublisher{JS: b.js}})
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)
	want := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want["incoming/plate 1/"+filepath.Base(f)] = data
	}
	keys := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, len(want))
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String(k), Body: bytes.NewReader(want[k]), ContentType: aws.String("image/png")}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for k := range want {
		keys <- k
	}
	close(keys)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	km, err := bus.NewKeyMapper("incoming/", "")
	if err != nil {
		t.Fatal(err)
	}
	msgs := b.messages(t)
	if len(msgs) != len(want) {
		t.Fatalf("%d events for %d uploads", len(msgs), len(want))
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		ev := parseOne(t, m)
		data, ok := want[ev.Key]
		if !ok || seen[ev.Key] {
			t.Fatalf("unexpected or repeated event for %q", ev.Key)
		}
		seen[ev.Key] = true
		if ev.Size != int64(len(data)) || ev.ETag != md5hex(data) || !ev.IsCreate() {
			t.Fatalf("event %+v does not describe the %d-byte upload", ev, len(data))
		}
		sk, ok, err := km.Map(ev.Key)
		base := strings.TrimSuffix(filepath.Base(ev.Key), ".png")
		if err != nil || !ok || sk.Plate != "plate 1" || sk.ID+"_"+sk.Channel.String() != base {
			t.Fatalf("key %q mapped to %+v, %v", ev.Key, sk, ok)
		}
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("plates"), Key: aws.String(ev.Key)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%s came back different", ev.Key)
		}
	}
}
