package s3local

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const (
	testAK = "AKIAHPATESTKEY000001"
	testSK = "hpa/test/secret/key/0123456789abcdefghij"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startServer runs a Server on a random port and closes it at the end of the test.
func startServer(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.AccessKey == "" && !o.AllowAnonymous {
		o.AccessKey, o.SecretKey = testAK, testSK
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeServer(t, s) })
	return s
}

func closeServer(t *testing.T, s *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

// newClient is an aws-sdk-go-v2 S3 client for endpoint, path-style, with the given keys and the
// SDK's documented defaults for checksums (what config.LoadDefaultConfig resolves when nothing is
// configured: calculate and validate when supported). Built without LoadDefaultConfig so that
// AWS_* variables of the machine running the tests cannot change it.
func newClient(endpoint, ak, sk string, mods ...func(*s3.Options)) *s3.Client {
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(ak, sk, ""),
		HTTPClient:                 &http.Client{Timeout: 60 * time.Second},
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	}, mods...)
}

func noRetry(o *s3.Options) { o.RetryMaxAttempts = 1 }
