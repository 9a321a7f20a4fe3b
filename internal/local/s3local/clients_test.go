package s3local

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hpa-plates/hpa/internal/testenv"
)

// hermeticAWSEnv is an environment for Python AWS tools that ignores the machine's AWS setup.
func hermeticAWSEnv(t *testing.T) []string {
	home := t.TempDir()
	cfg := filepath.Join(home, "config")
	os.WriteFile(cfg, []byte("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n"), 0o600)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+home, "AWS_CONFIG_FILE="+cfg, "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "none"),
		"AWS_ACCESS_KEY_ID="+testAK, "AWS_SECRET_ACCESS_KEY="+testSK, "AWS_DEFAULT_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true")
}

// boto3 (when installed) drives the server: multipart upload_fileobj, paginated listings,
// ranges, copy, batch delete, presigned URLs (V4; boto3's default V2 ones only with AllowSigV2),
// bad signature.
func TestBoto3Client(t *testing.T) {
	// The python3 on PATH, or Debian's, where python3-boto3 (scripts/setup.sh --only clients) goes.
	py := ""
	for _, cand := range []string{"python3", "/usr/bin/python3"} {
		if p, err := exec.LookPath(cand); err == nil && exec.Command(p, "-c", "import boto3").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		testenv.NeedTool(t, "python3 with boto3", "scripts/setup.sh --only clients installs python3-boto3")
	}
	dir := t.TempDir()
	s := startServer(t, Options{Dir: dir, MinPartSize: 5 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/boto3_client.py", s.Endpoint(), testAK, testSK)
	cmd.Env = hermeticAWSEnv(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("boto3 script: %v\n%s", err, stderr.String())
	}
	var out struct {
		Head      []any      `json:"head"`
		Big       []any      `json:"big"`
		Range     bool       `json:"range"`
		ListDelim [][]string `json:"list_delim"`
		ListV1    []string   `json:"list_v1"`
		Copy      string     `json:"copy"`
		Missing   string     `json:"missing"`
		Presigned string     `json:"presigned"`
		PresignV4 string     `json:"presigned_v4"`
		Deleted   []string   `json:"deleted"`
		BadSig    []any      `json:"badsig"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if out.Head[0].(float64) != 4 || out.Head[1] != "image/png" || out.Head[2] != "dapi" {
		t.Errorf("head %v", out.Head)
	}
	if out.Big[0].(float64) != 20<<20 || out.Big[1] != true || !strings.HasSuffix(out.Big[2].(string), `-3"`) {
		t.Errorf("multipart upload via boto3: %v", out.Big)
	}
	if !out.Range {
		t.Error("range")
	}
	if strings.Join(out.ListDelim[0], "|") != "" || strings.Join(out.ListDelim[1], "|") != "big/|incoming/" {
		t.Errorf("delimited listing %v", out.ListDelim)
	}
	if strings.Join(out.ListV1, "|") != "big/obj+1.bin|incoming/plate 1/X_blue.png" {
		t.Errorf("v1 listing %v", out.ListV1)
	}
	if out.Copy != "blue" || out.Missing != "NoSuchKey" {
		t.Errorf("copy %q missing %q", out.Copy, out.Missing)
	}
	if strings.Join(out.Deleted, "|") != "big/obj+1.bin|copy of blue.png" {
		t.Errorf("deleted %v", out.Deleted)
	}
	if out.BadSig[0] != "SignatureDoesNotMatch" || out.BadSig[1].(float64) != 403 {
		t.Errorf("bad signature %v", out.BadSig)
	}
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, b := get(out.PresignV4); code != 200 || b != "blue" || !strings.Contains(out.PresignV4, "X-Amz-Signature=") {
		t.Errorf("boto3 V4 presigned URL %s: %d %q", out.PresignV4, code, b)
	}
	// boto3's default presigned URL (Signature V2 in this botocore) is refused unless allowed.
	if strings.Contains(out.Presigned, "AWSAccessKeyId=") {
		if code, b := get(out.Presigned); code != 403 || !strings.Contains(b, "Signature Version 2 is not accepted") {
			t.Errorf("boto3 V2 presigned URL accepted by default: %d %q", code, b)
		}
		closeServer(t, s)
		s2 := startServer(t, Options{Dir: dir, MinPartSize: 5 << 20, Limits: Limits{AllowSigV2: true}})
		url := strings.Replace(out.Presigned, s.Endpoint(), s2.Endpoint(), 1)
		if code, b := get(url); code != 200 || b != "blue" {
			t.Errorf("boto3 V2 presigned URL with AllowSigV2: %d %q", code, b)
		}
	} else if code, b := get(out.Presigned); code != 200 || b != "blue" {
		t.Errorf("boto3 presigned URL: %d %q", code, b)
	}
}

// The aws cli (when installed): "aws s3 cp" of a 17 MiB file (multipart above 8 MB), ls, cp back,
// rm --recursive.
func TestAWSCLI(t *testing.T) {
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		testenv.NeedTool(t, "the aws cli", "scripts/setup.sh --only clients installs awscli")
	}
	s := startServer(t, Options{Buckets: []string{"cli"}})
	env := hermeticAWSEnv(t)
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, awsBin, append([]string{"--endpoint-url", s.Endpoint()}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	big := randomBytes(17<<20, 42)
	src := filepath.Join(dir, "big upload.bin")
	if err := os.WriteFile(src, big, 0o644); err != nil {
		t.Fatal(err)
	}
	run("s3", "cp", src, "s3://cli/plate 1/big upload.bin")
	m, e := s.store.head("cli", "plate 1/big upload.bin")
	if e != nil {
		t.Fatal(e)
	}
	if m.Parts < 2 {
		t.Fatalf("aws cli did not use multipart (parts %d)", m.Parts)
	}
	ls := run("s3", "ls", "--recursive", "s3://cli/")
	if !strings.Contains(ls, "plate 1/big upload.bin") || !strings.Contains(ls, "17825792") {
		t.Fatalf("ls: %s", ls)
	}
	back := filepath.Join(dir, "back.bin")
	run("s3", "cp", "s3://cli/plate 1/big upload.bin", back)
	got, _ := os.ReadFile(back)
	if md5.Sum(got) != md5.Sum(big) {
		t.Fatal("downloaded content differs")
	}
	run("s3api", "put-object", "--bucket", "cli", "--key", "small+odd key.txt", "--body", src, "--content-type", "x/y")
	run("s3", "rm", "--recursive", "s3://cli/")
	c := newClient(s.Endpoint(), testAK, testSK)
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("cli")})
	if err != nil || len(out.Contents) != 0 {
		t.Fatalf("after rm --recursive: %v %v", out.Contents, err)
	}
}
