package viewer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// plateGoal is the bound on the server time of a 384-sample plate page.
const plateGoal = 300 * time.Millisecond

// s3Plate starts the in-process S3 server (the real S3 API, signed requests over HTTP) holding
// a labeled plate of n samples, and returns the bucket as objstore opens it.
func s3Plate(b *testing.B, n int) *objstore.Bucket {
	b.Helper()
	srv, err := s3local.New(s3local.Options{Dir: b.TempDir(), Addr: "127.0.0.1:0", AccessKey: testKey, SecretKey: testSecret, Buckets: []string{"plates"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close(context.Background()) })
	cl := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.Endpoint()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(testKey, testSecret, "")})
	st := &objstore.Bucket{Client: cl, Name: "plates"}
	ctx := context.Background()
	img := flatPNG(64, 64, 50)
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			id := fmt.Sprintf("r%02dc%02d", i/24, i%24)
			for _, ch := range pipeline.ChannelNames {
				if err := st.Put(ctx, "incoming/plate384/"+id+"_"+ch+".png", img, "image/png"); err != nil {
					errs <- err
					return
				}
			}
			errs <- st.Put(ctx, "labels/plate384/"+id+".json", mkLabel(b, id, "v1", map[int]float64{i % 28: 0.9, (i + 5) % 28: 0.6}), "application/json")
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return st
}

// fetch GETs path and returns the body and the server time of the request.
func fetch(b *testing.B, srv *httptest.Server, path string) (string, time.Duration) {
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.SetBasicAuth(testKey, testSecret)
	t0 := time.Now()
	resp, err := srv.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if resp.StatusCode != 200 {
		b.Fatalf("%s: %d %s", path, resp.StatusCode, body)
	}
	return string(body), d
}

// BenchmarkPlatePage384 measures the plate page of a 384-sample plate over the in-process S3
// server, its thumbnails already cached under thumbs/:
//
//	first    a new viewer, no label index stored: lists the plate and reads all 384 labels (the
//	         first view ever; it stores the plate's label index under thumbs/)
//	restart  a new viewer (a restart): lists the plate, reads the stored label index
//	relist   the listing expired (IndexTTL 0): lists again, labels from the parsed-label cache
//	         (the steady state of a page opened while samples arrive)
//	cached   within IndexTTL: no S3 call
//	thumb    one cached thumbnail (an S3 GET of the cached PNG)
//
// ms/page is the mean server time; vs_goal = 300 ms / ms/page (>= 1 meets the bound).
func BenchmarkPlatePage384(b *testing.B) {
	st := s3Plate(b, 384)
	// Render every thumbnail once (as a first visit does), so the cases measure the cached path.
	v, srv := newTestViewer(b, st, nil)
	page, _ := fetch(b, srv, "/plates/plate384")
	thumbs := regexp.MustCompile(`src="(/img/[^"]+)" loading="lazy"`).FindAllStringSubmatch(page, -1)
	if len(thumbs) != 384 {
		b.Fatalf("%d lazy thumbnails, want 384", len(thumbs))
	}
	for _, m := range thumbs {
		fetch(b, srv, m[1])
	}
	if got := v.stats.renders.Load(); got != 384 {
		b.Fatalf("%d renders, want 384", got)
	}
	report := func(b *testing.B, total time.Duration) {
		ms := float64(total.Microseconds()) / 1000 / float64(b.N)
		b.ReportMetric(ms, "ms/page")
		b.ReportMetric(float64(plateGoal.Milliseconds())/ms, "vs_goal")
	}
	b.Run("first", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			_, err := st.Client.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String("plates"),
				Key: aws.String("thumbs/plate384/" + labelIndexName)})
			if err != nil {
				b.Fatal(err)
			}
			_, s := newTestViewer(b, st, nil)
			b.StartTimer()
			_, d := fetch(b, s, "/plates/plate384")
			total += d
		}
		report(b, total)
	})
	b.Run("restart", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			v, s := newTestViewer(b, st, nil)
			b.StartTimer()
			_, d := fetch(b, s, "/plates/plate384")
			total += d
			if n := v.sums.reads.Load(); n != 0 {
				b.Fatalf("%d labels read after a restart", n)
			}
		}
		report(b, total)
	})
	b.Run("relist", func(b *testing.B) {
		_, s := newTestViewer(b, st, func(c *Config) { c.IndexTTL = time.Nanosecond })
		fetch(b, s, "/plates/plate384")
		var total time.Duration
		for b.Loop() {
			_, d := fetch(b, s, "/plates/plate384")
			total += d
		}
		report(b, total)
	})
	b.Run("cached", func(b *testing.B) {
		_, s := newTestViewer(b, st, func(c *Config) { c.IndexTTL = time.Hour })
		fetch(b, s, "/plates/plate384")
		var total time.Duration
		for b.Loop() {
			_, d := fetch(b, s, "/plates/plate384")
			total += d
		}
		report(b, total)
	})
	b.Run("thumb", func(b *testing.B) {
		v2, s := newTestViewer(b, st, func(c *Config) { c.IndexTTL = time.Hour })
		fetch(b, s, "/plates/plate384")
		var total time.Duration
		for i := 0; b.Loop(); i++ {
			_, d := fetch(b, s, thumbs[i%len(thumbs)][1])
			total += d
		}
		if v2.stats.renders.Load() != 0 {
			b.Fatalf("%d thumbnails rendered again", v2.stats.renders.Load())
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/thumb")
	})
}
