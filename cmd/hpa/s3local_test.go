package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/config"
)

// s3localCommand builds the s3local subcommand bound to a fresh configuration.
func s3localCommand(t *testing.T) (*viper.Viper, *cobra.Command) {
	t.Helper()
	v := config.New()
	for _, mk := range subcommands {
		if c := mk(v); c.Name() == "s3local" {
			return v, c
		}
	}
	t.Fatal("s3local subcommand not registered")
	return nil, nil
}

func TestS3LocalCommandEndToEnd(t *testing.T) {
	t.Setenv("HPA_S3LOCAL_ACCESS_KEY", "AKIACMDTEST")
	t.Setenv("HPA_S3LOCAL_SECRET_KEY", "cmd-test-secret")
	t.Setenv("HPA_S3LOCAL_BUCKETS", "from-env")
	v, cmd := s3localCommand(t)
	dir := t.TempDir()
	for k, val := range map[string]string{"dir": dir + "/s3", "addr": "127.0.0.1:0", "nats-embedded": "true", "nats-dir": dir + "/nats", "nats-port": "0", "buckets": "plates,results"} {
		if err := cmd.Flags().Set(k, val); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- runS3Local(ctx, v, &out, ready) }()
	var urls [2]string
	select {
	case urls = <-ready:
	case err := <-done:
		t.Fatalf("exited early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready")
	}
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(urls[0]), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKIACMDTEST", "cmd-test-secret", "")})
	tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer tcancel()
	// The flag (plates,results) wins over HPA_S3LOCAL_BUCKETS.
	if _, err := c.HeadBucket(tctx, &s3.HeadBucketInput{Bucket: aws.String("results")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HeadBucket(tctx, &s3.HeadBucketInput{Bucket: aws.String("from-env")}); err == nil {
		t.Fatal("env value beat the flag")
	}
	if _, err := c.PutObject(tctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String("in/p 1/S_green.png"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(urls[1])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(tctx, "S3_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(tctx, "s3.events.plates")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := bus.ParseS3Events(m.Data)
	if err != nil || len(evs) != 1 || evs[0].Key != "in/p 1/S_green.png" {
		t.Fatalf("event %v %v", evs, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop")
	}
	if !strings.Contains(out.String(), "s3: serving http://127.0.0.1:") || !strings.Contains(out.String(), "events: s3.events.<bucket>") {
		t.Fatalf("output: %s", out.String())
	}
}

func TestS3LocalCommandErrors(t *testing.T) {
	v, cmd := s3localCommand(t)
	cmd.Flags().Set("dir", t.TempDir())
	cmd.Flags().Set("addr", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := runS3Local(ctx, v, &bytes.Buffer{}, nil); err == nil || !strings.Contains(err.Error(), "AccessKey") {
		t.Fatalf("missing keys: %v", err)
	}
	cmd.Flags().Set("nats-url", "nats://127.0.0.1:1")
	cmd.Flags().Set("nats-embedded", "true")
	if err := runS3Local(ctx, v, &bytes.Buffer{}, nil); err == nil || !strings.Contains(err.Error(), "exclude") {
		t.Fatalf("conflicting NATS options: %v", err)
	}
}
