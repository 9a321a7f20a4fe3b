// Package s3client builds S3 clients for any S3 (AWS, MinIO, the in-process server of `hpa up`)
// from configuration, and moves whole prefixes between S3 and local directories.
package s3client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/viper"
)

// Config selects the S3 service and credentials. Empty credentials use the standard AWS chain
// (environment, shared config/credentials files, web identity, IMDS).
type Config struct {
	Endpoint  string // empty: AWS
	Region    string
	PathStyle bool
	AccessKey string
	SecretKey string
}

// FromViper reads the s3.* keys (s3.endpoint, s3.region, s3.path_style, s3.access_key, s3.secret_key).
func FromViper(v *viper.Viper) Config {
	return Config{
		Endpoint: v.GetString("s3.endpoint"), Region: v.GetString("s3.region"), PathStyle: v.GetBool("s3.path_style"),
		AccessKey: v.GetString("s3.access_key"), SecretKey: v.GetString("s3.secret_key"),
	}
}

// New builds a client.
func New(ctx context.Context, c Config) (*s3.Client, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if c.Region != "" {
		opts = append(opts, awsconfig.WithRegion(c.Region))
	}
	if c.AccessKey != "" || c.SecretKey != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(strings.TrimRight(c.Endpoint, "/"))
		}
		o.UsePathStyle = c.PathStyle
	}), nil
}

// URL is an s3://bucket/prefix location.
type URL struct {
	Bucket, Prefix string // Prefix without leading slash; "" or ending in "/"
}

func (u URL) String() string { return "s3://" + u.Bucket + "/" + u.Prefix }

// IsURL reports whether s names an S3 location.
func IsURL(s string) bool { return strings.HasPrefix(s, "s3://") }

// ParseURL parses s3://bucket[/prefix]; the prefix is normalized to end in "/".
func ParseURL(s string) (URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return URL{}, fmt.Errorf("%q is not an s3://bucket/prefix URL", s)
	}
	p := strings.TrimPrefix(u.Path, "/")
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return URL{Bucket: u.Host, Prefix: p}, nil
}

// Download copies every object under u into dir (keys relative to the prefix become paths). Keys
// that would escape dir are refused. It returns the number of objects copied.
func Download(ctx context.Context, c *s3.Client, u URL, dir string) (int, error) {
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(u.Bucket), Prefix: aws.String(u.Prefix)})
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("list %s: %w", u, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			rel := strings.TrimPrefix(key, u.Prefix)
			if rel == "" || strings.HasSuffix(rel, "/") {
				continue
			}
			local, err := localPath(dir, rel)
			if err != nil {
				return n, fmt.Errorf("s3://%s/%s: %w", u.Bucket, key, err)
			}
			if st, err := os.Stat(local); err == nil && o.Size != nil && st.Size() == *o.Size {
				n++ // already there (a resumed run)
				continue
			}
			if err := getFile(ctx, c, u.Bucket, key, local); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

func localPath(dir, rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if clean != "/"+rel || strings.Contains(rel, "\x00") {
		return "", errors.New("key is not a clean relative path")
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}

func getFile(ctx context.Context, c *s3.Client, bucket, key, local string) error {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return err
	}
	tmp := local + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, out.Body); err != nil {
		f.Close()
		return fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, local)
}

// Upload copies every file under dir to u (paths relative to dir become keys), skipping the
// directories named in skip (relative, e.g. "checkpoints").
func Upload(ctx context.Context, c *s3.Client, dir string, u URL, skip ...string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			for _, s := range skip {
				if rel == s {
					return filepath.SkipDir
				}
			}
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		key := u.Prefix + rel
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(key), Body: f, ContentLength: aws.Int64(st.Size())}); err != nil {
			return fmt.Errorf("put s3://%s/%s: %w", u.Bucket, key, err)
		}
		n++
		return nil
	})
	return n, err
}
